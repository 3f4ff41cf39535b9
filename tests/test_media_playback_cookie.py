"""Browser playback: a signed URL exchanged once, with the bearer token, for a cookie naming one
audited playback of one recording (``POST``), then the ``<video>`` element's ``GET`` and Range
requests carrying that cookie and no token. Over real HTTP; every count of audit events is read
from the trail as superuser.

Attacks: another person holding the URL (no cookie, or their own token); a cookie moved to
another recording, altered, or signed with a key the gateway does not hold; the cookie or the
URL outliving the URL, the token, a consent or a break-glass grant; a cross-site page starting a
playback; the cookie reaching anything but its recording."""

from __future__ import annotations

import json
import time
import uuid
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import pytest

from gateway.authz.playback import COOKIE, PlaybackSession, PlaybackSessions, PlaybackSigner
from gateway.ids import encode_global_id
from gateway.policy import scopes
from tests.support.actors import Grants, gid, new_clinician, new_partner, partner_token
from tests.support.database import HOLDS_OBJECT, as_admin

PLAY = "query($id: ID!) { recording(id: $id) { id playbackUrl } }"


@pytest.fixture
def grants(env):
    grants = Grants(env)
    yield grants
    grants.close()


def _url(client, token: str, global_id: str) -> str:
    body = client.execute(PLAY, token, {"id": global_id})
    assert body["data"]["recording"]["id"] == global_id, body
    parts = urlsplit(body["data"]["recording"]["playbackUrl"])
    return f"{parts.path}?{parts.query}"


def _start(client, url: str, token: str | None, **headers):
    if token:
        headers["authorization"] = f"Bearer {token}"
    request_id = f"start-{uuid.uuid4().hex}"
    return client.http.post(url, headers={**headers, "x-request-id": request_id}), request_id


def _cookie(response) -> SimpleCookie:
    jar = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar


def _get(client, url: str, cookie: str | None, **headers):
    if cookie is not None:
        headers["cookie"] = f"{COOKIE}={cookie}"
    return client.http.get(url, headers=headers)


def _media_events(env, subject: str, recording: uuid.UUID) -> list[dict]:
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select request_id, detail from data.access_events where kind = 'media' "
            f"and subject = $1 and {HOLDS_OBJECT} order by seq",
            subject,
            str(recording),
        ),
    )
    return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]


def _media(env, recording: uuid.UUID) -> bytes:
    return next(env.media_root.rglob(f"{recording}.*")).read_bytes()


def _refused(response) -> None:
    assert (response.status_code, response.content) == (403, b"")
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers


def _play(client, env, token: str, global_id: str) -> tuple[str, str]:
    """(url, cookie value) of a started playback."""
    url = _url(client, token, global_id)
    response, _ = _start(client, url, token)
    assert response.status_code == 204, response.text
    return url, _cookie(response)[COOKIE].value


def test_one_viewing_is_one_audited_event_and_its_range_requests_carry_only_the_cookie(
    env, client, viewer
):
    url = _url(client, viewer["token"], viewer["global_id"])
    before = _media_events(env, viewer["subject"], viewer["recording"])
    response, request_id = _start(client, url, viewer["token"])
    assert (response.status_code, response.content) == (204, b"")
    assert response.headers["cache-control"] == "no-store"
    morsel = _cookie(response)[COOKIE]
    assert morsel["path"] == urlsplit(url).path == f"/media/recordings/{viewer['global_id']}"
    assert (morsel["httponly"], morsel["secure"], morsel["samesite"].lower()) == (
        True,
        True,
        "strict",
    )
    assert 0 < int(morsel["max-age"]) <= env.settings().playback_url_ttl_seconds
    assert not morsel["domain"]  # host-only: never sent to another host

    started = _media_events(env, viewer["subject"], viewer["recording"])[len(before) :]
    assert [event["request_id"] for event in started] == [request_id]
    playback = started[0]["detail"]
    assert playback["via"] == "cookie" and len(playback["playback"]) == 32

    media = _media(env, viewer["recording"])
    whole = _get(client, url, morsel.value)
    assert (whole.status_code, whole.content) == (200, media)
    assert whole.headers["cache-control"] == "no-store"
    assert whole.headers["accept-ranges"] == "bytes"
    for first, last in ((0, 99), (100, 1023), (len(media) - 10, len(media) - 1)):
        part = _get(client, url, morsel.value, range=f"bytes={first}-{last}")
        assert (part.status_code, part.content) == (206, media[first : last + 1])
    head = client.http.head(url, headers={"cookie": f"{COOKIE}={morsel.value}"})
    assert head.status_code == 200 and head.content == b""
    # Five requests of one viewing: still the one event written when it started.
    after = _media_events(env, viewer["subject"], viewer["recording"])[len(before) :]
    assert after == started


