// Building the page's elements: text always as text (never HTML), no inline handlers or styles.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name === "class") {
      element.className = value;
    } else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return element;
}

const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

export function time(iso, withTime = true) {
  if (!iso) {
    return "";
  }
  const text = (withTime ? DATE_TIME : DATE).format(new Date(iso));
  return h("time", { datetime: iso }, text);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) {
    return "";
  }
  const minutes = Math.floor(seconds / 60);
  const rest = String(seconds % 60).padStart(2, "0");
  return `${minutes}:${rest}`;
}

export function label(value) {
  if (!value) {
    return "";
  }
  const text = value.toLowerCase().replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function say(element, text) {
  element.textContent = text;
}
