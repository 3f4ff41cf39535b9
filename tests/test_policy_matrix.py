"""The generated matrix: every governed type x field (from the policy table) x role x ownership
case, over real HTTP, each asserting the exact outcome given by tests/support/policy_spec.py.

Ownership cases, for a target patient T and a consultation X of T conducted by clinician C1:
own (T herself; C1; a partner: as `other`), other (another patient; a clinician who never saw T;
a partner without consent), consented (a partner T consented to, with every scope), revoked (a
partner whose consent T revoked), break-glass (a clinician with an active grant on T),
expired-break-glass (a clinician whose grant on T expired). Support and auditors see the same in
every case.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from gateway.audit.events import expand_objects
from gateway.authz.playback import PlaybackSigner
from gateway.ids import decode_global_id, decode_sequence_cursor, encode_global_id
from gateway.policy.table import POLICY
from tests.support import policy_spec
from tests.support.actors import new_clinician
from tests.support.archives import DELETED, record_deleted
from tests.support.policy_spec import CASES, ROLES, expected

ALL_SCOPES = "patient/Consultation.rs patient/Recording.rs patient/Patient.rs"
REDIRECT = "https://partner.example/consent-callback"
OBJECT_FIELDS = {
    "clinician",
    "patient",
    "recordings",
    "consultation",
    "consultations",
    "objects",
    "partner",
}
CASES_BY_ROLE = {
    "patient": {"own": "T", "other": "U"},
    "clinician": {
        "own": "C1",
        "other": "C_other",
        "consented": "C_other",
        "revoked": "C_other",
        "break-glass": "C_bg",
        "expired-break-glass": "C_exp",
    },
    "support": {},
    "partner": {"consented": "P1", "revoked": "P2"},
    "auditor": {},
}
DEFAULT_CALLER = {
    "patient": "U",
    "clinician": "C_other",
    "support": "S",
    "partner": "P3",
    "auditor": "A",
}

MATRIX = [
    (entry.type_name, field, role, case)
    for entry in POLICY
    for field in sorted(set().union(*(g.fields for g in entry.grants.values())))
    for role in ROLES
    for case in CASES
]


def _selection(type_name: str) -> str:
    entry = next(e for e in POLICY if e.type_name == type_name)
    fields = sorted(set().union(*(g.fields for g in entry.grants.values())))
    return " ".join(f"{f} {{ __typename id }}" if f in OBJECT_FIELDS else f for f in fields)


async def _setup(env) -> dict[str, Any]:
    connection = await asyncpg.connect(env.admin_url)
    issuer = env.identity.issuer
    try:
        x = await connection.fetchrow(
            "select c.id, c.patient_id, c.clinician_id from data.consultations c "
            "where c.status = 'COMPLETED' and exists (select 1 from data.recordings r "
            "where r.consultation_id = c.id) order by c.id limit 1"
        )
        recording = await connection.fetchval(
            "select id from data.recordings where consultation_id = $1 order by segment_index "
            "limit 1",
            x["id"],
        )
        target = x["patient_id"]
        other_patient = await connection.fetchval(
            "select a.patient_id from data.accounts a where a.role = 'patient' "
            "and a.patient_id <> $1 and not exists (select 1 from data.consents k "
            "where k.patient_id = a.patient_id) order by a.subject limit 1",
            target,
        )
        people: dict[str, str] = {}
        for name in ("C_other", "C_bg", "C_exp"):
            pk = uuid.uuid4()
            await connection.execute(
                "insert into data.clinicians values ($1, $2, 'GP')", pk, f"Dr {name}"
            )
            subject = f"matrix-{name}-{pk}"
            await connection.execute(
                "insert into data.accounts (issuer, subject, role, clinician_id) "
                "values ($1, $2, 'clinician', $3)",
                issuer,
                subject,
                pk,
            )
            people[name] = subject
            people[f"{name}:id"] = str(pk)
        partners = {}
        for name in ("P1", "P2", "P3"):
            pk = uuid.uuid4()
            partners[name] = pk
            await connection.execute(
                "insert into data.partners values ($1, $2)", pk, f"Partner {name}"
            )
            subject = f"matrix-{name}-{pk}"
            await connection.execute(
                "insert into data.accounts (issuer, subject, role, partner_id) "
                "values ($1, $2, 'partner', $3)",
                issuer,
                subject,
                pk,
            )
            people[name] = subject
        scopes = ALL_SCOPES.split()
        expires = datetime.now(UTC) + timedelta(days=30)
        for name in ("P1", "P2"):
            await connection.execute(
                "insert into data.consents (id, patient_id, partner_id, scopes, expires_at) "
                "values ($1, $2, $3, $4, $5)",
                uuid.uuid4(),
                target,
                partners[name],
                scopes,
                expires,
            )
        await connection.execute(
            "update data.consents set revoked_at = now() where partner_id = $1", partners["P2"]
        )
        # P1 is registered for the consent page; T has a request of P1 waiting for her answer.
        await connection.execute(
            "update data.partners set allowed_scopes = $2, redirect_uris = $3 where id = $1",
            partners["P1"],
            scopes,
            [REDIRECT],
        )
        waiting = uuid.uuid4()
        await connection.execute(
            "insert into data.consent_requests (id, patient_id, partner_id, scopes, "
            "redirect_uri, state, consent_expires_at, valid_until) "
            "values ($1, $2, $3, $4, $5, 'matrix', $6, now() + interval '15 minutes')",
            waiting,
            target,
            partners["P1"],
            scopes,
            REDIRECT,
            expires,
        )
        for name in ("C_bg", "C_exp"):
            await connection.execute(
                "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, "
                "expires_at) values ($1, $2, $3, 'Unconscious patient in the emergency room', "
                "now() + interval '1 hour')",
                uuid.uuid4(),
                uuid.UUID(people[f"{name}:id"]),
                target,
            )
        await connection.execute(
            "update data.break_glass_grants set opened_at = now() - interval '3 hours', "
            "expires_at = now() - interval '1 hour' where clinician_id = $1",
            uuid.UUID(people["C_exp:id"]),
        )
        subjects = dict(
            await connection.fetch(
                "select coalesce(patient_id::text, clinician_id::text), subject from data.accounts "
                "where patient_id = any($1::uuid[]) or clinician_id = $2",
                [target, other_patient],
                x["clinician_id"],
            )
        )
    finally:
        await connection.close()
    people.update(
        {
            "T": subjects[str(target)],
            "U": subjects[str(other_patient)],
            "C1": subjects[str(x["clinician_id"])],
            "S": "support-0001",
            "A": "auditor-0001",
        }
    )
    return {
        "people": people,
        "target": target,
        "partner": encode_global_id("Partner", partners["P1"]),
        "waiting_request": encode_global_id("ConsentRequest", waiting),
        "ids": {
            "Consultation": encode_global_id("Consultation", x["id"]),
            "Recording": encode_global_id("Recording", recording),
            "Patient": encode_global_id("Patient", target),
            "Clinician": encode_global_id("Clinician", x["clinician_id"]),
            "Partner": encode_global_id("Partner", partners["P1"]),
        },
    }


@pytest.fixture(scope="module")
def world(env, client):
    world = asyncio.run(_setup(env))
    # A month of the trail archived and since deleted: what ArchivedPeriod's cases read.
    record_deleted(env, DELETED)
    # T reads her record once, so that she (and auditors) have access events about her.
    client.execute(
        "{ consultations { edges { node { id reason } } } }", env.token(world["people"]["T"])
    )
    world["cache"] = {}
    world["truth"] = {}
    world["seq"] = {}
    return world


def _token(env, world, role: str, case: str) -> str:
    name = CASES_BY_ROLE[role].get(case, DEFAULT_CALLER[role])
    subject = world["people"][name]
    if role == "partner":
        return env.token(subject, scope=ALL_SCOPES, azp=subject)
    return env.token(subject)


def _errors_at(body: dict, prefix: list) -> dict[str, str]:
    found = {}
    for error in body.get("errors", []):
        path = error.get("path") or []
        if path[: len(prefix)] == prefix and len(path) == len(prefix) + 1:
            found[path[-1]] = error["extensions"]["code"]
    return found


def _observe(env, client, world, type_name: str, role: str, case: str):
    """(the object or None, {field: error code}, the whole body) for one caller and type."""
    key = (type_name, role, case)
    if key in world["cache"]:
        return world["cache"][key]
    selection = _selection(type_name)
    token = _token(env, world, role, case)
    target = encode_global_id("Patient", world["target"])
    if type_name in world["ids"]:
        body = client.execute(
            f"query($id: ID!) {{ node(id: $id) {{ ... on {type_name} {{ {selection} }} }} }}",
            token,
            {"id": world["ids"][type_name]},
        )
        result = (body["data"]["node"], _errors_at(body, ["node"]), body)
    elif type_name == "Viewer":
        body = client.execute(f"{{ me {{ {selection} }} }}", token)
        result = (body["data"]["me"], _errors_at(body, ["me"]), body)
    elif type_name in ("AccessEvent", "AccessedObject"):
        inner = selection if type_name == "AccessEvent" else f"objects {{ {selection} }}"
        body = client.execute(
            "{ probe: accessLog(first: 100) { edges { cursor node { patientId objects { id } } } } "
            f"log: accessLog(first: 100) {{ edges {{ node {{ {inner} }} }} }} }}",
            token,
        )
        probe = body["data"]["probe"]["edges"]
        index = next(
            (
                i
                for i, e in enumerate(probe)
                if e["node"]["patientId"] == target and e["node"]["objects"]
            ),
            None,
        )
        if index is not None:
            world["seq"][key] = decode_sequence_cursor(probe[index]["cursor"])
        if index is None:
            result = (None, {}, body)
        elif type_name == "AccessEvent":
            result = (
                body["data"]["log"]["edges"][index]["node"],
                _errors_at(body, ["log", "edges", index, "node"]),
                body,
            )
        else:
            result = (
                body["data"]["log"]["edges"][index]["node"]["objects"][0],
                _errors_at(body, ["log", "edges", index, "node", "objects", 0]),
                body,
            )
    elif type_name == "ArchivedPeriod":
        body = client.execute(
            f"{{ accessLog(first: 0) {{ archivedPeriods {{ {selection} }} }} }}", token
        )
        periods = body["data"]["accessLog"]["archivedPeriods"]
        index = next(
            (i for i, p in enumerate(periods) if p["from"] == DELETED.start.isoformat()), None
        )
        if index is None:
            result = (None, {}, body)
        else:
            at = ["accessLog", "archivedPeriods", index]
            result = (periods[index], _errors_at(body, at), body)
    elif type_name == "Consent":
        body = client.execute(f"{{ consents {{ {selection} }} }}", token)
        consents = body["data"]["consents"]
        result = (consents[0] if consents else None, _errors_at(body, ["consents", 0]), body)
    elif type_name == "ConsentRequest":
        # T opens a request of her own; anyone else tries to answer (approve) T's waiting one.
        if (role, case) == ("patient", "own"):
            name, variables = "requestConsent", {"p": world["partner"]}
            document = (
                "mutation($p: ID!) { requestConsent(partnerId: $p, scopes: "
                f'["patient/Recording.rs"], redirectUri: "{REDIRECT}", state: "s1") '
                f"{{ {selection} }} }}"
            )
        else:
            name, variables = "answerConsentRequest", {"id": world["waiting_request"]}
            document = (
                f"mutation($id: ID!) {{ answerConsentRequest(id: $id, approve: true) "
                f"{{ {selection} }} }}"
            )
        body = client.post(document, token, variables).json()
        data = body.get("data") or {}
        result = (data.get(name), _errors_at(body, [name]), body)
    elif type_name == "BreakGlassGrant":
        if role == "clinician":
            token = env.token(new_clinician(env, "matrix")[0])
        response = client.post(
            "mutation($p: ID!) { openBreakGlass(patientId: $p, reason: "
            f'"Unconscious patient in the emergency room", minutes: 5) {{ {selection} }} }}',
            token,
            {"p": target},
        )
        body = response.json()
        data = body.get("data") or {}
        result = (data.get("openBreakGlass"), _errors_at(body, ["openBreakGlass"]), body)
    else:
        raise AssertionError(f"no way to observe {type_name}")
    world["cache"][key] = result
    return result


def _ref(type_name: str, pk: Any) -> dict[str, str]:
    """An object field as selected here: its type and global ID."""
    return {"__typename": type_name, "id": encode_global_id(type_name, pk)}


def _at(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def _stored(connection, env, world, type_name: str, role: str, case: str, obj: dict):
    """The observed object as the database holds it, read as superuser, in the schema's shape
    (object fields as {__typename, id}); playbackUrl is checked by its signature instead."""
    caller = world["people"][CASES_BY_ROLE[role].get(case, DEFAULT_CALLER[role])]
    if type_name == "Consultation":
        pk = decode_global_id(world["ids"]["Consultation"])[1]
        row = await connection.fetchrow("select * from data.consultations where id = $1", pk)
        segments = await connection.fetch(
            "select id from data.recordings where consultation_id = $1 order by segment_index", pk
        )
        return {
            "id": encode_global_id("Consultation", pk),
            "scheduledAt": _at(row["scheduled_at"]),
            "status": row["status"],
            "mode": row["mode"],
            "reason": row["reason"],
            "summary": row["summary"],
            "clinicianNotes": row["clinician_notes"],
            "clinician": _ref("Clinician", row["clinician_id"]),
            "patient": _ref("Patient", row["patient_id"]),
            "recordings": [_ref("Recording", r["id"]) for r in segments],
        }
    if type_name == "Recording":
        pk = decode_global_id(world["ids"]["Recording"])[1]
        row = await connection.fetchrow("select * from data.recordings where id = $1", pk)
        return {
            "id": encode_global_id("Recording", pk),
            "consultation": _ref("Consultation", row["consultation_id"]),
            "segmentIndex": row["segment_index"],
            "mode": row["mode"],
            "startedAt": _at(row["started_at"]),
            "durationSeconds": row["duration_seconds"],
            "contentType": row["content_type"],
            "byteSize": row["byte_size"],
            "playbackUrl": ("signed for", pk, caller),
        }
    if type_name == "Patient":
        row = await connection.fetchrow(
            "select * from data.patients where id = $1", world["target"]
        )
        # A clinician without break-glass sees the consultations they conducted; everyone else
        # who sees the patient sees all of them. Newest first.
        conducted_by = (
            await connection.fetchval(
                "select clinician_id from data.accounts where subject = $1", caller
            )
            if (role, case) == ("clinician", "own")
            else None
        )
        consultations = await connection.fetch(
            "select id from data.consultations where patient_id = $1 "
            "and ($2::uuid is null or clinician_id = $2) order by scheduled_at desc, id desc",
            world["target"],
            conducted_by,
        )
        return {
            "id": encode_global_id("Patient", row["id"]),
            "displayName": row["display_name"],
            "birthDate": row["birth_date"].isoformat(),
            "consultations": [_ref("Consultation", c["id"]) for c in consultations],
        }
    if type_name == "Clinician":
        pk = decode_global_id(world["ids"]["Clinician"])[1]
        row = await connection.fetchrow("select * from data.clinicians where id = $1", pk)
        return {
            "id": encode_global_id("Clinician", pk),
            "displayName": row["display_name"],
            "specialty": row["specialty"],
        }
    if type_name == "Partner":
        pk = decode_global_id(world["ids"]["Partner"])[1]
        name = await connection.fetchval("select name from data.partners where id = $1", pk)
        return {"id": encode_global_id("Partner", pk), "name": name}
    if type_name == "Viewer":
        account = await connection.fetchrow(
            "select role, patient_id, clinician_id from data.accounts where subject = $1", caller
        )
        return {
            "subject": caller,
            "role": account["role"].upper(),
            "scopes": sorted(ALL_SCOPES.split()) if role == "partner" else [],
            "patient": _ref("Patient", account["patient_id"]) if account["patient_id"] else None,
            "clinician": (
                _ref("Clinician", account["clinician_id"]) if account["clinician_id"] else None
            ),
        }
    if type_name in ("AccessEvent", "AccessedObject"):
        row = await connection.fetchrow(
            "select e.*, coalesce(c.display_name, p.name) as actor_name, "
            "data.event_objects(e) as all_objects "
            "from data.access_events e "
            "left join data.clinicians c on c.id = e.actor_id and e.role = 'clinician' "
            "left join data.partners p on p.id = e.actor_id and e.role = 'partner' "
            "where e.seq = $1",
            world["seq"][(type_name, role, case)],
        )
        objects = expand_objects(json.loads(row["all_objects"]))
        if type_name == "AccessedObject":
            first = objects[0]
            consultation = None
            if first["type"] == "Consultation":
                consultation = _ref("Consultation", first["id"])
            elif first["type"] == "Recording":
                consultation = _ref(
                    "Consultation",
                    await connection.fetchval(
                        "select consultation_id from data.recordings where id = $1",
                        uuid.UUID(str(first["id"])),
                    ),
                )
            return {
                "type": first["type"],
                "id": encode_global_id(first["type"], first["id"]),
                "fields": first["fields"],
                "consultation": consultation,
            }
        return {
            "occurredAt": _at(row["occurred_at"]),
            "kind": row["kind"].upper().replace("-", "_"),
            "accessorRole": row["role"].upper(),
            "accessorSubject": row["subject"],
            "accessorName": row["actor_name"],
            "breakGlassReason": row["break_glass_reason"],
            "patientId": encode_global_id("Patient", row["patient_id"]),
            "objects": [
                {"__typename": "AccessedObject", "id": encode_global_id(o["type"], o["id"])}
                for o in objects
            ],
        }
    if type_name == "ArchivedPeriod":
        row = await connection.fetchrow(
            "select * from data.audit_archives where partition_name = $1", DELETED.name
        )
        deleted = f"Deleted on {row['deleted_at']:%Y-%m-%d} after the retention period"
        # The file's location only to those who may read it (auditors).
        where = f"{deleted} (it was at {row['location']})." if role == "auditor" else f"{deleted}."
        return {
            "from": _at(row["period_start"]),
            "until": _at(row["period_end"]),
            "archivedAt": _at(row["archived_at"]),
            "deletedAt": _at(row["deleted_at"]),
            "location": row["location"],
            "where": where,
        }
    if type_name == "Consent":
        row = await connection.fetchrow(
            "select k.*, k.revoked_at is null and k.expires_at > now() as active "
            "from data.consents k join data.accounts a on a.patient_id = k.patient_id "
            "where a.subject = $1 order by k.granted_at desc limit 1",
            caller,
        )
        return {
            "id": encode_global_id("Consent", row["id"]),
            "partner": _ref("Partner", row["partner_id"]),
            "scopes": list(row["scopes"]),
            "grantedAt": _at(row["granted_at"]),
            "expiresAt": _at(row["expires_at"]),
            "revokedAt": _at(row["revoked_at"]),
            "active": row["active"],
        }
    if type_name == "ConsentRequest":
        pk = decode_global_id(obj["id"])[1]
        row = await connection.fetchrow("select * from data.consent_requests where id = $1", pk)
        return {
            "id": encode_global_id("ConsentRequest", pk),
            "partner": _ref("Partner", row["partner_id"]),
            "scopes": list(row["scopes"]),
            "consentExpiresAt": _at(row["consent_expires_at"]),
            "validUntil": _at(row["valid_until"]),
            "answeredAt": _at(row["answered_at"]),
            "approved": row["approved"],
            "redirectTo": None,
        }
    if type_name == "BreakGlassGrant":
        pk = decode_global_id(obj["id"])[1]
        row = await connection.fetchrow("select * from data.break_glass_grants where id = $1", pk)
        return {
            "id": encode_global_id("BreakGlassGrant", pk),
            "patient": _ref("Patient", row["patient_id"]),
            "reason": row["reason"],
            "openedAt": _at(row["opened_at"]),
            "expiresAt": _at(row["expires_at"]),
        }
    raise AssertionError(f"no stored form of {type_name}")


def _assert_stored_value(env, world, type_name, field, role, case, obj) -> None:
    """The field's value is the row's, read as superuser (not merely not denied)."""
    key = (type_name, role, case)
    if key not in world["truth"]:

        async def read():
            connection = await asyncpg.connect(env.admin_url)
            try:
                return await _stored(connection, env, world, type_name, role, case, obj)
            finally:
                await connection.close()

        world["truth"][key] = asyncio.run(read())
    stored = world["truth"][key][field]
    if isinstance(stored, tuple):  # a playback URL: signed for this recording and this caller
        _, recording, subject = stored
        query = parse_qs(urlsplit(obj[field]).query)
        signer = PlaybackSigner(env.settings().signing_keys(), 300)
        assert urlsplit(obj[field]).path == f"/media/recordings/{world['ids']['Recording']}"
        assert signer.verify(
            recording,
            env.identity.issuer,
            subject,
            int(query["exp"][0]),
            query["kid"][0],
            query["sig"][0],
        )
    else:
        assert obj[field] == stored, (type_name, field, role, case)


def test_every_policy_field_has_an_expectation():
    for entry in POLICY:
        fields = set().union(*(g.fields for g in entry.grants.values()))
        assert fields == set(policy_spec.FIELDS[entry.type_name]), entry.type_name


@pytest.mark.parametrize(
    ("type_name", "field", "role", "case"), MATRIX, ids=["-".join(item) for item in MATRIX]
)
def test_matrix(env, client, world, type_name, field, role, case):
    obj, errors, body = _observe(env, client, world, type_name, role, case)
    outcome = expected(type_name, field, role, case)
    if outcome == "invisible":
        assert obj is None, body
        if type_name == "BreakGlassGrant":
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
            assert body["errors"][0]["path"] == ["openBreakGlass"]
        elif type_name == "ConsentRequest":
            # Another patient's request is no request; another role may not answer one.
            code, message = (
                ("BAD_USER_INPUT", "No such consent request")
                if role == "patient"
                else ("FORBIDDEN", "Only a patient may do this")
            )
            assert body["errors"][0]["extensions"]["code"] == code, body
            assert body["errors"][0]["message"] == message, body
            assert body["errors"][0]["path"] == ["answerConsentRequest"]
        else:
            assert "errors" not in body, body
    elif outcome == "value":
        assert obj is not None, body
        assert field not in errors, body
        _assert_stored_value(env, world, type_name, field, role, case, obj)
    else:
        assert obj is not None, body
        assert obj[field] is None
        assert errors.get(field) == "FORBIDDEN", body
