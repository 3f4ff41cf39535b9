"""The reference patient web app (apps/web) in Debian's Chromium, driven by Playwright, against
gateways that accept trusted documents by hash only.

Served by a development gateway at /app/ (as ``gateway dev`` serves it, signing in with its
OpenID Connect provider at /dev/oidc), and as a separate static site on another origin of the
same site (as a deployment may serve it) against a production gateway with that origin in
``GATEWAY_CORS_ORIGINS`` and a provider on a third origin. Every patient signs in as a patient
would: the app's "Sign in", the provider's page, a name chosen, the code exchanged with PKCE.
In every test: no request to any other origin, no Content-Security-Policy violation, no page
error. Expectations come from the database, never from counts written here."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID, uuid4

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from gateway import create_app
from gateway.config import Mode
from gateway.dev.oidc import PATH as OIDC_PATH
from gateway.dev.oidc import DevOidcProvider, Person
from gateway.ids import encode_global_id
from gateway.policy import scopes
from gateway.web.webapp import CLIENT_ID
from tests.support.actors import (
    REASON,
    Grants,
    new_clinician,
    new_partner,
    new_patient,
    partner_token,
)
from tests.support.archives import DELETED, KEPT_FOR_THE_APP, archived
from tests.support.browser import (
    ARTIFACTS,
    BrowserVisit,
    assert_png,
    chromium,
    off_the_loop,
    visiting,
    wait_until,
)
from tests.support.database import HOLDS_OBJECT, as_admin
from tests.support.server import ServerThread
from tests.support.sign_in import LateApp, demo_people, gateway_with_sign_in

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "web"
MANIFEST = ROOT / "apps" / "manifest.json"
OPERATIONS = {op["name"]: op["id"] for op in json.loads(MANIFEST.read_text())["operations"]}
SESSION_KEY = "gateway.webapp.session"
ENDED = "Your sign-in has ended. Please sign in again."
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
# origin added where the app talks to it (GraphQL, the playback's start, the <video>) and the
# provider's where it signs in (discovery, the token endpoint).
SITE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src {gateway}; connect-src 'self' {gateway} {provider}; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


# The separate site's domain: app.<SITE> (the static site) and api.<SITE> (the gateway) are
# two origins of one site, as app.example.org and api.example.org are.
SITE = "example.localhost"
PATIENT_PLAYS, OTHER_PATIENT, SITE_PATIENT, LOGGED_PATIENT, CONSENTING_PATIENT = 2, 5, 3, 8, 9
ARCHIVE_PATIENT = 10


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


@dataclass(frozen=True)
class Site:
    """The app as a static site of its own, the production gateway it talks to, and the
    OpenID Connect provider it signs in with (three origins)."""

    url: str
    gateway: str
    provider: str

    @property
    def app_url(self) -> str:
        return self.url + "/"


def _deploy(folder: Path, gateway: str, issuer: str, page_size: int) -> None:
    """What a deployment does: the app's files, the manifest next to them, the gateway's
    address and the provider (here also a small page size) in index.html's meta elements."""
    shutil.copytree(APP, folder)
    shutil.copy(MANIFEST, folder / "manifest.json")
    index = folder / "index.html"
    text = index.read_text()
    for name, value in (
        ("gateway-url", gateway),
        ("page-size", str(page_size)),
        ("oidc-issuer", issuer),
        ("oidc-client-id", CLIENT_ID),
    ):
        start = text.index(f'<meta name="{name}" content="')
        end = text.index(">", start)
        text = text[:start] + f'<meta name="{name}" content="{value}"' + text[end:]
    index.write_text(text)


