"""The reference patient web app (apps/web) in Debian's Chromium, driven by Playwright, against
gateways that accept trusted documents by hash only.

Served by a development gateway at /app/ (as ``gateway dev`` serves it), and as a separate
static site on another origin of the same site (as a deployment may serve it) against a
production gateway with that origin in ``GATEWAY_CORS_ORIGINS``. In every test: no request to
any other origin, no Content-Security-Policy violation, no page error. Expectations come from
the database, never from counts written here."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from gateway import create_app
from gateway.config import Mode
from gateway.ids import encode_global_id
from gateway.policy import scopes
from gateway.web.webapp import webapp_link
from tests.actors import REASON, Grants, new_clinician, new_partner, partner_token
from tests.browser import (
    ARTIFACTS,
    BrowserVisit,
    assert_png,
    chromium,
    off_the_loop,
    visiting,
    wait_until,
)
from tests.support import HOLDS_OBJECT, ServerThread, as_admin, serving

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "web"
MANIFEST = ROOT / "apps" / "manifest.json"
OPERATIONS = {op["name"]: op["id"] for op in json.loads(MANIFEST.read_text())["operations"]}
TOKEN_KEY = "gateway.webapp.token"
# Every event of the page's media element, kept for the test (injected outside the page's CSP).
RECORD_MEDIA = """
window.__media = [];
for (const type of ["playing", "seeked", "ended", "error"]) {
  document.addEventListener(type, (event) => {
    const element = event.target;
    window.__media.push({
      type,
      path: new URL(element.currentSrc || "about:blank").pathname,
      time: element.currentTime,
    });
  }, true);
}
"""
# What the separate site's host sends with its files: the app's policy, with the gateway's
# origin added where the app talks to it (GraphQL, the playback's start, the <video>).
SITE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src {gateway}; connect-src 'self' {gateway}; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


# The separate site's domain: app.<SITE> (the static site) and api.<SITE> (the gateway) are
# two origins of one site, as app.example.org and api.example.org are.
SITE = "example.localhost"
PATIENT_PLAYS, OTHER_PATIENT, SITE_PATIENT, LOGGED_PATIENT, CONSENTING_PATIENT = 2, 5, 3, 8, 9


class WebAppVisit(BrowserVisit):
    """A browser context on the app, with what it sent and what its media element did."""

    def media(self) -> list[dict[str, Any]]:
        return self.page.evaluate("window.__media")

    def operations(self) -> list[str]:
        """Names of the operations the app sent, in order: each by hash, never a document."""
        names = {digest: name for name, digest in OPERATIONS.items()}
        sent = []
        for exchange in self.exchanges:
            if exchange.method == "POST" and urlsplit(exchange.url).path == "/graphql":
                body = json.loads(exchange.body)
                assert "query" not in body, body
                sent.append(names[body["extensions"]["persistedQuery"]["sha256Hash"]])
        return sent

    def media_exchanges(self, recording: UUID) -> list[tuple[str, int | None, str | None]]:
        """(method, status, Range header) of each request for one recording's media."""
        path = f"/media/recordings/{encode_global_id('Recording', recording)}"
        return [
            (e.method, e.status, e.headers.get("range"))
            for e in self.exchanges
            if urlsplit(e.url).path == path
        ]

    def wait_for_media(self, event: str, recording: UUID, **condition: Any) -> dict[str, Any]:
        path = f"/media/recordings/{encode_global_id('Recording', recording)}"

        def found() -> dict[str, Any] | None:
            return next(
                (
                    m
                    for m in self.media()
                    if m["type"] == event
                    and m["path"] == path
                    and m["time"] >= condition.get("at_least", 0)
                ),
                None,
            )

        return wait_until(found, 30, lambda: f"no {event} of {recording}: {self.media()}")

    def assert_clean(self) -> None:
        assert self.foreign_requests() == []
        assert self.csp_violations() == []
        assert self.page_errors == []


