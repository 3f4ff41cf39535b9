"""Debian's Chromium driven by Playwright, for the browser tests (GraphiQL, the web app).

Playwright never downloads a browser here: it drives ``/usr/bin/chromium``. Each visit is one
browser context that records every request and response, stops any request to an origin the
test did not allow (so nothing leaves the machine, and the test can say that nothing tried),
and records every violation of the page's Content-Security-Policy and every page error."""

from __future__ import annotations

import concurrent.futures
import contextlib
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = [
    "ARTIFACTS",
    "BrowserVisit",
    "Exchange",
    "assert_png",
    "chromium",
    "off_the_loop",
    "origin_of",
    "visiting",
    "wait_until",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Runs before any page script (Playwright injects it outside the page's CSP): every violation
# of the page's Content-Security-Policy is kept for the test to read.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextlib.contextmanager
def chromium(*args: str) -> Iterator[Any]:
    """A headless Chromium for a module's tests, with ``args`` added to its command line."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(scripts/install installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *args], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Exchange:
    """One request the page made, and the status it got (None: aborted or failed)."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class BrowserVisit:
    """One browser context, allowed to talk to ``origins`` only, with every request it made."""

    page: Any
    origins: tuple[str, ...]
    exchanges: list[Exchange] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.origins[0]

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str], str]]:
        return [(e.method, e.url, e.headers, e.body) for e in self.exchanges]

    def foreign_requests(self) -> list[str]:
        """URLs of requests to anything but the allowed origins (data: URLs are no request to
        a host: GraphiQL's fonts are inlined that way)."""
        return [
            e.url
            for e in self.exchanges
            if urlsplit(e.url).scheme != "data" and origin_of(e.url) not in self.origins
        ]

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("window.__cspViolations")


@contextlib.contextmanager
def visiting(
    browser: Any,
    origins: tuple[str, ...],
    visit_type: type[BrowserVisit] = BrowserVisit,
    *,
    init_scripts: tuple[str, ...] = (),
    viewport: tuple[int, int] = (1400, 860),
) -> Iterator[Any]:
    """A fresh browser context (its own cookies and storage) as a ``visit_type``."""
    width, height = viewport
    context = browser.new_context(
        viewport={"width": width, "height": height}, service_workers="block"
    )
    for script in (RECORD_CSP_VIOLATIONS, *init_scripts):
        context.add_init_script(script)
    page = context.new_page()
    visit = visit_type(page, origins)
    pending: dict[Any, Exchange] = {}

    def on_request(request: Any) -> None:
        exchange = Exchange(
            request.method, request.url, request.all_headers(), request.post_data or ""
        )
        pending[request] = exchange
        visit.exchanges.append(exchange)

    def on_response(response: Any) -> None:
        exchange = pending.get(response.request)
        if exchange is not None:
            exchange.status = response.status
            exchange.response_headers = response.all_headers()

    def only_allowed(route: Any) -> None:
        # Recorded above; a foreign request is also stopped here, so nothing leaves the machine.
        if origin_of(route.request.url) in origins:
            route.continue_()
        else:
            route.abort()

    context.on("request", on_request)
    context.on("response", on_response)
    context.route("**/*", only_allowed)
    page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
    try:
        yield visit
    finally:
        context.close()


def off_the_loop(work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``work(*args, **kwargs)`` in another thread: Playwright's sync API keeps an event loop
    running in this one, where the database helpers' ``asyncio.run`` is refused."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work, *args, **kwargs).result()


def wait_until(
    condition: Callable[[], Any], timeout: float = 30, message: Callable[[], str] | str = ""
) -> Any:
    """Poll ``condition`` until it is truthy. (Playwright's wait_for_function evaluates a
    string, which a page without 'unsafe-eval' refuses.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message or "timed out")
        time.sleep(0.1)


def assert_png(path: Path, size: tuple[int, int] = (1400, 860), min_bytes: int = 20_000) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == size
    assert len(data) > min_bytes, "the screenshot is nearly blank"
