"""The one field gate gives the same answer whichever executor asks, on any row.

Rows are generated: the caller's own, another patient's, unlabelled (no grant) and mislabelled
(a forged grant, forged consent scopes, another conducting clinician), for every role and every
set of token scopes. For each, the gate is asked for an ordered set of an object's fields three
ways, and all three must agree with each other and with a model of the policy written here from
``tests/support/policy_spec.py`` (README's role table), not from the policy table:

- field by field, as the interpreted executor asks (``check_field``, what ``FieldPolicy`` and
  the fast path call), recording each decision in a ledger;
- for the whole object at once, then field by field into the ledger, as a compiled plan asks
  (``PlanRun`` completing the object of a compiled trusted document, the row handed to it);
- the decisions alone (``decide``).

The differential tests (``test_plans.py``, ``test_plans_over_http.py``) compare the executors
end to end; this one aims at the gate's seam: a decision that depended on the order or the set
of fields asked together, or on anything but the row and the caller, fails here.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.authz.field_check import check_field, decide
from gateway.authz.playback import PlaybackSigner
from gateway.execution.compiler import compile_operation
from gateway.execution.plan import PlanRun
from gateway.identity import Principal, Role
from gateway.ledger import Ledger
from gateway.policy import scopes
from resolvers import build_schema
from resolvers.consultation import Consultation
from resolvers.patient import Patient
from resolvers.recording import Recording
from tests.support import policy_spec
from tests.support.production import offline_production_settings

ACTOR, OTHER, CLINICIAN = UUID(int=7), UUID(int=8), UUID(int=9)
SETTINGS = offline_production_settings("gate")
SCHEMA = build_schema(SETTINGS)
SIGNER = PlaybackSigner(SETTINGS.signing_keys(), 300, clock=lambda: 1_900_000_000)

# The fields a plan completes without a loader: attributes, and the playback URL (every field of
# the spec but those that hold objects).
OBJECTS = {"clinician", "patient", "recordings", "consultation", "consultations"}
FIELDS = {
    type_name: tuple(field for field in policy_spec.FIELDS[type_name] if field not in OBJECTS)
    for type_name in ("Consultation", "Recording", "Patient")
}
ROOT = {"Consultation": "consultation", "Recording": "recording", "Patient": "patient"}
GRANTS = [None, "own", "conducted", "break-glass", "consent", "everyone", "forged"]


def _row(type_name: str, owner: UUID, granted, consent_scopes, clinician: UUID):
    common = {
        "id": UUID(int=100),
        "granted": granted,
        "consent_scopes": consent_scopes,
        "break_glass_reason": None,
    }
    if type_name == "Consultation":
        return Consultation.from_row(
            common
            | {
                "patient_id": owner,
                "clinician_id": clinician,
                "scheduled_at": datetime(2026, 1, 2, tzinfo=UTC),
                "status": "COMPLETED",
                "mode": "VIDEO",
                "reason": "r",
                "summary": "s",
                "clinician_notes": "n",
            }
        )
    if type_name == "Recording":
        return Recording.from_row(
            common
            | {
                "patient_id": owner,
                "consultation_id": UUID(int=101),
                "segment_index": 0,
                "mode": "AUDIO",
                "started_at": datetime(2026, 1, 2, tzinfo=UTC),
                "duration_seconds": 60,
                "content_type": "audio/ogg",
                "byte_size": 10,
            }
        )
    return Patient.from_row(
        common | {"id": owner, "display_name": "P", "birth_date": date(1980, 1, 2)}
    )


def expected(role: Role, token: frozenset[str], type_name: str, field: str, row) -> bool:
    """The policy, from policy_spec and the design's row rules: may ``role`` read ``field`` of
    ``row`` as the row itself shows it?"""
    readable = policy_spec.FIELDS[type_name][field]
    if isinstance(readable, dict):  # clinician notes: only the conducting clinician
        if role.value not in readable:
            return False
        return row.granted in ("conducted", "break-glass") and row.clinician_pk == ACTOR
    if role.value not in readable:
        return False
    if role is Role.PATIENT:
        return row.owner == ACTOR
    if role is Role.CLINICIAN:
        return row.granted in ("conducted", "break-glass")
    if role is Role.PARTNER:  # the scope the field needs, in both token and consent
        needs = policy_spec.PARTNER_NEEDS[type_name][field]
        return (
            needs is not policy_spec.NEVER
            and row.consent_scopes is not None
            and needs in token
            and needs in row.consent_scopes
        )
    return True  # support, and the types granted to everyone


class Context:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.ledger = Ledger()
        self.playback = SIGNER


class Path:
    def __init__(self, keys: list) -> None:
        self.keys = keys

    def as_list(self) -> list:
        return self.keys


def _interpreted(principal, row, type_name, fields) -> tuple[list, Ledger]:
    """Field by field, as graphql-core completes an object: each decided and recorded by
    ``check_field``; a refused non-null field (``id``) nulls the object and ends it."""
    context = Context(principal)
    allowed = []
    for field in fields:
        ok = check_field(context, row, type_name, field, Path([ROOT[type_name], field]))
        allowed.append(ok)
        if not ok and field == "id":
            break
    return allowed, context.ledger


def _planned(principal, row, type_name, fields) -> tuple[list, Ledger]:
    """As a compiled plan completes the object of ``{ <root>(id: $id) { <fields> } }``, the
    row handed to it."""
    document = f"query($id: ID!) {{ {ROOT[type_name]}(id: $id) {{ {' '.join(fields)} }} }}"
    compiled = compile_operation(SCHEMA, document, rules=SCHEMA.validation_rules)
    variables = compiled.variables({"id": "x"})
    plan = compiled.tree(variables).fields[0].value.object
    context = Context(principal)
    run = PlanRun(context, variables)
    try:
        result = run._object(plan, row, (None, ROOT[type_name]))
        if asyncio.iscoroutine(result) or hasattr(result, "__await__"):
            result = asyncio.run(result)
    except Exception:  # a refused non-null field nulled the object
        result = None
    refused = {tuple(error.path)[-1] for error in run.errors}
    if result is None:
        denied = [d.field for d in context.ledger.denials]
        read = [r[3] for r in context.ledger.reads]
        return [f in read for f in fields if f in read or f in denied], context.ledger
    return [f not in refused for f in fields], context.ledger


@st.composite
def cases(draw):
    type_name = draw(st.sampled_from(sorted(FIELDS)))
    fields = draw(st.permutations(FIELDS[type_name]))
    fields = fields[: draw(st.integers(1, len(fields)))]
    role = draw(st.sampled_from(list(Role)))
    token = frozenset(draw(st.sets(st.sampled_from(scopes.ALL))))
    owner = draw(st.sampled_from([ACTOR, OTHER]))
    granted = draw(st.sampled_from(GRANTS))
    consent = draw(st.none() | st.lists(st.sampled_from(scopes.ALL), unique=True).map(tuple))
    clinician = draw(st.sampled_from([ACTOR, CLINICIAN]))
    return type_name, tuple(fields), role, token, owner, granted, consent, clinician


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(case=cases())
def test_the_gate_answers_the_same_whichever_executor_asks_and_as_the_policy_says(case):
    type_name, fields, role, token, owner, granted, consent, clinician = case
    principal = Principal("iss", "sub", role, ACTOR, expires_at=0, scopes=token)
    row = _row(type_name, owner, granted, consent, clinician)
    model = [expected(role, token, type_name, field, row) for field in fields]

    together = decide(principal, row, type_name, fields)
    one_by_one = [decide(principal, row, type_name, (field,))[0] for field in fields]
    assert together == one_by_one
    assert [reason is None for reason in together] == model

    interpreted, interpreted_ledger = _interpreted(principal, row, type_name, fields)
    planned, planned_ledger = _planned(principal, row, type_name, fields)
    assert interpreted == model[: len(interpreted)]
    assert planned == interpreted
    assert sorted(planned_ledger.reads) == sorted(interpreted_ledger.reads)
    assert sorted(map(repr, planned_ledger.denials)) == sorted(
        map(repr, interpreted_ledger.denials)
    )
    for ledger in (planned_ledger, interpreted_ledger):
        # The owner recorded is the row's own, whatever the row's labels claim.
        assert {read[2] for read in ledger.reads} <= {row.owner}
        assert {denial.owner for denial in ledger.denials} <= {row.owner}


@pytest.mark.parametrize("granted", GRANTS)
def test_a_patient_never_reads_another_patients_row_whatever_grant_it_carries(granted):
    principal = Principal("iss", "sub", Role.PATIENT, ACTOR, expires_at=0)
    row = _row("Consultation", OTHER, granted, tuple(scopes.ALL), ACTOR)
    reasons = decide(principal, row, "Consultation", FIELDS["Consultation"])
    assert reasons[0] == "Consultation.id@patient (not the caller's own row)"
    assert all(reason is not None for reason in reasons)
