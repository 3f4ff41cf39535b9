"""GraphiQL in a real headless Chromium (Debian's ``chromium``, driven by Playwright): the page
loads and runs a patient's query with no request to any host but the gateway, no CSP violation
and no script error, with the token from the Token field or from the link ``gateway dev`` prints."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

import pytest

from gateway import create_app
from gateway.config import Mode
from gateway.ids import encode_global_id
from gateway.web.graphiql import graphiql_link
from tests.support.browser import ARTIFACTS, BrowserVisit, assert_png, chromium, visiting
from tests.support.server import serving

QUERY = "{ me { subject patient { id displayName } } }"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def gateway_url(env):
    with serving(create_app(env.settings(mode=Mode.DEVELOPMENT))) as server:
        yield server.url


class Visit(BrowserVisit):
    """One browser context on the page, with every request it made."""

    def query_authorizations(self) -> list[str | None]:
        """The Authorization header of each POST of QUERY (not GraphiQL's schema requests)."""
        return [
            headers.get("authorization")
            for method, url, headers, body in self.requests
            if method == "POST" and urlsplit(url).path == "/graphql" and '"{ me {' in body
        ]

    def run_query(self, expected: str) -> str:
        """Press GraphiQL's run button; the response pane's text once it shows ``expected``."""
        from playwright.sync_api import expect

        with self.page.expect_response(
            lambda r: r.request.method == "POST" and '"{ me {' in (r.request.post_data or "")
        ):
            self.page.locator(".graphiql-execute-button").click()
        response = self.page.locator(".graphiql-response")
        expect(response).to_contain_text(expected, timeout=30_000)
        return response.inner_text()


@pytest.fixture
def visit(browser, gateway_url):
    with visiting(browser, (gateway_url,), Visit) as recorded:
        yield recorded


def patient(env, index: int) -> tuple[str, str]:
    subject, patient_id = env.patients()[index]
    return subject, encode_global_id("Patient", patient_id)


def test_a_patient_runs_a_query_with_the_token_field_and_nothing_leaves_the_origin(env, visit):
    """A developer pastes a patient's token into the Token field and runs a query: the result is
    that patient's data, every request went to the gateway only (no CDN), the token went out only
    as this origin's Authorization header and stays in sessionStorage, never localStorage."""
    subject, patient_id = patient(env, 0)
    token = env.token(subject)
    page = visit.page
    page.goto(f"{visit.origin}/graphql?query={quote(QUERY)}")
    page.locator(".graphiql-execute-button").wait_for(timeout=30_000)
    page.locator("#gateway-token").fill(token)

    result = visit.run_query(patient_id)

    assert patient_id in result and subject in result
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "graphiql-token-field.png"
    page.screenshot(path=str(screenshot))
    assert_png(screenshot)
    assert visit.foreign_requests() == []
    paths = {urlsplit(url).path.rsplit("/", 1)[-1] for _, url, _, _ in visit.requests}
    assert {"graphiql.min.js", "react.production.min.js", "graphiql-init.js"} <= paths
    assert visit.query_authorizations() == [f"Bearer {token}"]
    assert page.evaluate("sessionStorage.getItem('gateway.graphiql.token')") == token
    assert token not in page.evaluate("JSON.stringify(localStorage)")
    assert visit.csp_violations() == []
    assert visit.page_errors == []


def test_the_gateway_dev_link_fills_the_headers_and_the_token_field_overrides_them(env, visit):
    """The link ``gateway dev`` prints puts a patient's token in GraphiQL's headers editor, and
    queries run as that patient; a token typed in the Token field takes over, and Clear gives
    the headers editor back."""
    first_subject, first_id = patient(env, 1)
    second_subject, second_id = patient(env, 2)
    first, second = env.token(first_subject), env.token(second_subject)
    page = visit.page
    page.goto(graphiql_link(visit.origin, first) + f"&query={quote(QUERY)}")
    page.locator(".graphiql-execute-button").wait_for(timeout=30_000)

    as_first = visit.run_query(first_id)
    page.locator("#gateway-token").fill(second)
    as_second = visit.run_query(second_id)
    page.locator("#gateway-token-clear").click()
    as_first_again = visit.run_query(first_id)

    assert first_id in as_first and second_id not in as_first
    assert second_id in as_second and first_id not in as_second
    assert first_id in as_first_again and second_id not in as_first_again
    assert visit.query_authorizations() == [
        f"Bearer {first}",
        f"Bearer {second}",
        f"Bearer {first}",
    ]
    assert visit.foreign_requests() == []
    assert visit.csp_violations() == []
    assert visit.page_errors == []


def test_a_dialog_opens_though_the_policy_refuses_its_inline_scroll_lock_style(env, visit):
    """GraphiQL works without style-src 'unsafe-inline': its dialogs (settings, short keys) add a
    <style> element that only locks the body's scrolling (react-remove-scroll-bar), which the
    policy refuses; the page never scrolls anyway, and the dialog opens and works."""
    from playwright.sync_api import expect

    page = visit.page
    page.goto(graphiql_link(visit.origin, env.token(patient(env, 0)[0])))
    page.get_by_role("button", name="Open settings dialog").click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Theme", timeout=30_000)
    dialog.get_by_role("button", name="Dark").click()
    expect(page.locator("body")).to_have_class(re.compile(r"graphiql-dark"), timeout=30_000)
    assert visit.csp_violations() == ["style-src-elem inline"]
    assert visit.foreign_requests() == []
    assert visit.page_errors == []