class LateApp:
    """An ASGI app made once its server's address is known: a gateway whose public base URL
    (the prefix of its playback URLs) is its own address."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Site:
    """The app as a static site of its own, and the production gateway it talks to."""

    url: str
    gateway: str


def _deploy(folder: Path, gateway: str, page_size: int) -> None:
    """What a deployment does: the app's files, the manifest next to them, and the gateway's
    address (here also a small page size) in index.html's meta elements."""
    shutil.copytree(APP, folder)
    shutil.copy(MANIFEST, folder / "manifest.json")
    index = folder / "index.html"
    text = index.read_text()
    for name, value in (("gateway-url", gateway), ("page-size", str(page_size))):
        start = text.index(f'<meta name="{name}" content="')
        end = text.index(">", start)
        text = text[:start] + f'<meta name="{name}" content="{value}"' + text[end:]
    index.write_text(text)


def _static_site(folder: Path, gateway: str) -> Starlette:
    """A static host: the files, and the headers its configuration adds."""
    headers = [
        (b"content-security-policy", SITE_CSP.format(gateway=gateway).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    files = StaticFiles(directory=folder, html=True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await files(scope, receive, with_headers)

    return Starlette(routes=[Mount("/", app)])


@pytest.fixture(scope="module")
def browser():
    # The separate site's two names: every *.localhost is this machine (and, to Chromium, a
    # secure context, where a Secure cookie may be set over plain HTTP).
    with chromium(f"--host-resolver-rules=MAP *.{SITE} 127.0.0.1") as browser:
        yield browser


@pytest.fixture(scope="module")
def dev_gateway(env):
    """As ``gateway dev`` runs: development mode, the app at /app/, its manifest trusted; and
    documents refused from everyone, so the app cannot get by without its hashes."""
    settings = env.settings(
        mode=Mode.DEVELOPMENT, trusted_documents=MANIFEST, free_form_documents="nobody"
    )
    with serving(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def site(env, tmp_path_factory):
    """The app deployed as a static site at app.<SITE> with a page size of 2, and a production
    gateway at api.<SITE> that trusts the manifest only and lists the site in
    GATEWAY_CORS_ORIGINS: two origins, one site."""
    late = LateApp()
    gateway = ServerThread(late)
    gateway_url = f"http://api.{SITE}:{gateway.port}"
    folder = tmp_path_factory.mktemp("site") / "web"
    _deploy(folder, gateway_url, page_size=2)
    with serving(_static_site(folder, gateway_url)) as static:
        site_url = f"http://app.{SITE}:{static.port}"
        late.app = create_app(
            env.settings(
                trusted_documents=MANIFEST,
                free_form_documents="nobody",
                cors_origins=(site_url,),
                public_base_url=gateway_url,
            )
        )
        gateway.start()
        try:
            yield Site(site_url, gateway_url)
        finally:
            gateway.stop()


@pytest.fixture
def grants(env):
    grants = Grants(env)
    yield grants
    off_the_loop(grants.close)


def admin(env, work):
    return off_the_loop(as_admin, env, work)


def patient(env, index: int) -> tuple[str, UUID]:
    return env.patients()[index]


def consultations_newest_first(env, patient_id: UUID) -> list[str]:
    rows = admin(
        env,
        lambda c: c.fetch(
            "select id from data.consultations where patient_id = $1 "
            "order by scheduled_at desc, id desc",
            patient_id,
        ),
    )
    return [encode_global_id("Consultation", row["id"]) for row in rows]


def replay_with_segments(env, patient_id: UUID, at_least: int) -> tuple[UUID, list[UUID]]:
    """A consultation of the patient with at least that many segments, and its recordings in
    order (the first is audio, the second video: the seed records so)."""
    for consultation in sorted(env.truth.consultations_of_patient[patient_id]):
        recordings = env.truth.recordings_of_consultation[consultation]
        if len(recordings) >= at_least:
            return consultation, recordings
    raise AssertionError(f"no consultation with {at_least} segments")


def media_events(env, subject: str, recording: UUID) -> list[dict[str, Any]]:
    rows = admin(
        env,
        lambda c: c.fetch(
            "select detail from data.access_events where kind = 'media' and subject = $1 "
            f"and {HOLDS_OBJECT} order by seq",
            subject,
            str(recording),
        ),
    )
    return [json.loads(row["detail"]) for row in rows]


def open_replays(visit: WebAppVisit, url: str) -> None:
    visit.page.goto(url)
    visit.page.locator("#replays-list li").first.wait_for(timeout=30_000)


def screenshot(visit: WebAppVisit, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    visit.page.screenshot(path=str(path))
    assert_png(path, min_bytes=10_000)
    return path


def test_the_link_gateway_dev_prints_signs_in_and_plays_the_segments_in_order(
    env, browser, dev_gateway
):
    """The link puts the token in the fragment: the app keeps it in sessionStorage and takes it
    out of the address at once. A replay's audio segment plays, on its end the video segment,
    and so on to the last: each started by one POST (one audited playback), then the <video>
    element's own GET with a Range header, served 206 by the cookie alone. The video reaches
    `playing` with currentTime > 0, and seeks."""
    subject, patient_id = patient(env, PATIENT_PLAYS)
    consultation, recordings = replay_with_segments(env, patient_id, 2)
    audio, video = recordings[0], recordings[1]
    token = env.token(subject)
    before = {r: len(media_events(env, subject, r)) for r in recordings}
    with visiting(browser, (dev_gateway,), WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        open_replays(visit, webapp_link(dev_gateway, token))
        assert token not in page.url and page.url.endswith("/app/#replays")
        assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == token
        assert token not in page.evaluate("JSON.stringify(localStorage)")
        assert token not in page.evaluate("document.cookie")

        gid = encode_global_id("Consultation", consultation)
        page.locator(f'#replays-list li[data-id="{gid}"] a').click()
        page.get_by_role("button", name="Play segment 1: Audio").click()
        visit.wait_for_media("playing", audio)
        visit.wait_for_media("ended", audio)
        visit.wait_for_media("playing", video)
        # The demo video lasts 3 seconds: a quarter speed leaves time to look at it and seek.
        page.evaluate("document.getElementById('player').playbackRate = 0.25")
        wait_until(lambda: page.evaluate("document.getElementById('player').currentTime > 0.1"))
        shot = screenshot(visit, "web-app-replay.png")
        page.evaluate("document.getElementById('player').currentTime = 2")
        seeked = visit.wait_for_media("seeked", video, at_least=2)

        segment = page.get_by_role("button", name="Play segment 2: Video")
        assert segment.get_attribute("aria-current") == "true"
        cookies = page.context.cookies()
        visit.wait_for_media("ended", recordings[-1])
        status = page.locator("#player-status").inner_text()
        # With the playback cookies set, a GraphQL request of the same page.
        cookies_set = len(visit.exchanges)
        page.get_by_role("link", name="Who saw my record").click()
        page.locator("#access-log-rows tr").first.wait_for(timeout=30_000)
        visit.assert_clean()

    assert seeked["time"] >= 2 and shot.exists()
    for recording in recordings:
        exchanges = visit.media_exchanges(recording)
        assert exchanges[0] == ("POST", 204, None), exchanges
        gets = exchanges[1:]
        assert gets and all(method == "GET" and code == 206 for method, code, _ in gets), gets
        assert all(range_ and range_.startswith("bytes=") for _, _, range_ in gets), gets
    starts = [e.url for e in visit.exchanges if e.method == "POST" and "/media/" in e.url]
    assert [urlsplit(url).path.rsplit("/", 1)[1] for url in starts] == [
        encode_global_id("Recording", r) for r in recordings
    ]
    playback = [c for c in cookies if c["name"] == "gateway_playback"]
    assert playback and all(c["httpOnly"] and c["secure"] for c in playback)
    # The cookies never went anywhere but their recording: no request to /graphql carried one.
    graphql = [e for e in visit.exchanges[cookies_set:] if urlsplit(e.url).path == "/graphql"]
    assert graphql and not any("gateway_playback" in e.headers.get("cookie", "") for e in graphql)
    assert all(c["path"].startswith("/media/recordings/") for c in playback)
    assert status == "End of the recording."
    for recording in recordings:
        events = media_events(env, subject, recording)[before[recording] :]
        assert [e.get("via") for e in events] == ["cookie"], "one audited event per viewing"
    assert visit.operations()[:3] == ["Me", "MyReplays", "Replay"]


def test_another_patient_given_the_first_patients_urls_gets_403_and_plays_nothing(
    env, browser, dev_gateway
):
    """Patient B, signed in to the app in a browser of their own, is given patient A's replay
    link and A's playback URL: the replay is not found, the start of a playback with B's token
    is an empty 403, and B's <video> element gets an empty 403 and never plays."""
    a_subject, a_patient = patient(env, PATIENT_PLAYS)
    b_subject, b_patient = patient(env, OTHER_PATIENT)
    consultation, recordings = replay_with_segments(env, a_patient, 2)
    a_url = _playback_url(dev_gateway, env.token(a_subject), consultation, recordings[1])
    before = len(media_events(env, b_subject, recordings[1]))
    with visiting(browser, (dev_gateway,), WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        open_replays(visit, webapp_link(dev_gateway, env.token(b_subject)))
        shown = page.locator("#replays-list li").evaluate_all(
            "(items) => items.map((i) => i.dataset.id)"
        )
        assert set(shown) <= set(consultations_newest_first(env, b_patient))

        page.goto(f"{dev_gateway}/app/#replay={encode_global_id('Consultation', consultation)}")
        heading = page.locator("#replay-heading")
        wait_until(lambda: heading.inner_text() == "Consultation not found")
        assert page.locator("#replay-player").is_hidden()

        outcome = page.evaluate(PLAY_ELSEWHERE, a_url)
        played = [m for m in visit.media() if m["type"] == "playing"]
        screenshot(visit, "web-app-refused.png")
        visit.assert_clean()

    assert outcome == {"start": 403, "startBody": "", "video": "error", "time": 0}
    assert visit.media_exchanges(recordings[1]) == [("POST", 403, None), ("GET", 403, "bytes=0-")]
    assert played == []
    assert len(media_events(env, b_subject, recordings[1])) == before


# In B's page, exactly what the app does with a playback URL: start it with the token, then
# let the <video> element load it.
PLAY_ELSEWHERE = """
async (url) => {
  const token = sessionStorage.getItem("gateway.webapp.token");
  const start = await fetch(url, {
    method: "POST", headers: {authorization: "Bearer " + token}, credentials: "include",
  });
  const video = document.getElementById("player");
  const outcome = new Promise((resolve) => {
    video.addEventListener("playing", () => resolve("playing"), {once: true});
    video.addEventListener("error", () => resolve("error"), {once: true});
  });
  video.src = url;
  video.play().catch(() => {});
  return {
    start: start.status, startBody: await start.text(), video: await outcome,
    time: video.currentTime,
  };
}
"""


def _playback_url(gateway: str, token: str, consultation: UUID, recording: UUID) -> str:
    """A playback URL as the owner's app gets it (the Replay operation, by hash)."""
    response = httpx.post(
        f"{gateway}/graphql",
        headers={"authorization": f"Bearer {token}"},
        json={
            "variables": {"id": encode_global_id("Consultation", consultation)},
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": OPERATIONS["Replay"]}},
        },
    )
    segments = response.json()["data"]["consultation"]["recordings"]
    url = next(
        s["playbackUrl"] for s in segments if s["id"] == encode_global_id("Recording", recording)
    )
    return gateway + url if url.startswith("/") else url


def test_a_separate_static_site_lists_exactly_the_patients_consultations_and_plays_one(
    env, browser, site
):
    """Deployed on its own origin (same site) against a production gateway, used by keyboard:
    signed in with the Token field, the list pages through exactly the patient's consultations,
    newest first, as the database holds them; a video plays across origins (CORS with
    credentials, the cookie of the same site); only the two origins are ever asked."""
    subject, patient_id = patient(env, SITE_PATIENT)
    expected = consultations_newest_first(env, patient_id)
    consultation, recordings = replay_with_segments(env, patient_id, 2)
    token = env.token(subject)
    origins = (site.url, site.gateway)
    with visiting(browser, origins, WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        page.goto(site.url + "/")
        page.get_by_label("Token").fill(token)
        page.keyboard.press("Enter")
        items = page.locator("#replays-list li")
        items.first.wait_for(timeout=30_000)
        more = page.get_by_role("button", name="Show more")
        while True:
            count = items.count()
            if not more.is_visible():
                break
            more.click()
            wait_until(lambda count=count: items.count() > count)
        shown = items.evaluate_all("(items) => items.map((i) => i.dataset.id)")
        status = page.locator("#replays-status").inner_text()
        screenshot(visit, "web-app-replays.png")

        # By keyboard: the link, then the segment's button.
        page.locator(
            f'#replays-list li[data-id="{encode_global_id("Consultation", consultation)}"] a'
        ).focus()
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Play segment 2: Video").focus()
        page.keyboard.press("Space")
        visit.wait_for_media("playing", recordings[1])
        wait_until(lambda: page.evaluate("document.getElementById('player').currentTime > 0"))
        stored = page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')")
        visit.assert_clean()

    assert shown == expected
    assert status == f"Showing {len(expected)} consultations."
    assert visit.operations().count("MyReplays") == max(1, math.ceil(len(expected) / 2))
    assert stored == token
    to_gateway = [e for e in visit.exchanges if e.url.startswith(site.gateway)]
    assert all(e.headers.get("origin") == site.url for e in to_gateway if e.method == "POST")
    assert visit.media_exchanges(recordings[1])[0] == ("POST", 204, None)
    assert ("GET", 206, "bytes=0-") in visit.media_exchanges(recordings[1])


def test_who_saw_my_record_shows_the_clinician_and_the_break_glass_reason(
    env, browser, dev_gateway, client, grants
):
    """A clinician who never treated the patient opens break-glass and reads the record; the
    patient's access log names the clinician and shows the reason they gave."""
    subject, patient_id = patient(env, LOGGED_PATIENT)
    clinician_subject, clinician_id = off_the_loop(new_clinician, env, "webapp")
    off_the_loop(grants.open_break_glass, clinician_id, patient_id)
    read = client.execute(
        "query($id: ID!) { patient(id: $id) { displayName } }",
        env.token(clinician_subject),
        {"id": encode_global_id("Patient", patient_id)},
    )
    assert read["data"]["patient"]["displayName"]
    with visiting(browser, (dev_gateway,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, webapp_link(dev_gateway, env.token(subject)))
        page.get_by_role("link", name="Who saw my record").click()
        row = page.locator("#access-log-rows tr.break-glass").first
        row.wait_for(timeout=30_000)
        cells = row.locator("td").all_inner_texts()
        assert (
            page.get_by_role("link", name="Who saw my record").get_attribute("aria-current")
            == "page"
        )
        screenshot(visit, "web-app-access-log.png")
        visit.assert_clean()

    assert cells[1] == "Dr Fresh"
    assert cells[2].startswith("Read: Patient")
    assert cells[3] == REASON
    assert visit.operations()[-1] == "MyAccessLog"


def test_revoking_a_partners_consent_updates_the_list_and_the_partner_sees_nothing(
    env, browser, dev_gateway, client, grants
):
    subject, patient_id = patient(env, CONSENTING_PATIENT)
    partner_subject, partner_id = off_the_loop(new_partner, env, "webapp")
    consent = off_the_loop(grants.consent, patient_id, partner_id, scopes.ALL)
    query = "{ consultations { edges { node { id } } } }"
    assert client.execute(query, partner_token(env, partner_subject))["data"]["consultations"][
        "edges"
    ]
    name = f"P {partner_id}"
    with visiting(browser, (dev_gateway,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, webapp_link(dev_gateway, env.token(subject)))
        page.get_by_role("link", name="Consents").click()
        card = page.locator(f'#consents-list li[data-id="{encode_global_id("Consent", consent)}"]')
        card.wait_for(timeout=30_000)
        assert "Active until" in card.inner_text()
        page.get_by_role("button", name=f"Revoke consent for {name}").click()
        wait_until(lambda: "Revoked on" in card.inner_text(), message=card.inner_text)
        status = page.locator("#consents-status").inner_text()
        assert card.get_by_role("button").count() == 0
        screenshot(visit, "web-app-consents.png")
        visit.assert_clean()

    assert status.startswith(f"Consent for {name} revoked.")
    revoked = admin(
        env, lambda c: c.fetchval("select revoked_at from data.consents where id = $1", consent)
    )
    assert revoked is not None
    assert visit.operations()[-3:] == ["MyConsents", "RevokeConsent", "MyConsents"]
    assert (
        client.execute(query, partner_token(env, partner_subject))["data"]["consultations"]["edges"]
        == []
    )


def test_an_expired_sign_in_asks_to_sign_in_again(env, browser, dev_gateway):
    subject, _ = patient(env, SITE_PATIENT)
    expired = env.token(subject, exp=1)
    with visiting(browser, (dev_gateway,), WebAppVisit) as visit:
        page = visit.page
        page.goto(webapp_link(dev_gateway, expired))
        page.get_by_label("Token").wait_for(timeout=30_000)
        notice = page.get_by_role("alert").inner_text()
        stored = page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')")
        visit.assert_clean()

    assert notice == "Your sign-in has expired or is not valid. Please sign in again."
    assert stored is None
    assert [e.status for e in visit.exchanges if e.url.endswith("/graphql")] == [401]


@pytest.fixture(scope="module")
def short_lived_urls_gateway(env):
    """Playback URLs that live 10 seconds: always within the app's margin before expiry."""
    settings = env.settings(
        mode=Mode.DEVELOPMENT,
        trusted_documents=MANIFEST,
        free_form_documents="nobody",
        playback_url_ttl_seconds=10,
    )
    with serving(create_app(settings)) as server:
        yield server.url


def test_a_playback_url_about_to_expire_is_replaced_by_a_fresh_one_before_it_starts(
    env, browser, short_lived_urls_gateway
):
    """The app fetches the Replay again for fresh URLs rather than start a playback whose URL
    (and so its cookie) is about to expire; the fresh URL plays."""
    gateway = short_lived_urls_gateway
    subject, patient_id = patient(env, PATIENT_PLAYS)
    consultation, recordings = replay_with_segments(env, patient_id, 2)
    with visiting(browser, (gateway,), WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        open_replays(visit, webapp_link(gateway, env.token(subject)))
        page.locator(
            f'#replays-list li[data-id="{encode_global_id("Consultation", consultation)}"] a'
        ).click()
        page.get_by_role("button", name="Play segment 2: Video").click()
        visit.wait_for_media("playing", recordings[1])
        visit.assert_clean()

    assert visit.operations() == ["Me", "MyReplays", "Replay", "Replay"]
    replays = [e for e in visit.exchanges if e.url.endswith("/graphql")][-2:]
    started = next(e for e in visit.exchanges if e.method == "POST" and "/media/" in e.url)
    assert visit.exchanges.index(replays[1]) < visit.exchanges.index(started)
    assert visit.media_exchanges(recordings[1])[0] == ("POST", 204, None)


def test_after_sign_out_another_patient_in_the_same_tab_sees_only_their_own_list(
    env, browser, dev_gateway
):
    """A shared computer: A signs out, B signs in with the Token field in the same tab; the
    token is gone from storage, and nothing of A's list is left on the page."""
    a_subject, a_patient = patient(env, PATIENT_PLAYS)
    b_subject, b_patient = patient(env, OTHER_PATIENT)
    with visiting(browser, (dev_gateway,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, webapp_link(dev_gateway, env.token(a_subject)))
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("Token").wait_for()
        stored_after_sign_out = page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')")
        page.get_by_label("Token").fill(env.token(b_subject))
        page.get_by_role("button", name="Sign in").click()
        items = page.locator("#replays-list li")
        expected = consultations_newest_first(env, b_patient)
        wait_until(lambda: items.count() == len(expected))
        shown = items.evaluate_all("(items) => items.map((i) => i.dataset.id)")
        who = page.locator("#who").inner_text()
        visit.assert_clean()

    assert stored_after_sign_out is None
    assert shown == expected
    assert not set(shown) & set(consultations_newest_first(env, a_patient))
    rows = admin(env, lambda c: c.fetch("select id, display_name from data.patients"))
    names = {row["id"]: row["display_name"] for row in rows}
    assert who == f"Signed in as {names[b_patient]}"
