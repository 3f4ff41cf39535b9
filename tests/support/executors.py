"""Both executors, over real HTTP: a leak test runs once per executor.

- ``interpreted``: the document's text, free-form, through Strawberry and graphql-core (what
  development and developer accounts use);
- ``compiled``: the same document sent as a trusted document, by its SHA-256 only, to a gateway
  built with a manifest that holds it and with production's rule for free-form documents
  (developer accounts only): the path every request of a deployed app or partner takes, by the
  document's compiled plan.

Documents a test sends are declared at import (``trusted(text)``, usually a module constant), so
that the test manifest, written when the first compiled gateway starts, holds every one of them;
sending by hash a text that was not declared fails the test with what to do, rather than
skipping the compiled side. The web app's operations (``apps/manifest.json``) are in the test
manifest too.

Which executor served each request is read from the gateway's own count
(``gateway_graphql_executions_total{executor}``, scraped after the request): on the compiled
side a query must be served by its plan, so a trusted document that silently fell back to the
interpreter fails the test. (Mutations are not compiled: they run through graphql-core on both
sides, and that is what is checked for them.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from graphql import OperationDefinitionNode, parse

from gateway import create_app
from tests.support.server import GraphQLClient, serving

EXECUTORS = ("interpreted", "compiled")
PLAN, INTERPRETER = "plan", "graphql-core"

ROOT = Path(__file__).resolve().parents[2]
_DECLARED: dict[str, str] = {}  # sha256 -> text, every document a test module declared

TRUSTED_DOCUMENTS_ONLY = {
    "errors": [
        {
            "message": "Only trusted documents are accepted",
            "extensions": {"code": "TRUSTED_DOCUMENTS_ONLY"},
        }
    ]
}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def trusted(text: str) -> str:
    """Declare ``text`` (one operation, with its fragments) for the test manifest; returns it."""
    _DECLARED[digest(text)] = text
    return text


def operation_type(text: str) -> str:
    [operation] = [d for d in parse(text).definitions if isinstance(d, OperationDefinitionNode)]
    return operation.operation.value


def write_manifest(directory: Path) -> Path:
    """The test manifest: every declared document and the web app's operations."""
    apps = json.loads((ROOT / "apps" / "manifest.json").read_text())
    operations = {o["id"]: o for o in apps["operations"]}
    for sha, text in _DECLARED.items():
        operations.setdefault(
            sha, {"id": sha, "name": None, "type": operation_type(text), "body": text}
        )
    path = directory / "test-manifest.json"
    path.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": sorted(operations.values(), key=lambda o: o["id"]),
            }
        )
    )
    return path


_EXECUTIONS = re.compile(
    r'^gateway_graphql_executions_total\{executor="([a-z-]+)"\} ([0-9.e+]+)$', re.MULTILINE
)


def executions(http: httpx.Client) -> dict[str, float]:
    """The gateway's count of operations by executor."""
    counts = {PLAN: 0.0, INTERPRETER: 0.0}
    text = http.get("/metrics").text
    counts.update((name, float(value)) for name, value in _EXECUTIONS.findall(text))
    return counts


class ExecutorClient(GraphQLClient):
    """A GraphQL client of one executor's gateway. ``post`` sends the text (interpreted) or its
    hash (compiled) and checks, from the gateway's count, that the executor meant to serve the
    request is the one that did; ``served`` lists what served each request."""

    def __init__(self, base_url: str, executor: str) -> None:
        super().__init__(base_url)
        self.executor = executor
        self.served: list[str | None] = []
        self._counts = executions(self.http)

    def post(
        self, query: str, token: str | None, variables: dict | None = None, **headers: str
    ) -> httpx.Response:
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        body: dict[str, Any] = {}
        if self.executor == "compiled":
            sha = digest(query)
            assert sha in _DECLARED, (
                "the compiled side sends documents by hash: declare this one with "
                f"tests.support.executors.trusted() at import:\n{query}"
            )
            body["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
        else:
            body["query"] = query
        if variables is not None:
            body["variables"] = variables
        response = self.http.post("/graphql", json=body, headers=headers)
        self._check_served(query, response)
        return response

    def free_form(self, query: str, token: str | None, **headers: str) -> httpx.Response:
        """The text itself, whichever the executor (an attacker's own document)."""
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        response = self.http.post("/graphql", json={"query": query}, headers=headers)
        self._counts = executions(self.http)
        return response

    def _check_served(self, query: str, response: httpx.Response) -> None:
        counts = executions(self.http)
        delta = {name: counts[name] - self._counts.get(name, 0.0) for name in counts}
        self._counts = counts
        meant = PLAN if self.executor == "compiled" else INTERPRETER
        if self.executor == "compiled" and operation_type(query) != "query":
            meant = INTERPRETER  # only queries are compiled
        other = INTERPRETER if meant == PLAN else PLAN
        assert delta[other] == 0, f"served by {other}, meant {meant}: {query}"
        executed = response.headers.get("content-type", "").startswith("application/") and (
            "data" in response.json()
        )
        if executed:
            assert delta[meant] == 1, f"not served by {meant}: {query}"
        self.served.append(meant if delta[meant] else None)


APP_MANIFEST = ROOT / "apps" / "manifest.json"
APP_OPERATIONS = {o["name"]: o for o in json.loads(APP_MANIFEST.read_text())["operations"]}


@contextlib.contextmanager
def app_manifest_gateway(env: Any) -> Iterator[GraphQLClient]:
    """A gateway as production runs it: the repository's manifest, no free-form documents."""
    app = create_app(env.settings(trusted_documents=APP_MANIFEST, free_form_documents=None))
    with serving(app) as server:
        client = GraphQLClient(server.url)
        try:
            yield client
        finally:
            client.http.close()


def send_operation(
    client: GraphQLClient, name: str, token: str, variables: dict | None = None
) -> tuple[int, dict, list[str]]:
    """One of the repository's operations by its hash, as an app or a partner sends it:
    (status, body, which executor served it)."""
    before = executions(client.http)
    body: dict[str, Any] = {
        "operationName": name,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": APP_OPERATIONS[name]["id"]}},
    }
    if variables is not None:
        body["variables"] = variables
    response = client.http.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})
    after = executions(client.http)
    served = [executor for executor in after if after[executor] > before[executor]]
    return response.status_code, response.json(), served


def settings_for(executor: str, manifest: Path | None) -> dict[str, Any]:
    """The settings that make a gateway of ``executor``: production's free-form rule (developer
    accounts only) and the test manifest for the compiled side."""
    if executor == "compiled":
        return {"trusted_documents": manifest, "free_form_documents": None}
    return {"free_form_documents": "everyone"}


@contextlib.contextmanager
def serve_executor(
    env: Any,
    executor: str,
    manifest: Path | None,
    *,
    database: Any = None,
    on_stop: Any = None,
    **settings: Any,
) -> Iterator[ExecutorClient]:
    """A gateway of ``executor`` over real HTTP (``database`` replaces its database edge, as
    ``tests.support.sabotage`` does; ``on_stop`` runs before the server stops), and a client of
    it."""
    values = {**settings_for(executor, manifest), **settings}
    app = create_app(env.settings(**values), database=database)
    with serving(app) as server:
        client = ExecutorClient(server.url, executor)
        try:
            yield client
        finally:
            client.http.close()
            if on_stop is not None:
                on_stop()  # while the server (and its loop) still runs
