"""Playback (``GET /media/recordings/{id}?exp&kid&sig``) by every kind of viewer who may see a
recording, the loss of that right, and the binding of a URL to the viewer it was issued to.

test_media.py tries URLs presented by callers who cannot see the recording at all; here both
callers may see it, so only the URL's binding to its viewer can refuse the swap. Every playback
and every refusal is checked in the audit trail, read as superuser by the request's id.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

import pytest

from gateway.audit.events import expand_objects
from gateway.policy import scopes
from tests.support.actors import Grants, gid, new_clinician, new_partner, partner_token
from tests.support.database import as_admin

PLAY = "query($id: ID!) { recording(id: $id) { id playbackUrl } }"


async def _pick(connection, seeded: list):
    """A seeded patient T (whose media files exist) without consents, and a recording R of a
    consultation of T conducted by C."""
    return await connection.fetchrow(
        "select r.id as recording, r.patient_id, c.clinician_id, r.storage_key, "
        "pa.subject as patient_subject, ca.subject as clinician_subject "
        "from data.recordings r join data.consultations c on c.id = r.consultation_id "
        "join data.accounts pa on pa.patient_id = r.patient_id "
        "join data.accounts ca on ca.clinician_id = c.clinician_id "
        "where r.patient_id = any($1::uuid[]) and not exists "
        "(select 1 from data.consents k where k.patient_id = r.patient_id) "
        "order by pa.subject desc, r.id limit 1",
        seeded,
    )


@pytest.fixture(scope="module")
def world(env):
    row = as_admin(env, lambda c: _pick(c, [p for _, p in env.patients()]))
    grants = Grants(env)
    partner, partner_pk = new_partner(env, "media")
    grants.consent(row["patient_id"], partner_pk, [scopes.RECORDING])
    world = {
        "grants": grants,
        "patient": row["patient_id"],
        "recording": row["recording"],
        "recording_id": gid("Recording", row["recording"]),
        "media": (env.media_root / row["storage_key"]).read_bytes(),
        "subjects": {
            "partner": partner,
            "clinician": row["clinician_subject"],
        },
        "tokens": {
            "patient": env.token(row["patient_subject"]),
            "clinician": env.token(row["clinician_subject"]),
            "partner": partner_token(env, partner, [scopes.RECORDING]),
        },
    }
    yield world
    grants.close()


def _url(client, token: str, recording_id: str) -> str:
    body = client.execute(PLAY, token, {"id": recording_id})
    assert body["data"]["recording"]["id"] == recording_id, body
    parts = urlsplit(body["data"]["recording"]["playbackUrl"])
    assert parts.path == f"/media/recordings/{recording_id}"
    return f"{parts.path}?{parts.query}"


def _play(client, url: str, token: str):
    """(response, request id) of one playback request."""
    request_id = f"media-{uuid.uuid4().hex}"
    response = client.http.get(
        url, headers={"authorization": f"Bearer {token}", "x-request-id": request_id}
    )
    return response, request_id


def _events(env, request_id: str) -> list[dict]:
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select kind, subject, role, patient_id, break_glass_reason, "
            "data.event_objects(access_events)::text as objects "
            "from data.access_events where request_id = $1 order by seq",
            request_id,
        ),
    )
    return [{**dict(row), "objects": expand_objects(json.loads(row["objects"]))} for row in rows]


def _played(env, world, response, request_id: str, subject: str, role: str, reason=None):
    """The whole file was sent, and exactly one media event records it for this viewer."""
    assert response.status_code == 200
    assert response.content == world["media"]
    assert _events(env, request_id) == [
        {
            "kind": "media",
            "subject": subject,
            "role": role,
            "patient_id": world["patient"],
            "break_glass_reason": reason,
            "objects": [{"id": str(world["recording"]), "type": "Recording", "fields": ["media"]}],
        }
    ]


def _refused(env, response, request_id: str) -> None:
    """An empty 403, and nothing disclosed: no media event for the request."""
    assert (response.status_code, response.content) == (403, b"")
    assert [e for e in _events(env, request_id) if e["kind"] == "media"] == []


def test_a_partner_with_the_recording_scope_in_token_and_consent_plays_the_recording(
    env, client, world
):
    token = world["tokens"]["partner"]
    response, request_id = _play(client, _url(client, token, world["recording_id"]), token)
    _played(env, world, response, request_id, world["subjects"]["partner"], "partner")


def test_the_conducting_clinician_plays_the_recording(env, client, world):
    token = world["tokens"]["clinician"]
    response, request_id = _play(client, _url(client, token, world["recording_id"]), token)
    _played(env, world, response, request_id, world["subjects"]["clinician"], "clinician")


def test_a_partners_url_is_refused_once_the_patient_revokes_the_consent(env, client, world):
    subject, partner = new_partner(env, "media")
    consent = world["grants"].consent(world["patient"], partner, [scopes.RECORDING])
    token = partner_token(env, subject, [scopes.RECORDING])
    url = _url(client, token, world["recording_id"])
    response, request_id = _play(client, url, token)
    _played(env, world, response, request_id, subject, "partner")
    revoked = client.execute(
        "mutation($id: ID!) { revokeConsent(id: $id) { active } }",
        world["tokens"]["patient"],
        {"id": gid("Consent", consent)},
    )
    assert revoked == {"data": {"revokeConsent": {"active": False}}}
    response, request_id = _play(client, url, token)
    _refused(env, response, request_id)


def test_a_break_glass_playback_is_audited_with_the_grants_reason(env, client, world):
    subject, clinician = new_clinician(env, "media")
    reason = f"Cardiac arrest in the waiting room, case {uuid.uuid4().hex[:8]}"
    world["grants"].open_break_glass(clinician, world["patient"], reason)
    token = env.token(subject)
    response, request_id = _play(client, _url(client, token, world["recording_id"]), token)
    _played(env, world, response, request_id, subject, "clinician", reason)


def test_a_break_glass_url_is_refused_once_the_grant_expires(env, client, world):
    subject, clinician = new_clinician(env, "media")
    grant = world["grants"].open_break_glass(clinician, world["patient"])
    token = env.token(subject)
    url = _url(client, token, world["recording_id"])
    assert _play(client, url, token)[0].status_code == 200
    world["grants"].expire_break_glass(grant)
    response, request_id = _play(client, url, token)
    _refused(env, response, request_id)


@pytest.mark.parametrize(
    ("issued_to", "presented_by"),
    [
        ("patient", "clinician"),
        ("clinician", "patient"),
        ("patient", "partner"),
        ("partner", "clinician"),
    ],
)
def test_a_url_issued_to_one_viewer_is_refused_for_another_who_may_see_the_recording(
    env, client, world, issued_to, presented_by
):
    recording_id = world["recording_id"]
    url = _url(client, world["tokens"][issued_to], recording_id)
    # Both may play the recording with a URL of their own...
    own = _url(client, world["tokens"][presented_by], recording_id)
    assert _play(client, own, world["tokens"][presented_by])[0].status_code == 200
    assert _play(client, url, world["tokens"][issued_to])[0].status_code == 200
    # ...but not with the other's.
    response, request_id = _play(client, url, world["tokens"][presented_by])
    _refused(env, response, request_id)
