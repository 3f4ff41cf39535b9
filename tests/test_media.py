"""Playback: signed, short-lived URLs bound to the viewer; Range streaming; every refusal the
same empty 403."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import asyncpg
import boto3
import pytest
from botocore.config import Config

from gateway import create_app
from gateway.authz.playback import PlaybackSigner
from gateway.ids import encode_global_id
from gateway.web.media_store import S3MediaStore
from tests.support.server import GraphQLClient, serving

PLAY = "query($id: ID!) { recording(id: $id) { playbackUrl contentType byteSize } }"


def _playback(client, viewer) -> tuple[str, dict]:
    body = client.execute(PLAY, viewer["token"], {"id": viewer["global_id"]})
    recording = body["data"]["recording"]
    parts = urlsplit(recording["playbackUrl"])
    return f"{parts.path}?{parts.query}", recording


def _get(client, url, token, **headers):
    if token:
        headers["authorization"] = f"Bearer {token}"
    return client.http.get(url, headers=headers)


def _file_bytes(env, recording: uuid.UUID) -> bytes:
    return next(env.media_root.rglob(f"{recording}.*")).read_bytes()


def test_the_viewer_plays_their_recording_with_its_url(env, client, viewer):
    url, recording = _playback(client, viewer)
    response = _get(client, url, viewer["token"])
    assert response.status_code == 200
    assert response.headers["content-type"] == recording["contentType"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.content == _file_bytes(env, viewer["recording"])
    assert len(response.content) == recording["byteSize"]


def test_the_url_expires_after_the_default_five_minutes(env, client, viewer):
    url, _ = _playback(client, viewer)
    expires = int(parse_qs(urlsplit(url).query)["exp"][0])
    assert 295 <= expires - time.time() <= 300


def test_a_url_copied_to_another_user_is_refused(env, client, viewer):
    url, _ = _playback(client, viewer)
    other = env.token(env.patients()[1][0])
    response = _get(client, url, other)
    assert (response.status_code, response.content) == (403, b"")


def test_a_url_without_the_viewers_token_or_cookie_is_refused_with_an_empty_403(client, viewer):
    url, _ = _playback(client, viewer)
    response = _get(client, url, None)
    assert (response.status_code, response.content) == (403, b"")
    assert "www-authenticate" not in response.headers


def test_an_expired_url_is_refused(env, client, viewer):
    signer = PlaybackSigner(env.settings().signing_keys(), 300)
    stale = signer.url(
        viewer["recording"],
        viewer["global_id"],
        env.identity.issuer,
        viewer["subject"],
        now=time.time() - 301,
    )
    response = _get(client, stale, viewer["token"])
    assert (response.status_code, response.content) == (403, b"")


def _flip(text: str, index: int) -> str:
    char = text[index]
    return text[:index] + ("A" if char != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("part", ["sig", "exp", "kid", "path"])
def test_one_changed_character_anywhere_is_refused(client, viewer, part):
    url, _ = _playback(client, viewer)
    path, _, query = url.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    if part == "path":
        path = _flip(path, len("/media/recordings/") + 8)
    elif part == "exp":
        params["exp"] = str(int(params["exp"]) + 1)
    else:
        params[part] = _flip(params[part], len(params[part]) // 2)
    tampered = path + "?" + "&".join(f"{k}={v}" for k, v in params.items())
    response = _get(client, tampered, viewer["token"])
    assert (response.status_code, response.content) == (403, b"")


@pytest.mark.parametrize("missing", ["sig", "exp", "kid"])
def test_a_url_missing_a_parameter_is_refused(client, viewer, missing):
    url, _ = _playback(client, viewer)
    path, _, query = url.partition("?")
    kept = "&".join(p for p in query.split("&") if not p.startswith(f"{missing}="))
    response = _get(client, f"{path}?{kept}", viewer["token"])
    assert (response.status_code, response.content) == (403, b"")


def test_a_validly_signed_url_for_someone_elses_recording_is_still_refused(env, client, viewer):
    # Even a signature made with the server's own key cannot reach a recording the viewer may
    # not see: the endpoint loads it through the same scoped loader, RLS and exit check.
    _, victim = env.patients()[1]
    foreign = sorted(env.truth.recordings_of_patient[victim])[0]
    signer = PlaybackSigner(env.settings().signing_keys(), 300)
    url = signer.url(
        foreign, encode_global_id("Recording", foreign), env.identity.issuer, viewer["subject"]
    )
    response = _get(client, url, viewer["token"])
    assert (response.status_code, response.content) == (403, b"")


def test_rotated_keys_verify_and_retired_keys_do_not(env, viewer):
    current = env.settings().signing_keys()[0]
    new = ("k2", b"n" * 40)
    rotated = env.settings(media_signing_keys=f"k2:{'n' * 40},{current[0]}:{current[1].decode()}")
    old_signer = PlaybackSigner((current,), 300)
    retired_signer = PlaybackSigner((("k0", b"o" * 40),), 300)
    with serving(create_app(rotated)) as server:
        client = GraphQLClient(server.url)
        fresh, _ = _playback(client, viewer)
        assert parse_qs(urlsplit(fresh).query)["kid"] == [new[0]]
        for signer, status in ((old_signer, 200), (retired_signer, 403)):
            url = signer.url(
                viewer["recording"], viewer["global_id"], env.identity.issuer, viewer["subject"]
            )
            assert _get(client, url, viewer["token"]).status_code == status
        assert _get(client, fresh, viewer["token"]).status_code == 200


@pytest.mark.parametrize(
    ("header", "status", "expect"),
    [
        ("bytes=0-99", 206, lambda data: data[:100]),
        ("bytes=100-", 206, lambda data: data[100:]),
        ("bytes=-64", 206, lambda data: data[-64:]),
        ("bytes=0-0", 206, lambda data: data[:1]),
    ],
)
def test_single_ranges_are_served_as_206(env, client, viewer, header, status, expect):
    url, _ = _playback(client, viewer)
    data = _file_bytes(env, viewer["recording"])
    response = _get(client, url, viewer["token"], range=header)
    assert response.status_code == status
    assert response.content == expect(data)
    start = data.index(response.content) if header != "bytes=-64" else len(data) - 64
    assert response.headers["content-range"] == (
        f"bytes {start}-{start + len(response.content) - 1}/{len(data)}"
    )


def test_a_range_past_the_end_is_416_with_the_size(env, client, viewer):
    url, _ = _playback(client, viewer)
    size = len(_file_bytes(env, viewer["recording"]))
    response = _get(client, url, viewer["token"], range=f"bytes={size}-")
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_several_ranges_are_a_multipart_206(env, client, viewer):
    url, _ = _playback(client, viewer)
    data = _file_bytes(env, viewer["recording"])
    response = _get(client, url, viewer["token"], range="bytes=0-9,20-29")
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert data[:10] in response.content and data[20:30] in response.content


@pytest.mark.parametrize("header", ["items=0-10", "bytes=abc"])
def test_malformed_ranges_are_refused(client, viewer, header):
    url, _ = _playback(client, viewer)
    response = _get(client, url, viewer["token"], range=header)
    assert response.status_code == 400


def test_more_than_sixteen_ranges_are_ignored_and_the_whole_file_sent(env, client, viewer):
    # RFC 9110 lets a server ignore Range; we do past 16 ranges, so a request for hundreds of
    # tiny ranges cannot multiply headers and boundaries.
    url, _ = _playback(client, viewer)
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 34, 2))
    response = _get(client, url, viewer["token"], range=header)
    assert response.status_code == 200
    assert response.content == _file_bytes(env, viewer["recording"])


def test_playbacks_are_audited_as_media_events(env, client, viewer):
    url, _ = _playback(client, viewer)
    assert _get(client, url, viewer["token"], range="bytes=0-9").status_code == 206

    async def read():
        connection = await asyncpg.connect(env.admin_url)
        try:
            return await connection.fetchrow(
                "select kind, patient_id, data.event_objects(access_events)::text as objects, "
                "detail::text from data.access_events "
                "where subject = $1 and kind = 'media' order by seq desc limit 1",
                viewer["subject"],
            )
        finally:
            await connection.close()

    row = asyncio.run(read())
    assert row["patient_id"] == viewer["patient"]
    assert row["objects"] == (
        f'[{{"ids": ["{viewer["recording"]}"], "type": "Recording", "fields": ["media"]}}]'
    )
    assert row["detail"] == '{"range": "bytes=0-9"}'


def _rss_bytes() -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024


def test_a_one_gigabyte_recording_streams_with_flat_memory(env, client, viewer):
    size = 1024**3
    recording = uuid.uuid4()
    key = f"recordings/{viewer['patient']}/{recording}.webm"
    path = env.media_root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as sparse:
        sparse.truncate(size)

    async def insert():
        connection = await asyncpg.connect(env.admin_url)
        try:
            consultation = sorted(env.truth.consultations_of_patient[viewer["patient"]])[0]
            await connection.execute(
                "insert into data.recordings values ($1, $2, $3, 90, 'VIDEO', now(), 3600,"
                " 'video/webm', $4, $5)",
                recording,
                consultation,
                viewer["patient"],
                size,
                key,
            )
        finally:
            await connection.close()

    async def delete():
        connection = await asyncpg.connect(env.admin_url)
        try:
            await connection.execute("delete from data.recordings where id = $1", recording)
        finally:
            await connection.close()

    asyncio.run(insert())
    try:
        url, _ = _playback(
            client, {**viewer, "global_id": encode_global_id("Recording", recording)}
        )
        baseline, peak, received = _rss_bytes(), 0, 0
        with client.http.stream(
            "GET", url, headers={"authorization": f"Bearer {viewer['token']}"}
        ) as response:
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == size
            for chunk in response.iter_raw(1 << 20):
                received += len(chunk)
                peak = max(peak, _rss_bytes())
        assert received == size
        assert peak - baseline < 64 * 1024 * 1024
    finally:
        path.unlink()
        asyncio.run(delete())


def test_the_s3_store_redirects_to_a_presigned_url_only_after_the_checks(env, viewer):
    # Presigning is computed locally: no object store is contacted by this test.
    s3 = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="AKIATEST",
        aws_secret_access_key="secret-for-presigning-only",
        endpoint_url="https://objects.example.internal",
        config=Config(signature_version="s3v4"),
    )
    store = S3MediaStore("recordings", presign_seconds=60, client=s3)
    with serving(create_app(env.settings(), store=store)) as server:
        client = GraphQLClient(server.url)
        url, _ = _playback(client, viewer)
        response = client.http.get(url, headers={"authorization": f"Bearer {viewer['token']}"})
        other = client.http.get(
            url, headers={"authorization": f"Bearer {env.token(env.patients()[1][0])}"}
        )
    assert response.status_code == 307
    location = urlsplit(response.headers["location"])
    assert location.netloc == "objects.example.internal"
    assert location.path.startswith("/recordings/recordings/")
    query = parse_qs(location.query)
    assert query["X-Amz-Expires"] == ["60"]
    assert "X-Amz-Signature" in query
    assert response.headers["cache-control"] == "no-store"
    assert (other.status_code, other.content) == (403, b"")


# --- the signer's edges: expiry second, the clock, key ids, base URLs, signatures not text -------

KEY = ("k1", b"s" * 40)
RECORDING = UUID(int=42)


def _parts(url: str) -> tuple[int, str, str]:
    query = parse_qs(urlsplit(url).query)
    return int(query["exp"][0]), query["kid"][0], query["sig"][0]


def test_a_url_is_good_through_its_expiry_second_and_refused_one_second_later():
    signer = PlaybackSigner((KEY,), 300)
    expires, kid, sig = _parts(signer.url(RECORDING, "r", "iss", "sub", now=1_000_000))
    assert expires == 1_000_300
    assert signer.verify(RECORDING, "iss", "sub", expires, kid, sig, now=expires) is True
    assert signer.verify(RECORDING, "iss", "sub", expires, kid, sig, now=expires + 1) is False


def test_without_a_given_time_the_signer_reads_the_clock_and_with_one_it_does_not():
    signer = PlaybackSigner((KEY,), 300)
    fresh = _parts(signer.url(RECORDING, "r", "iss", "sub"))
    assert abs(fresh[0] - (time.time() + 300)) < 5
    assert signer.verify(RECORDING, "iss", "sub", *fresh) is True
    stale = _parts(signer.url(RECORDING, "r", "iss", "sub", now=time.time() - 1000))
    assert signer.verify(RECORDING, "iss", "sub", *stale) is False
    # A time given is the time used, even one long past.
    assert signer.verify(RECORDING, "iss", "sub", *stale, now=stale[0] - 10) is True


def test_a_signer_without_keys_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"^at least one media signing key is required$"):
        PlaybackSigner((), 300)


def test_a_public_base_url_with_a_trailing_slash_gives_one_slash_before_the_path():
    signer = PlaybackSigner((KEY,), 300, "https://gateway.example/")
    url = signer.url(RECORDING, "abc", "iss", "sub", now=0)
    assert url.startswith("https://gateway.example/media/recordings/abc?exp=300&kid=k1&sig=")
    under = PlaybackSigner((KEY,), 300, "https://gateway.example/appX/")
    assert under.url(RECORDING, "abc", "iss", "sub", now=0).startswith(
        "https://gateway.example/appX/media/recordings/abc?"
    )


def test_a_signature_that_cannot_be_encoded_is_refused_not_an_error():
    signer = PlaybackSigner((KEY,), 300)
    assert signer.verify(RECORDING, "iss", "sub", 2**40, "k1", "\udc80", now=0) is False


def test_a_key_id_with_a_slash_is_escaped_in_the_url_and_plays_over_http(env):
    subject, patient = env.patients()[1]
    recording = sorted(env.truth.recordings_of_patient[patient])[0]
    settings = env.settings(media_signing_keys=f"2026/11:{'z' * 40}")
    token = env.token(subject)
    with serving(create_app(settings)) as server:
        client = GraphQLClient(server.url)
        body = client.execute(
            "query($id: ID!) { recording(id: $id) { playbackUrl } }",
            token,
            {"id": encode_global_id("Recording", recording)},
        )
        url = urlsplit(body["data"]["recording"]["playbackUrl"])
        assert "&kid=2026%2F11&" in url.query
        response = client.http.get(
            f"{url.path}?{url.query}", headers={"authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200


def test_a_signature_is_unpadded_base64url_of_a_sha256_mac():
    signer = PlaybackSigner((KEY,), 300)
    for n in range(300):
        _, _, sig = _parts(signer.url(UUID(int=n), "r", "iss", "sub", now=0))
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sig), sig