def _static_site(folder: Path, gateway: str, provider: str) -> Starlette:
    """A static host: the files, and the headers its configuration adds."""
    headers = [
        (b"content-security-policy", SITE_CSP.format(gateway=gateway, provider=provider).encode()),
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
def people(env):
    return off_the_loop(demo_people, env)


def dev_settings(env, **overrides):
    """As ``gateway dev`` runs: development mode, the app at /app/, its manifest trusted; and
    documents refused from everyone, so the app cannot get by without its hashes."""
    return env.settings(
        mode=Mode.DEVELOPMENT, trusted_documents=MANIFEST, free_form_documents="nobody", **overrides
    )


@pytest.fixture(scope="module")
def dev_gateway(env, people):
    with gateway_with_sign_in(env, dev_settings(env), people) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def site(env, people, tmp_path_factory):
    """The app deployed as a static site at app.<SITE> with a page size of 2, a production
    gateway at api.<SITE> that trusts the manifest only and lists the site in
    GATEWAY_CORS_ORIGINS, and the provider at id.<SITE>: three origins, one site."""
    late_gateway, late_provider, late_site = LateApp(), LateApp(), LateApp()
    gateway, provider, static = (
        ServerThread(late_gateway),
        ServerThread(late_provider),
        ServerThread(late_site),
    )
    gateway_url = f"http://api.{SITE}:{gateway.port}"
    provider_url = f"http://id.{SITE}:{provider.port}"
    site_url = f"http://app.{SITE}:{static.port}"
    folder = tmp_path_factory.mktemp("site") / "web"
    _deploy(folder, gateway_url, provider_url + OIDC_PATH, page_size=2)
    late_site.app = _static_site(folder, gateway_url, provider_url)
    late_provider.app = Starlette(
        routes=[
            Mount(
                OIDC_PATH,
                DevOidcProvider(
                    env.identity, provider_url + OIDC_PATH, {CLIENT_ID: [site_url + "/"]}, people
                ),
            )
        ]
    )
    late_gateway.app = create_app(
        env.settings(
            trusted_documents=MANIFEST,
            free_form_documents="nobody",
            cors_origins=(site_url,),
            public_base_url=gateway_url,
        )
    )
    servers = [server.start() for server in (static, provider, gateway)]
    try:
        yield Site(site_url, gateway_url, provider_url)
    finally:
        for server in servers:
            server.stop()


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


def sign_in(visit: WebAppVisit, app_url: str, subject: str, *, goto: bool = True) -> None:
    """As a patient signs in: the app's Sign in, the provider's page, their name; back in the
    app, the list of their replays."""
    page = visit.page
    if goto:
        page.goto(app_url)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.locator(f'button[name="subject"][value="{subject}"]').click()


def open_replays(visit: WebAppVisit, app_url: str, subject: str) -> None:
    sign_in(visit, app_url, subject)
    visit.page.locator("#replays-list li").first.wait_for(timeout=30_000)


def stored_session(visit: WebAppVisit) -> dict[str, Any] | None:
    return json.loads(visit.page.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')") or "null")


def token_requests(visit: WebAppVisit) -> list[dict[str, str]]:
    """The form fields of each request the app made to a token endpoint."""
    return [
        dict(parse_qsl(e.body))
        for e in visit.exchanges
        if e.method == "POST" and urlsplit(e.url).path == f"{OIDC_PATH}/token"
    ]


def screenshot(visit: WebAppVisit, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    visit.page.screenshot(path=str(path))
    assert_png(path, min_bytes=10_000)
    return path


def test_a_patient_signs_in_with_pkce_and_plays_the_segments_in_order(env, browser, dev_gateway):
    """Signed in through the provider (authorization code with PKCE): the code leaves the
    address at once, the tokens are in this tab's sessionStorage only, never in an address,
    localStorage or a cookie. A replay's audio segment plays, on its end the video segment,
    and so on to the last: each started by one POST (one audited playback), then the <video>
    element's own GET with a Range header, served 206 by the cookie alone. The video reaches
    `playing` with currentTime > 0, and seeks."""
    subject, patient_id = patient(env, PATIENT_PLAYS)
    consultation, recordings = replay_with_segments(env, patient_id, 2)
    audio, video = recordings[0], recordings[1]
    before = {r: len(media_events(env, subject, r)) for r in recordings}
    origins = (dev_gateway.url,)
    with visiting(browser, origins, WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        page.goto(dev_gateway.app_url)
        page.get_by_role("heading", name="Sign in", level=1).wait_for()
        screenshot(visit, "web-app-sign-in.png")
        sign_in(visit, dev_gateway.app_url, subject, goto=False)
        page.locator("#replays-list li").first.wait_for(timeout=30_000)
        session = stored_session(visit)
        token = session["accessToken"]
        assert page.url == dev_gateway.app_url
        assert page.evaluate("document.activeElement.id") == "replays-heading"
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
        log_status = page.locator("#access-log-status")
        wait_until(lambda: log_status.inner_text() not in ("", "Loading…"))
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
    # The sign-in: an authorization request with an S256 challenge, the code exchanged once
    # with its verifier; no address the browser visited carried a token.
    [authorize] = [
        e.url
        for e in visit.exchanges
        if e.method == "GET" and urlsplit(e.url).path.endswith("/authorize")
    ]
    asked = dict(parse_qsl(urlsplit(authorize).query))
    assert (asked["code_challenge_method"], asked["client_id"]) == ("S256", CLIENT_ID)
    assert asked["redirect_uri"] == dev_gateway.app_url and asked["state"] and asked["nonce"]
    [exchange] = token_requests(visit)
    assert exchange["grant_type"] == "authorization_code" and len(exchange["code_verifier"]) == 64
    assert not [e.url for e in visit.exchanges if token in e.url or session["idToken"] in e.url]
    graphql = [e for e in visit.exchanges if urlsplit(e.url).path == "/graphql"]
    assert {e.headers["authorization"] for e in graphql} == {f"Bearer {token}"}


def test_another_patient_given_the_first_patients_urls_gets_403_and_plays_nothing(
    env, browser, dev_gateway
):
    """Patient B, signed in to the app in a browser of their own, is given patient A's replay
    link and A's playback URL: the replay is not found, the start of a playback with B's token
    is an empty 403, and B's <video> element gets an empty 403 and never plays."""
    a_subject, a_patient = patient(env, PATIENT_PLAYS)
    b_subject, b_patient = patient(env, OTHER_PATIENT)
    consultation, recordings = replay_with_segments(env, a_patient, 2)
    a_url = _playback_url(dev_gateway.url, env.token(a_subject), consultation, recordings[1])
    before = len(media_events(env, b_subject, recordings[1]))
    origins = (dev_gateway.url,)
    with visiting(browser, origins, WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        open_replays(visit, dev_gateway.app_url, b_subject)
        shown = page.locator("#replays-list li").evaluate_all(
            "(items) => items.map((i) => i.dataset.id)"
        )
        assert set(shown) <= set(consultations_newest_first(env, b_patient))

        page.goto(f"{dev_gateway.app_url}#replay={encode_global_id('Consultation', consultation)}")
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
  const token = JSON.parse(sessionStorage.getItem("gateway.webapp.session")).accessToken;
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


@pytest.fixture
def cancelled(env):
    """A cancelled consultation of the site's patient, nothing recorded (removed afterwards)."""
    _, patient_id = patient(env, SITE_PATIENT)
    pk = uuid4()
    admin(
        env,
        lambda c: c.execute(
            "insert into data.consultations (id, patient_id, clinician_id, scheduled_at, status, "
            "mode, reason) select $1, patient_id, clinician_id, scheduled_at - interval '1 day', "
            "'CANCELLED', mode, 'Follow-up' from data.consultations where patient_id = $2 "
            "order by scheduled_at desc limit 1",
            pk,
            patient_id,
        ),
    )
    yield pk
    admin(env, lambda c: c.execute("delete from data.consultations where id = $1", pk))


def test_a_separate_static_site_lists_exactly_the_patients_consultations_and_plays_one(
    env, browser, site, cancelled
):
    """Deployed on its own origin (same site) against a production gateway, used by keyboard:
    signed in with the provider on a third origin, the list pages through exactly the
    patient's consultations, newest first, as the database holds them; a video plays across
    origins (CORS with credentials, the cookie of the same site); only the three origins are
    ever asked."""
    subject, patient_id = patient(env, SITE_PATIENT)
    expected = consultations_newest_first(env, patient_id)
    consultation, recordings = replay_with_segments(env, patient_id, 2)
    origins = (site.url, site.gateway, site.provider)
    with visiting(browser, origins, WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        page.goto(site.app_url)
        page.get_by_role("button", name="Sign in", exact=True).focus()
        page.keyboard.press("Enter")
        page.locator(f'button[name="subject"][value="{subject}"]').focus()
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
        titles = items.evaluate_all(
            "(items) => items.map((i) => [i.dataset.id, i.querySelector('h2').textContent,"
            " Boolean(i.querySelector('h2 a'))])"
        )
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
        stored = stored_session(visit)
        visit.assert_clean()

    assert shown == expected
    assert status == f"Showing {len(expected)} consultations."
    # Each title names the consultation and its date (the link's text tells them apart); a
    # cancelled consultation with nothing recorded has nothing to open and is no link.
    rows = admin(
        env,
        lambda c: c.fetch(
            "select c.id, c.reason, c.status, c.scheduled_at, "
            "(select count(*) from data.recordings r where r.consultation_id = c.id) as segments "
            "from data.consultations c where c.patient_id = $1",
            patient_id,
        ),
    )
    truth = {encode_global_id("Consultation", row["id"]): row for row in rows}
    for gid, title, linked in titles:
        row = truth[gid]
        assert title.startswith(f"{row['reason']}, ") and str(row["scheduled_at"].year) in title
        assert linked == (not (row["status"] == "CANCELLED" and row["segments"] == 0)), row
    assert len({title for _, title, _ in titles}) == len(titles)
    assert {linked for _, _, linked in titles} == {True, False}, "both kinds are on the page"
    assert visit.operations().count("MyReplays") == max(1, math.ceil(len(expected) / 2))
    to_gateway = [e for e in visit.exchanges if e.url.startswith(site.gateway)]
    assert {e.headers["authorization"] for e in to_gateway if e.method == "POST"} == {
        f"Bearer {stored['accessToken']}"
    }
    assert [f["grant_type"] for f in token_requests(visit)] == ["authorization_code"]
    to_gateway = [e for e in visit.exchanges if e.url.startswith(site.gateway)]
    assert all(e.headers.get("origin") == site.url for e in to_gateway if e.method == "POST")
    assert visit.media_exchanges(recordings[1])[0] == ("POST", 204, None)
    assert ("GET", 206, "bytes=0-") in visit.media_exchanges(recordings[1])


def test_who_saw_my_record_shows_the_break_glass_read_first_in_plain_words(
    env, browser, dev_gateway, client, grants
):
    """A clinician who never treated the patient opens break-glass and reads the patient's
    profile and one consultation. The patient's log starts with that read, in plain words: the
    clinician's name and role, what they read (the consultation by its reason and date), the
    reason they gave. Below, others' accesses; the patient's own reads only with the switch."""
    subject, patient_id = patient(env, LOGGED_PATIENT)
    clinician_subject, clinician_id = off_the_loop(new_clinician, env, "webapp")
    off_the_loop(grants.open_break_glass, clinician_id, patient_id)
    consultation = sorted(env.truth.consultations_of_patient[patient_id])[0]
    read = client.execute(
        "query($id: ID!, $c: ID!) { patient(id: $id) { displayName } "
        "consultation(id: $c) { reason summary } }",
        env.token(clinician_subject),
        {
            "id": encode_global_id("Patient", patient_id),
            "c": encode_global_id("Consultation", consultation),
        },
    )
    assert read["data"]["patient"]["displayName"] and read["data"]["consultation"]["reason"]
    reason = admin(
        env,
        lambda c: c.fetchval("select reason from data.consultations where id = $1", consultation),
    )
    with visiting(browser, (dev_gateway.url,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, dev_gateway.app_url, subject)
        page.get_by_role("link", name="Who saw my record").click()
        first = page.locator("#emergency-list li").first
        first.wait_for(timeout=30_000)
        card = {
            "who": first.locator(".who").inner_text(),
            "what": first.locator(".what li").all_inner_texts(),
            "reason": first.locator(".reason").inner_text(),
        }
        assert (
            page.get_by_role("link", name="Who saw my record").get_attribute("aria-current")
            == "page"
        )
        status = page.locator("#access-log-status")
        wait_until(lambda: status.inner_text().startswith("Showing"), message=status.inner_text)
        others = page.locator("#access-log-list .who").all_inner_texts()
        screenshot(visit, "web-app-access-log.png")
        page.get_by_label("Include my own reads").check()
        wait_until(lambda: "You" in page.locator("#access-log-list .who").all_inner_texts())
        visit.assert_clean()

    assert card["who"] == "Dr Fresh, clinician"
    assert card["reason"] == f"Emergency access: {REASON}"
    assert "Read your profile (name)" in card["what"]
    summary_line = next(line for line in card["what"] if line.startswith("Read the summary of"))
    assert f"your consultation “{reason}” on " in summary_line
    assert others and "You" not in others and others[0] == "Dr Fresh, clinician"
    assert visit.operations()[-3:] == ["MyAccessLog", "MyAccessLog", "MyAccessLog"]


def test_who_saw_my_record_names_each_archived_month_in_one_plain_line(env, browser, dev_gateway):
    """Months moved to the audit archive are no longer in the list: below it, under "Older
    accesses", one line each says so, newest first, the month in words; a month deleted past
    retention says when. The app asks for them once, when the log opens."""
    subject, _ = patient(env, ARCHIVE_PATIENT)
    with archived(env, KEPT_FOR_THE_APP, DELETED):
        catalog = admin(
            env,
            lambda c: c.fetch(
                "select period_start, deleted_at from data.audit_archives "
                "order by period_start desc"
            ),
        )
        with visiting(browser, (dev_gateway.url,), WebAppVisit) as visit:
            page = visit.page
            open_replays(visit, dev_gateway.app_url, subject)
            page.get_by_role("link", name="Who saw my record").click()
            page.locator("#archived-list li").first.wait_for(timeout=30_000)
            status = page.locator("#access-log-status")
            wait_until(lambda: status.inner_text().startswith(("Showing", "Nobody")))
            lines = page.get_by_role("list", name="Older accesses").get_by_role("listitem")
            shown = lines.all_inner_texts()
            heading = page.get_by_role("heading", name="Older accesses", level=2).is_visible()
            visit.assert_clean()

    assert heading
    months = [f"Accesses from {row['period_start']:%B %Y} " for row in catalog]
    assert len(shown) == len(months), shown
    assert all(line.startswith(month) for line, month in zip(shown, months, strict=True)), shown
    assert (
        "Accesses from March 2001 are archived: the records of this month are kept in the audit "
        "archive; ask the privacy office to see them."
    ) in shown
    deleted = next(line for line in shown if line.startswith("Accesses from January 2001 "))
    assert deleted.startswith("Accesses from January 2001 were deleted on ")
    assert deleted.endswith("2007, after the retention period."), deleted
    log = [
        json.loads(e.body)
        for e in visit.exchanges
        if e.method == "POST"
        and urlsplit(e.url).path == "/graphql"
        and json.loads(e.body)["extensions"]["persistedQuery"]["sha256Hash"]
        == OPERATIONS["MyAccessLog"]
    ]
    assert [body["variables"].get("withArchivedPeriods", False) for body in log] == [True, False]


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
    with visiting(browser, (dev_gateway.url,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, dev_gateway.app_url, subject)
        page.get_by_role("link", name="Consents").click()
        card = page.locator(f'#consents-list li[data-id="{encode_global_id("Consent", consent)}"]')
        card.wait_for(timeout=30_000)
        assert "Active until" in card.inner_text()
        # Revoke asks first; "Keep consent" leaves it as it was, and revokes nothing.
        page.get_by_role("button", name=f"Revoke consent for {name}").click()
        asked = page.get_by_role("group", name=f"Revoke consent for {name}?")
        asked.wait_for()
        focused_on_yes = page.evaluate("document.activeElement.textContent") == "Yes, revoke"
        page.get_by_role("button", name="Keep consent").click()
        kept = (asked.count(), "Active until" in card.inner_text())
        operations_after_keep = visit.operations()
        page.get_by_role("button", name=f"Revoke consent for {name}").click()
        page.get_by_role("button", name="Yes, revoke").click()
        wait_until(lambda: "Revoked on" in card.inner_text(), message=card.inner_text)
        status = page.locator("#consents-status").inner_text()
        assert card.get_by_role("button").count() == 0
        screenshot(visit, "web-app-consents.png")
        visit.assert_clean()

    assert focused_on_yes and kept == (0, True)
    assert "RevokeConsent" not in operations_after_keep
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


@pytest.fixture(scope="module")
def uncached_gateway(env):
    """Accounts read on every request (no cache): an account disabled is refused at once."""
    with gateway_with_sign_in(env, dev_settings(env, account_cache_size=0), []) as gateway:
        yield gateway


def test_a_sign_in_the_gateway_refuses_asks_to_sign_in_again(env, browser, uncached_gateway):
    """An operator disables the patient's account while they are signed in: the gateway's
    first 401 ends the sign-in here, forgets the tokens and asks for a new sign-in."""
    gateway = uncached_gateway
    subject, patient_id = off_the_loop(new_patient, env, "webapp-disabled")
    gateway.provider.offer(Person(subject, f"Patient {patient_id}"))
    with visiting(browser, (gateway.url,), WebAppVisit) as visit:
        page = visit.page
        sign_in(visit, gateway.app_url, subject)
        wait_until(lambda: page.locator("#replays-status").inner_text().startswith("You have"))
        admin(
            env,
            lambda c: c.execute(
                "update data.accounts set disabled_at = now() where subject = $1", subject
            ),
        )
        page.get_by_role("link", name="Consents").click()
        page.get_by_role("heading", name="Sign in", level=1).wait_for(timeout=30_000)
        notice = page.get_by_role("alert").inner_text()
        focused = page.evaluate("document.activeElement.id")
        stored = stored_session(visit)
        visit.assert_clean()

    assert notice == "Your sign-in has expired or is not valid. Please sign in again."
    assert stored is None
    assert focused == "sign-in-heading"
    statuses = [e.status for e in visit.exchanges if e.url.endswith("/graphql")]
    assert statuses[0] == 200 and statuses[-1] == 401


@pytest.fixture(scope="module")
def short_sign_in_gateway(env, people):
    """Access tokens of 12 seconds and no refresh token: the sign-in ends with its token."""
    with gateway_with_sign_in(
        env, dev_settings(env), people, access_ttl=12, refresh=False
    ) as gateway:
        yield gateway


def test_a_sign_in_that_ends_mid_playback_asks_to_sign_in_and_audits_no_more_playback(
    env, browser, short_sign_in_gateway
):
    """The app says when a sign-in it cannot renew ends; a recording playing at a quarter speed
    outlives it: at the end the app stops, asks to sign in again, and starts no playback with
    the ended sign-in, so the gateway audits none (one event, for the segment started before)."""
    gateway = short_sign_in_gateway
    subject, patient_id = patient(env, PATIENT_PLAYS)
    consultation, recordings = replay_with_segments(env, patient_id, 2)
    before = {r: len(media_events(env, subject, r)) for r in recordings}
    with visiting(browser, (gateway.url,), WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        open_replays(visit, gateway.app_url, subject)
        warning = page.locator("#expiry")
        warning.wait_for(timeout=10_000)
        warned = warning.inner_text()
        page.locator(
            f'#replays-list li[data-id="{encode_global_id("Consultation", consultation)}"] a'
        ).click()
        page.get_by_role("button", name="Play segment 1: Audio").click()
        visit.wait_for_media("playing", recordings[0])
        page.evaluate("document.getElementById('player').playbackRate = 0.25")
        page.get_by_role("heading", name="Sign in", level=1).wait_for(timeout=30_000)
        notice = page.get_by_role("alert").inner_text()
        paused = page.evaluate("document.getElementById('player').paused")
        visit.assert_clean()

    assert warned.startswith("Your sign-in ends at ") and "Sign in again" in warned
    assert notice == ENDED
    assert paused
    after = {r: len(media_events(env, subject, r)) - before[r] for r in recordings}
    assert after == {r: 1 if r == recordings[0] else 0 for r in recordings}
    starts = [e for e in visit.exchanges if e.method == "POST" and "/media/" in e.url]
    assert [(urlsplit(e.url).path, e.status) for e in starts] == [
        (f"/media/recordings/{encode_global_id('Recording', recordings[0])}", 204)
    ]


@pytest.fixture(scope="module")
def renewing_gateway(env, people):
    """Access tokens of 90 seconds, with refresh tokens: the app renews on its first check, 5
    seconds after it starts (four minutes or less left)."""
    with gateway_with_sign_in(env, dev_settings(env), people, access_ttl=90) as gateway:
        yield gateway


def test_the_app_renews_its_sign_in_and_a_new_tab_signs_in_without_choosing_again(
    env, browser, renewing_gateway
):
    """Renewal: the refresh token is exchanged before the access token expires, and the app
    goes on with the new one (the used refresh token is spent). A new tab of the same browser
    has no tokens (sessionStorage is per tab): Sign in there returns at once with the
    provider's session, without the page to choose an account."""
    gateway = renewing_gateway
    subject, _ = patient(env, OTHER_PATIENT)
    with visiting(browser, (gateway.url,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, gateway.app_url, subject)
        first = stored_session(visit)
        wait_until(lambda: stored_session(visit)["accessToken"] != first["accessToken"], 20)
        renewed = stored_session(visit)
        page.get_by_role("link", name="Consents").click()
        page.locator("#consents-status").wait_for()
        wait_until(lambda: page.locator("#consents-status").inner_text() not in ("", "Loading…"))
        tab = page.context.new_page()
        tab.goto(gateway.app_url)
        tab.get_by_role("button", name="Sign in", exact=True).click()
        tab.locator("#replays-list li").first.wait_for(timeout=30_000)
        tab_session = json.loads(tab.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')"))
        chooser_pages = [
            e for e in visit.exchanges if e.method == "POST" and e.url.endswith("/authorize")
        ]
        visit.assert_clean()

    grants = [f["grant_type"] for f in token_requests(visit)]
    assert grants[:2] == ["authorization_code", "refresh_token"]
    assert grants.count("authorization_code") == 2  # the first tab's, the new tab's
    assert token_requests(visit)[1]["refresh_token"] == first["refreshToken"]
    used = [f["refresh_token"] for f in token_requests(visit) if "refresh_token" in f]
    assert len(used) == len(set(used)), "each refresh token is used once"
    assert renewed["refreshToken"] != first["refreshToken"]
    consents = [
        e
        for e in visit.exchanges
        if urlsplit(e.url).path == "/graphql" and OPERATIONS["MyConsents"] in e.body
    ]
    assert consents[-1].headers["authorization"] != f"Bearer {first['accessToken']}"
    assert consents[-1].status == 200
    assert len(chooser_pages) == 1, "the new tab chose no account"
    assert tab_session["subject"] == subject


@pytest.fixture(scope="module")
def brief_tokens_gateway(env, people):
    """Access tokens of 6 seconds, with refresh tokens."""
    with gateway_with_sign_in(env, dev_settings(env), people, access_ttl=6) as gateway:
        yield gateway


def test_a_reload_after_the_access_token_expired_renews_and_stays_signed_in(
    env, browser, brief_tokens_gateway
):
    """The tab is away (another page) while its access token expires; back in the app, the
    refresh token renews it before the first request: no sign-in asked for."""
    gateway = brief_tokens_gateway
    subject, _ = patient(env, OTHER_PATIENT)
    with visiting(browser, (gateway.url,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, gateway.app_url, subject)
        page.goto("about:blank")
        time.sleep(7)
        page.goto(gateway.app_url)
        page.locator("#replays-list li").first.wait_for(timeout=30_000)
        signed_in = page.locator("#who").inner_text()
        visit.assert_clean()

    assert signed_in.startswith("Signed in as ")
    graphql = [e for e in visit.exchanges if urlsplit(e.url).path == "/graphql"]
    assert graphql and all(e.status == 200 for e in graphql)
    assert "refresh_token" in [f["grant_type"] for f in token_requests(visit)]


@pytest.fixture(scope="module")
def short_lived_urls_gateway(env, people):
    """Playback URLs that live 10 seconds: always within the app's margin before expiry."""
    settings = dev_settings(env, playback_url_ttl_seconds=10)
    with gateway_with_sign_in(env, settings, people) as gateway:
        yield gateway


def test_a_playback_url_about_to_expire_is_replaced_by_a_fresh_one_before_it_starts(
    env, browser, short_lived_urls_gateway
):
    """The app fetches the Replay again for fresh URLs rather than start a playback whose URL
    (and so its cookie) is about to expire; the fresh URL plays."""
    gateway = short_lived_urls_gateway
    subject, patient_id = patient(env, PATIENT_PLAYS)
    consultation, recordings = replay_with_segments(env, patient_id, 2)
    with visiting(browser, (gateway.url,), WebAppVisit, init_scripts=(RECORD_MEDIA,)) as visit:
        page = visit.page
        open_replays(visit, gateway.app_url, subject)
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
    """A shared computer: A signs out, which ends the provider's session too (the provider
    asks who signs in next, and A's refresh token is dead); B signs in in the same tab; A's
    tokens are gone from storage, and nothing of A's list is left on the page."""
    a_subject, a_patient = patient(env, PATIENT_PLAYS)
    b_subject, b_patient = patient(env, OTHER_PATIENT)
    with visiting(browser, (dev_gateway.url,), WebAppVisit) as visit:
        page = visit.page
        open_replays(visit, dev_gateway.app_url, a_subject)
        a_session = stored_session(visit)
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in", level=1).wait_for(timeout=30_000)
        notice = page.get_by_role("alert").inner_text()
        stored_after_sign_out = stored_session(visit)
        sign_in(visit, dev_gateway.app_url, b_subject, goto=False)
        items = page.locator("#replays-list li")
        expected = consultations_newest_first(env, b_patient)
        wait_until(lambda: items.count() == len(expected))
        shown = items.evaluate_all("(items) => items.map((i) => i.dataset.id)")
        who = page.locator("#who").inner_text()
        visit.assert_clean()

    assert notice == "You are signed out."
    assert stored_after_sign_out is None
    assert shown == expected
    assert not set(shown) & set(consultations_newest_first(env, a_patient))
    rows = admin(env, lambda c: c.fetch("select id, display_name from data.patients"))
    names = {row["id"]: row["display_name"] for row in rows}
    assert who == f"Signed in as {names[b_patient]}"
    dead = httpx.post(
        f"{dev_gateway.issuer}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": a_session["refreshToken"],
            "client_id": CLIENT_ID,
        },
    )
    assert dead.json()["error"] == "invalid_grant"