def test_another_person_holding_the_url_gets_the_same_empty_403_before_and_after_the_owner(
    env, client, viewer
):
    url = _url(client, viewer["token"], viewer["global_id"])
    other_subject, _ = env.patients()[1]
    other = env.token(other_subject)
    # Before the owner played it: another browser (no cookie), another patient's session.
    _refused(_get(client, url, None))
    _refused(_start(client, url, other)[0])
    response, _ = _start(client, url, viewer["token"])
    cookie = _cookie(response)[COOKIE].value
    assert _get(client, url, cookie).status_code == 200
    # After: the same refusals; the owner's cookie does not make the URL anyone's.
    _refused(_get(client, url, None))
    _refused(_start(client, url, other)[0])
    _refused(client.http.get(url, headers={"authorization": f"Bearer {other}"}))
    assert _media_events(env, other_subject, viewer["recording"]) == []


def test_a_cookie_is_good_for_its_recording_only_and_cannot_be_altered_or_forged(
    env, client, viewer
):
    url, cookie = _play(client, env, viewer["token"], viewer["global_id"])
    other_url = _url(
        client, viewer["token"], encode_global_id("Recording", viewer["other_recording"])
    )
    # Moved to another recording of the same patient (its own URL, signed for the same viewer).
    _refused(_get(client, other_url, cookie))
    # Altered: one character of the payload, or of the MAC.
    payload, _, mac = cookie.partition(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    _refused(_get(client, url, f"{flipped}.{mac}"))
    _refused(_get(client, url, f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"))
    _refused(_get(client, url, "garbage"))
    # Forged: the same session minted under a key the gateway does not hold.
    forged = PlaybackSessions((("dev", b"x" * 48),)).mint(
        PlaybackSessions(env.settings().signing_keys()).verify(cookie, viewer["recording"])
    )
    _refused(_get(client, url, forged))
    # A URL's own signature is no cookie, and the cookie needs a URL signed for its viewer.
    _refused(_get(client, url, urlsplit(url).query.rpartition("sig=")[2]))
    _refused(_get(client, urlsplit(url).path, cookie))
    assert _get(client, url, cookie).status_code == 200


def test_playback_stops_at_the_next_request_once_the_url_or_the_token_expires(env, client, viewer):
    signer = PlaybackSigner(env.settings().signing_keys(), 2)
    short = signer.url(
        viewer["recording"], viewer["global_id"], env.identity.issuer, viewer["subject"]
    )
    url = f"{urlsplit(short).path}?{urlsplit(short).query}"
    response, _ = _start(client, url, viewer["token"])
    url_cookie = _cookie(response)[COOKIE]
    assert int(url_cookie["max-age"]) <= 2
    assert _get(client, url, url_cookie.value).status_code == 200

    short_token = env.token(viewer["subject"], ttl=2)
    long_url = _url(client, viewer["token"], viewer["global_id"])
    response, _ = _start(client, long_url, short_token)
    token_cookie = _cookie(response)[COOKIE]
    assert int(token_cookie["max-age"]) <= 2
    assert _get(client, long_url, token_cookie.value).status_code == 200

    time.sleep(3.1)
    _refused(_get(client, url, url_cookie.value))
    _refused(_get(client, long_url, token_cookie.value))


def test_a_sign_in_expired_within_the_clock_leeway_starts_no_playback_and_audits_nothing(
    env, client, viewer
):
    """Attack on the trail's meaning (issue 24): a token 5 s past its expiry still
    authenticates (30 s of clock leeway), but the cookie a playback start would give expires with
    the token: the video could never play, yet the start was audited as a playback (twice, with
    the app's retry). Now it is refused as an expired sign-in, and nothing is audited."""
    stale = env.token(viewer["subject"], exp=int(time.time()) - 5)
    # Within the leeway: the API still takes it.
    body = client.execute("{ consultations(first: 1) { edges { node { id } } } }", stale)
    assert "errors" not in body and body["data"]["consultations"]["edges"], body
    url = _url(client, viewer["token"], viewer["global_id"])
    before = _media_events(env, viewer["subject"], viewer["recording"])

    response, request_id = _start(client, url, stale)

    assert response.status_code == 401
    assert response.json() == {
        "errors": [{"message": "Token expired", "extensions": {"code": "UNAUTHENTICATED"}}]
    }
    assert response.headers["www-authenticate"] == (
        'Bearer realm="consultation-gateway", error="invalid_token"'
    )
    assert "set-cookie" not in response.headers
    after = _media_events(env, viewer["subject"], viewer["recording"])
    assert after == before
    assert request_id not in {event["request_id"] for event in after}
    # The same start with a live token is served and audited: the refusal is the expiry's.
    response, request_id = _start(client, url, viewer["token"])
    assert response.status_code == 204
    assert [e["request_id"] for e in _media_events(env, viewer["subject"], viewer["recording"])][
        -1
    ] == request_id


def test_playback_stops_at_the_next_request_once_the_consent_is_revoked(
    env, client, viewer, grants
):
    subject, partner = new_partner(env, "cookie")
    consent = grants.consent(viewer["patient"], partner, [scopes.RECORDING])
    token = partner_token(env, subject, [scopes.RECORDING])
    url, cookie = _play(client, env, token, viewer["global_id"])
    assert _get(client, url, cookie, range="bytes=0-9").status_code == 206
    revoked = client.execute(
        "mutation($id: ID!) { revokeConsent(id: $id) { active } }",
        viewer["token"],
        {"id": gid("Consent", consent)},
    )
    assert revoked == {"data": {"revokeConsent": {"active": False}}}
    _refused(_get(client, url, cookie, range="bytes=10-19"))
    assert len(_media_events(env, subject, viewer["recording"])) == 1


def test_playback_stops_at_the_next_request_once_break_glass_expires(env, client, viewer, grants):
    subject, clinician = new_clinician(env, "cookie")
    grant = grants.open_break_glass(clinician, viewer["patient"])
    token = env.token(subject)
    url, cookie = _play(client, env, token, viewer["global_id"])
    assert _get(client, url, cookie).status_code == 200
    events = _media_events(env, subject, viewer["recording"])
    assert len(events) == 1
    grants.expire_break_glass(grant)
    _refused(_get(client, url, cookie))


def test_a_cross_site_page_cannot_start_a_playback(env, client, viewer):
    """A page elsewhere can make the browser send a form POST or a ``<video>`` GET to the URL,
    with whatever cookies the browser would attach, but cannot add the bearer token: starting
    takes the token, and the cookie starts nothing."""
    url, cookie = _play(client, env, viewer["token"], viewer["global_id"])
    form_post = client.http.post(
        url,
        headers={
            "origin": "https://evil.example",
            "content-type": "application/x-www-form-urlencoded",
            "cookie": f"{COOKIE}={cookie}",
        },
        content=b"x=1",
    )
    assert form_post.status_code == 401
    assert "set-cookie" not in form_post.headers
    preflight = client.http.options(
        url,
        headers={
            "origin": "https://evil.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_the_cookie_never_reaches_graphql(env, client, viewer):
    """Its path is the recording's: a browser sends it nowhere else. And were it sent, it
    would authenticate nothing there."""
    url, cookie = _play(client, env, viewer["token"], viewer["global_id"])
    response, _ = _start(client, url, viewer["token"])
    assert not "/graphql".startswith(_cookie(response)[COOKIE]["path"])
    sent_anyway = client.http.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"cookie": f"{COOKIE}={cookie}"},
    )
    assert sent_anyway.status_code == 401


def test_an_open_range_is_served_a_piece_at_a_time_so_lost_access_stops_an_open_stream(
    env, viewer, grants
):
    """A browser's first request is ``Range: bytes=0-``: answered whole, it would be one
    response streaming the file, checked once, so a consent revoked meanwhile would not stop it.
    Each answer is cut to GATEWAY_PLAYBACK_RANGE_MAX_BYTES; the player asks again for the rest,
    and that request is checked again."""
    from gateway import create_app
    from tests.support.server import GraphQLClient, serving

    subject, partner = new_partner(env, "pieces")
    consent = grants.consent(viewer["patient"], partner, [scopes.RECORDING])
    token = partner_token(env, subject, [scopes.RECORDING])
    media = _media(env, viewer["recording"])
    assert len(media) > 3 * 1024
    with serving(create_app(env.settings(playback_range_max_bytes=1024))) as server:
        client = GraphQLClient(server.url)
        url, cookie = _play(client, env, token, viewer["global_id"])
        first = _get(client, url, cookie, range="bytes=0-")
        assert first.status_code == 206
        assert first.headers["content-range"] == f"bytes 0-1023/{len(media)}"
        assert first.content == media[:1024]
        longer = _get(client, url, cookie, range=f"bytes=1024-{len(media) - 1}")
        assert longer.headers["content-range"] == f"bytes 1024-2047/{len(media)}"
        assert longer.content == media[1024:2048]
        short = _get(client, url, cookie, range="bytes=2048-2099")
        assert (short.status_code, short.content) == (206, media[2048:2100])
        grants.revoke(consent)
        _refused(_get(client, url, cookie, range="bytes=2100-"))
    assert len(_media_events(env, subject, viewer["recording"])) == 1


@pytest.mark.parametrize("client_id", [None, "pharmacy-app"])
def test_a_cookie_carries_exactly_the_session_it_was_minted_for(client_id):
    sessions = PlaybackSessions((("k1", b"s" * 48),), clock=lambda: 1_000)
    session = PlaybackSession(
        playback="viewing-1",
        recording=uuid.uuid4(),
        issuer="https://id.example",
        subject="partner-0001",
        scopes=("patient/Recording.rs",),
        client_id=client_id,
        expires=1_300,
    )
    assert sessions.verify(sessions.mint(session), session.recording) == session


def test_a_cookie_is_good_through_its_expiry_second_and_refused_one_second_later():
    now = [1_300.0]
    sessions = PlaybackSessions((("k1", b"s" * 48),), clock=lambda: now[0])
    recording = uuid.uuid4()
    cookie = sessions.mint(
        PlaybackSession("viewing-1", recording, "iss", "sub", (), None, expires=1_300)
    )
    assert sessions.verify(cookie, recording) is not None
    now[0] = 1_301.0
    assert sessions.verify(cookie, recording) is None


def test_a_cookie_is_its_claims_and_a_domain_separated_mac_both_unpadded_base64url():
    """Written out from the design (docs/MEDIA_AND_AUDIT.md), not from the code: the claims as
    JSON, then HMAC-SHA-256 over "playback-session\\n" and them, so that no URL signature (over
    other bytes) ever passes for a cookie."""
    import base64
    import hashlib
    import hmac

    import orjson

    secret = b"s" * 48
    recording = uuid.UUID(int=5)
    cookie = PlaybackSessions((("k1", secret),), clock=lambda: 0).mint(
        PlaybackSession("v1", recording, "iss", "sub", ("a", "b"), "app", expires=99)
    )
    encoded, mac = cookie.split(".")
    claims = {
        "p": "v1",
        "r": str(recording),
        "i": "iss",
        "s": "sub",
        "c": ["a", "b"],
        "a": "app",
        "x": 99,
        "k": "k1",
    }
    payload = orjson.dumps(claims)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    assert encoded == b64(payload)
    assert mac == b64(hmac.digest(secret, b"playback-session\n" + payload, hashlib.sha256))
    assert "=" not in cookie
