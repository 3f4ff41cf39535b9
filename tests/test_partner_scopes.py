"""A partner's reach under every combination of SMART scopes in its token and in the patient's
consent, over every governed type a partner can reach (Consultation, Recording, Patient).

For each of the 8 token scope sets x 7 consent scope sets, one request asks for every field the
policy table grants partners on those types, through every root (the list, by ID, and nested).
The whole response is compared with one built here: which scope each field needs is written down
in tests/support/policy_spec.py (``PARTNER_NEEDS``) from README's role table ("only fields that
both the token and the consent allow"), not read from the table (a test keeps the two equal, so a
condition dropped from the table fails here); every value is read as superuser.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from gateway.authz.playback import PlaybackSigner
from gateway.identity import Role
from gateway.ids import decode_global_id
from gateway.policy import scopes
from gateway.policy.table import POLICY
from tests.support.actors import Grants, gid, new_partner, partner_token
from tests.support.database import as_admin
from tests.support.json_values import all_strings
from tests.support.policy_spec import NEVER, PARTNER_NEEDS, PARTNER_ROWS

C, R, P = scopes.CONSULTATION, scopes.RECORDING, scopes.PATIENT
NESTED = {"clinician", "patient", "recordings", "consultation", "consultations"}

SCOPE_SETS = [frozenset(combo) for n in range(4) for combo in itertools.combinations(scopes.ALL, n)]
CONSENTS = [combo for combo in SCOPE_SETS if combo]
COMBINATIONS = list(itertools.product(SCOPE_SETS, CONSENTS))


def _name(scope_set: frozenset[str]) -> str:
    return "+".join(s.split("/")[1].split(".")[0] for s in sorted(scope_set)) or "none"


def _fields(type_name: str) -> list[str]:
    return sorted(PARTNER_NEEDS[type_name])


def test_the_needs_cover_exactly_what_the_policy_table_grants_partners():
    for entry in POLICY:
        granted = entry.grants.get(Role.PARTNER)
        if entry.type_name in PARTNER_NEEDS:
            assert granted is not None
            # Denied fields are listed as NEVER; every field the table grants has an entry, on
            # the same scope.
            assert {f: c.scope for f, c in granted.fields.items()} == {
                f: need for f, need in PARTNER_NEEDS[entry.type_name].items() if need is not NEVER
            }
            assert entry.smart_scope == PARTNER_ROWS[entry.type_name]
        elif granted is not None:
            # Partners' other types hold no patient data.
            assert entry.type_name in {"Clinician", "Partner", "Viewer"}


def _selection(type_name: str) -> str:
    parts = []
    for field in _fields(type_name):
        parts.append(f"{field} {{ id }}" if field in NESTED else field)
    return " ".join(parts)


QUERY = f"""query($t: ID!, $x: ID!, $r: ID!) {{
  consultations(first: 20) {{ edges {{ node {{ ...C }} }} }}
  consultation(id: $x) {{ ...C }}
  recording(id: $r) {{ ...R }}
  patient(id: $t) {{ ...P }}
}}
fragment C on Consultation {{ {
    _selection("Consultation").replace("recordings { id }", "recordings { ...R }")
} }}
fragment R on Recording {{ {_selection("Recording")} }}
fragment P on Patient {{ {_selection("Patient")} }}
"""


async def _read_truth(connection, patient: UUID) -> dict[str, Any]:
    consultations = await connection.fetch(
        "select * from data.consultations where patient_id = $1 "
        "order by scheduled_at desc, id desc",
        patient,
    )
    recordings = await connection.fetch(
        "select * from data.recordings where patient_id = $1 order by consultation_id, "
        "segment_index",
        patient,
    )
    return {
        "patient": await connection.fetchrow("select * from data.patients where id = $1", patient),
        "consultations": consultations,
        "recordings": recordings,
    }


async def _pick(connection, seeded: list[UUID]) -> UUID:
    """A seeded patient without consents who has a consultation with two or more recording
    segments."""
    return await connection.fetchval(
        "select r.patient_id from data.recordings r join data.accounts a "
        "on a.patient_id = r.patient_id where r.patient_id = any($1::uuid[]) and not exists "
        "(select 1 from data.consents k where k.patient_id = r.patient_id) "
        "group by r.patient_id, r.consultation_id, a.subject "
        "having count(*) >= 2 order by a.subject limit 1",
        seeded,
    )


@pytest.fixture(scope="module")
def world(env):
    yield from partner_world(env)


def partner_world(env):
    """A patient without consents, and one partner consenting per consent scope set."""
    patient = as_admin(env, lambda c: _pick(c, [p for _, p in env.patients()]))
    grants = Grants(env)
    partners = {}
    for consent in CONSENTS:
        subject, pk = new_partner(env, "scopes")
        grants.consent(patient, pk, consent)
        partners[consent] = subject
    truth = as_admin(env, lambda c: _read_truth(c, patient))
    # The first segment of the newest consultation that has a recording.
    recording = next(
        r
        for c in truth["consultations"]
        for r in truth["recordings"]
        if r["consultation_id"] == c["id"]
    )
    yield {
        "patient": patient,
        "partners": partners,
        "truth": truth,
        "consultation": next(
            c for c in truth["consultations"] if c["id"] == recording["consultation_id"]
        ),
        "recording": recording,
    }
    grants.close()


class Expected:
    """The response the policy allows for one partner whose effective scopes are ``scopes``."""

    def __init__(self, world, effective: frozenset[str]) -> None:
        self.truth = world["truth"]
        self.patient = world["patient"]
        self.effective = effective
        self.errors: list[tuple] = []
        # How a nested object is asked for, when not as ``{ id }``: "clinician" -> a function of
        # the clinician's id; "patient", "recordings" -> the fields asked of them.
        self.nested: dict[str, Any] = {}

    def _field(self, path: tuple, type_name: str, field: str, value: Any) -> Any:
        need = PARTNER_NEEDS[type_name][field]
        if need is NEVER or need not in self.effective:
            self.errors.append((*path, field))
            return None
        return value() if callable(value) else value

    def consultation(self, row, path: tuple, fields: list[str] | None = None) -> dict | None:
        """The consultation as the policy allows it, ``fields`` (default: every field) in that
        order; nested objects as ``self.nested`` makes them."""
        if C not in self.effective:
            return None
        values = {
            "id": gid("Consultation", row["id"]),
            "scheduledAt": row["scheduled_at"].isoformat(),
            "status": row["status"],
            "mode": row["mode"],
            "clinician": self.nested.get("clinician", lambda r: {"id": gid("Clinician", r)})(
                row["clinician_id"]
            ),
            "summary": row["summary"],
            "reason": row["reason"],
            "clinicianNotes": row["clinician_notes"],
            "patient": lambda: self.patient_object(
                None if "patient" not in self.nested else (*path, "patient"),
                self.nested.get("patient"),
            ),
            "recordings": lambda: [
                self.recording(r, (*path, "recordings", i), self.nested.get("recordings"))
                for i, r in enumerate(
                    r for r in self.truth["recordings"] if r["consultation_id"] == row["id"]
                )
            ],
        }
        return {
            f: self._field(path, "Consultation", f, values[f])
            for f in fields or _fields("Consultation")
        }

    def recording(self, row, path: tuple, fields: list[str] | None = None) -> dict | None:
        if R not in self.effective:
            return None
        consultation = {"id": gid("Consultation", row["consultation_id"])}
        values = {
            "id": gid("Recording", row["id"]),
            "consultation": consultation if C in self.effective else None,
            "segmentIndex": row["segment_index"],
            "mode": row["mode"],
            "startedAt": row["started_at"].isoformat(),
            "durationSeconds": row["duration_seconds"],
            "contentType": row["content_type"],
            "byteSize": row["byte_size"],
            "playbackUrl": ("signed for", gid("Recording", row["id"])),
        }
        return {
            f: self._field(path, "Recording", f, values[f]) for f in fields or _fields("Recording")
        }

    def patient_object(self, path: tuple | None, fields: list[str] | None = None) -> dict | None:
        """The patient; ``path`` None when nested (its fields are then not asked for)."""
        if P not in self.effective:
            return None
        row = self.truth["patient"]
        if path is None:
            return {"id": gid("Patient", row["id"])}
        values = {
            "id": gid("Patient", row["id"]),
            "displayName": row["display_name"],
            "birthDate": row["birth_date"].isoformat(),
            "consultations": [
                {"id": gid("Consultation", c["id"])} for c in self.truth["consultations"]
            ],
        }
        return {f: self._field(path, "Patient", f, values[f]) for f in fields or _fields("Patient")}


def _signed_urls_checked(env, body: Any, subject: str) -> Any:
    """``body`` with every playback URL replaced by ("signed for", recording ID) once its
    signature verifies for this partner; anything else left as it is."""
    signer = PlaybackSigner(env.settings().signing_keys(), 300)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            if isinstance(value.get("playbackUrl"), str):
                url = urlsplit(value["playbackUrl"])
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                recording_id = url.path.removeprefix("/media/recordings/")
                assert signer.verify(
                    decode_global_id(recording_id)[1],
                    env.identity.issuer,
                    subject,
                    int(query["exp"]),
                    query["kid"],
                    query["sig"],
                )
                out["playbackUrl"] = ("signed for", recording_id)
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(body)


@pytest.mark.parametrize(
    ("token_scopes", "consent_scopes"),
    COMBINATIONS,
    ids=[f"token={_name(t)}-consent={_name(c)}" for t, c in COMBINATIONS],
)
def test_a_partner_reads_only_what_both_token_and_consent_allow(
    env, client, world, token_scopes, consent_scopes
):
    subject = world["partners"][consent_scopes]
    consultation, recording = world["consultation"], world["recording"]
    body = client.execute(
        QUERY,
        partner_token(env, subject, token_scopes),
        {
            "t": gid("Patient", world["patient"]),
            "x": gid("Consultation", consultation["id"]),
            "r": gid("Recording", recording["id"]),
        },
    )
    expected = Expected(world, token_scopes & consent_scopes)
    listed = (
        [
            {"node": expected.consultation(row, ("consultations", "edges", i, "node"))}
            for i, row in enumerate(world["truth"]["consultations"])
        ]
        if C in expected.effective
        else []
    )
    data = {
        "consultations": {"edges": listed},
        "consultation": expected.consultation(consultation, ("consultation",)),
        "recording": expected.recording(recording, ("recording",)),
        "patient": expected.patient_object(("patient",)),
    }
    assert_exactly(env, world, subject, body, data, expected)


def assert_exactly(env, world, subject, body, data, expected, opaque=lambda data: data) -> None:
    """``body`` holds ``data`` (after ``opaque`` sets aside what cannot be compared), a FORBIDDEN
    error at the path of every field ``expected`` withholds and no other, and no other
    patient's ID anywhere. Playback URLs cannot equal a stored value: their signature is
    checked, then they are named."""
    got = _signed_urls_checked(env, body, subject)
    assert opaque(got.get("data")) == data
    errors = sorted(
        (tuple(e["path"]), e["extensions"]["code"], e["message"]) for e in got.get("errors", [])
    )
    assert errors == sorted(
        (path, "FORBIDDEN", "Not authorized to read this field") for path in expected.errors
    )
    foreign = env.truth.global_ids_not_of(world["patient"])
    assert [s for s in all_strings(body) if any(f in s for f in foreign)] == []
