// Starts GraphiQL on the gateway's development page. Served by the gateway (CSP script-src 'self').
//
// Requests go to this origin's /graphql only, never with cookies. Authorization comes from the
// Token field when it holds a token (kept in this tab's sessionStorage, nowhere else), otherwise
// from GraphiQL's headers editor, which the `headers` query parameter fills (the link printed by
// `gateway dev`). GraphiQL keeps its tabs in sessionStorage too, and never headers or responses.
(function () {
  "use strict";

  var TOKEN_KEY = "gateway.graphiql.token";
  var endpoint = new URL("/graphql", window.location.origin).href;
  var input = document.getElementById("gateway-token");
  var clear = document.getElementById("gateway-token-clear");
  var state = document.getElementById("gateway-token-state");

  function token() {
    return input.value.trim().replace(/^bearer\s+/i, "");
  }

  function show() {
    state.textContent = token()
      ? "Authorization from the Token field (this tab only)"
      : "Authorization from the headers editor";
  }

  function remember() {
    if (token()) {
      window.sessionStorage.setItem(TOKEN_KEY, token());
    } else {
      window.sessionStorage.removeItem(TOKEN_KEY);
    }
    show();
  }

  input.value = window.sessionStorage.getItem(TOKEN_KEY) || "";
  input.addEventListener("input", remember);
  clear.addEventListener("click", function () {
    input.value = "";
    remember();
  });
  show();

  function requestHeaders(editorHeaders) {
    var headers = {
      "content-type": "application/json",
      accept: "application/graphql-response+json, application/json",
    };
    Object.keys(editorHeaders || {}).forEach(function (name) {
      headers[name] = String(editorHeaders[name]);
    });
    if (token()) {
      Object.keys(headers).forEach(function (name) {
        if (name.toLowerCase() === "authorization") {
          delete headers[name];
        }
      });
      headers.authorization = "Bearer " + token();
    }
    return headers;
  }

  function fetcher(params, options) {
    return window
      .fetch(endpoint, {
        method: "POST",
        headers: requestHeaders(options && options.headers),
        body: JSON.stringify(params),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      })
      .then(function (response) {
        return response.text().then(function (text) {
          try {
            return JSON.parse(text);
          } catch (error) {
            return { errors: [{ message: "HTTP " + response.status + ": " + text }] };
          }
        });
      });
  }

  var search = new URLSearchParams(window.location.search);
  var props = {
    storage: window.sessionStorage,
    shouldPersistHeaders: false,
  };
  if (search.get("headers")) {
    props.headers = search.get("headers");
    props.defaultHeaders = search.get("headers");
    props.defaultEditorToolsVisibility = "headers";
  }
  if (search.get("query")) {
    props.query = search.get("query");
  }
  if (search.get("variables")) {
    props.variables = search.get("variables");
  }

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));

  // A new fetcher makes GraphiQL fetch the schema again, now with the new token.
  function render() {
    props.fetcher = function (params, options) {
      return fetcher(params, options);
    };
    root.render(React.createElement(GraphiQL, props));
  }

  input.addEventListener("change", render);
  clear.addEventListener("click", render);
  render();
})();
