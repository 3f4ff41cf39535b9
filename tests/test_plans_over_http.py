"""Compiled plans and graphql-core give the same answer over HTTP, on hostile rows too.

``test_plans.py`` compares the executors in process, on the real, correctly filtered rows. Here
each trusted operation runs for every role through one production-mode gateway whose database
edge is sabotaged (``tests.support.sabotage``) in one of three ways drawn per example:

- ``honest``: the real statements (layers 2 and 3 on);
- ``unfiltered``: every loader statement without its predicate, as a superuser: foreign rows
  carrying no grant;
- ``mislabelled``: the same foreign rows carrying a forged grant (``own``, ``conducted``,
  ``break-glass``, ``consent`` with any scopes, ``everyone``) and a forged break-glass reason,

with the exit check on or off (off: it finds nothing foreign, so the field gate alone decides
what is sent). Each example sends the operation twice: by hash (served by its plan) and as text
that is not in the manifest (served by graphql-core), and checks from the gateway's count that
each was served as meant. The two answers must be equal: the response (data, serialized, so key
order counts; errors with paths, codes and messages), the ledger the disclosure step was handed
(reads, denials, objects, break-glass reasons), and the audit events stored for the request
(disclosures, denials and exit-check alerts). A response whose data is null discloses nothing:
then both must have handed nothing to the disclosure step and stored nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.authz.disclosure import DisclosureStep
from gateway.authz.exit_check import ExitCheck, ExitQuestions
from gateway.authz.playback import PlaybackSigner
from gateway.data import queries
from gateway.identity import Role
from gateway.ids import decode_global_id
from gateway.policy import scopes
from tests.support.executors import INTERPRETER, PLAN, executions
from tests.support.sabotage import SabotagedDatabase
from tests.support.server import GraphQLClient, serving
from tests.test_plans import (
    OPERATIONS,
    QUERIES,
    ROLES,
    Harness,
    _principal,
    _setup,
    _teardown,
    _variables,
    scenarios,
)

EXAMPLES = 30  # per (operation, role); docs/TESTING.md gives the count and the run time

GRANTS = [None, "own", "conducted", "break-glass", "consent", "everyone"]
FORGED_REASON = "forged: no such emergency"

# Each loader statement's rows without any predicate but the key asked for, and the grant
# columns as parameters: (SQL, the statement's argument holding the keys or the limit).
_ROWS = {
    queries.CONSULTATIONS_BY_ID: ("select * {} from data.consultations where id = any($1)", 3),
    queries.CONSULTATIONS_PAGE: (
        "select * {} from data.consultations order by scheduled_at desc, id desc limit $1",
        3,
    ),
    queries.CONSULTATIONS_BY_PATIENT: (
        "select * {} from data.consultations where patient_id = any($1)",
        3,
    ),
    queries.RECORDINGS_BY_CONSULTATION: (
        "select * {} from data.recordings where consultation_id = any($1) order by segment_index",
        3,
    ),
    queries.RECORDINGS_BY_ID: ("select * {} from data.recordings where id = any($1)", 3),
    queries.PATIENTS_BY_ID: ("select * {} from data.patients where id = any($1)", 3),
}
_LABELS = ", $2::text[] as consent_scopes, $3::text as break_glass_reason, $4::text as granted"


def _hostile(consent_scopes: list[str] | None, reason: str | None, granted: str | None) -> dict:
    """Replacements of every loader statement returning anyone's rows with these labels."""

    def replacement(sql: str, at: int):
        return lambda *args: (sql.format(_LABELS), [args[at], consent_scopes, reason, granted])

    return {statement: replacement(sql, at) for statement, (sql, at) in _ROWS.items()}


class Captured:
    """The ledger each request handed the disclosure step, by request id."""

    def __init__(self) -> None:
        self.ledgers: dict[str, tuple] = {}
        self.exit_check_off = False


@pytest.fixture(scope="module")
def harness(env):
    made = Harness(env)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def hostile(env, tmp_path_factory):
    """One production-mode gateway with the operations' manifest, free-form documents open (for
    the interpreted side), over a sabotaged database; the disclosure step's ledger captured."""
    captured = Captured()
    patch = pytest.MonkeyPatch()
    clear = DisclosureStep.clear
    questions = ExitCheck.questions

    async def capturing(self, principal, ledger, request_id, **kwargs):
        captured.ledgers[request_id] = (
            sorted(map(repr, ledger.reads)),
            sorted(map(repr, ledger.denials)),
            sorted(map(repr, ledger.objects)),
            sorted(ledger.break_glass.items()),
        )
        return await clear(self, principal, ledger, request_id, **kwargs)

    def maybe(self, principal, ledger):
        return ExitQuestions() if captured.exit_check_off else questions(self, principal, ledger)

    patch.setattr(DisclosureStep, "clear", capturing)
    patch.setattr(ExitCheck, "questions", maybe)
    manifest = tmp_path_factory.mktemp("plans") / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                # Every operation for every role: which roles may send one is another test's.
                "operations": [
                    {k: v for k, v in OPERATIONS[name].items() if k != "roles"} for name in QUERIES
                ],
            }
        )
    )
    database = SabotagedDatabase(env)
    app_settings = env.settings(trusted_documents=manifest, free_form_documents="everyone")
    from gateway import create_app

    try:
        with serving(create_app(app_settings, database=database)) as server:
            client = GraphQLClient(server.url)
            try:
                yield client, database, captured
            finally:
                client.http.close()
                database.close()
    finally:
        patch.undo()


def _verified(env, value: Any, subject: str, signer: PlaybackSigner | None = None) -> Any:
    """``value`` with each playback URL's expiry and signature checked for ``subject`` and
    replaced by a mark: the two requests are made at two moments, so their URLs expire at two
    times; everything else of the URL must be equal."""
    signer = signer or PlaybackSigner(env.settings().signing_keys(), 300)
    if isinstance(value, dict):
        return {key: _verified(env, item, subject, signer) for key, item in value.items()}
    if isinstance(value, list):
        return [_verified(env, item, subject, signer) for item in value]
    if isinstance(value, str) and "/media/recordings/" in value:
        path, _, query = value.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&"))
        _, pk = decode_global_id(path.rsplit("/", 1)[1])
        assert signer.verify(
            pk, env.identity.issuer, subject, int(params["exp"]), params["kid"], params["sig"]
        ), value
        return f"{path}?kid={params['kid']}&(signed for the caller)"
    return value


def _stored(harness, request_id: str) -> list[bytes]:
    rows = harness.run(
        harness.admin.fetch(
            "select kind, role, patient_id, break_glass_reason, "
            "data.event_objects(access_events)::text as objects, "
            "detail::text as detail from data.access_events where request_id = $1",
            request_id,
        )
    )
    return sorted(
        orjson.dumps(
            {
                "kind": r["kind"],
                "role": r["role"],
                "patient": str(r["patient_id"]),
                "reason": r["break_glass_reason"],
                "objects": json.loads(r["objects"]),
                "detail": json.loads(r["detail"]),
            },
            option=orjson.OPT_SORT_KEYS,
        )
        for r in rows
    )


def _token(env, principal) -> str:
    if principal.role is Role.PARTNER:
        return env.token(
            principal.subject, scope=" ".join(sorted(principal.scopes)), azp=principal.subject
        )
    return env.token(principal.subject)


_SEQUENCE = iter(range(10**9))


def _ask(env, harness, client, captured, principal, body: dict[str, Any], tag: str) -> tuple:
    request_id = f"hostile-{next(_SEQUENCE)}-{tag}-{time.monotonic_ns()}"
    response = client.http.post(
        "/graphql",
        json=body,
        headers={"authorization": f"Bearer {_token(env, principal)}", "x-request-id": request_id},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    data = orjson.dumps(_verified(env, answer.get("data"), principal.subject))
    errors = sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in answer.get("errors", []))
    ledger = captured.ledgers.pop(request_id, None)
    if answer.get("data") is None and not any(
        e["extensions"]["code"] == "WITHHELD" for e in answer.get("errors", [])
    ):
        assert ledger is None  # nothing disclosed: the step was never asked
    return data, errors, ledger, _stored(harness, request_id)


@st.composite
def hostility(draw):
    return {
        "mode": draw(st.sampled_from(["honest", "unfiltered", "mislabelled"])),
        "exit_check": draw(st.sampled_from(["on", "off"])),
        "granted": draw(st.sampled_from(GRANTS)),
        "consent_scopes": draw(st.none() | st.lists(st.sampled_from(scopes.ALL), unique=True)),
        "reason": draw(st.sampled_from([None, FORGED_REASON])),
    }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", QUERIES)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    # Each example is two requests over HTTP and writes audit events: shrinking a failure would
    # take minutes; the failing example is reported as drawn.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_both_executors_send_and_audit_the_same_on_hostile_rows(
    env, harness, hostile, name, role, data
):
    client, database, captured = hostile
    scenario = data.draw(scenarios(role))
    attack = data.draw(hostility())
    principal = _principal(env, harness, scenario)
    patients = [p for _, p in env.patients()]
    patient = patients[scenario["target"] % len(patients)]
    if principal.role is Role.PATIENT:
        patient = principal.actor_id if scenario["target"] % 3 else patient
    variables = _variables(harness, scenario, name, patient)
    operation = OPERATIONS[name]
    scenario = {**scenario, "new_consultation": None}
    made = harness.run(_setup(harness, principal, scenario, patient))
    database.broken.clear()
    # The access log as it was before the pair: the first request's own audit events must not
    # show in the second's page (the real statement, its page ending where the log ended).
    last = harness.run(harness.admin.fetchval("select max(seq) from data.access_events"))
    database.arguments[queries.ACCESS_EVENTS_PAGE] = (
        lambda role, actor, scopes, first, before, by_others, emergency: [
            role,
            actor,
            scopes,
            first,
            before if before is not None else last + 1,
            by_others,
            emergency,
        ]
    )
    if attack["mode"] == "unfiltered":
        database.broken.update(_hostile(None, None, None))
    elif attack["mode"] == "mislabelled":
        database.broken.update(
            _hostile(attack["consent_scopes"], attack["reason"], attack["granted"])
        )
    captured.exit_check_off = attack["exit_check"] == "off"
    try:
        before = executions(client.http)
        planned = _ask(
            env,
            harness,
            client,
            captured,
            principal,
            {
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": operation["id"]}},
                "variables": variables,
            },
            "plan",
        )
        # The same document, one comment longer: not in the manifest, so graphql-core runs it.
        interpreted = _ask(
            env,
            harness,
            client,
            captured,
            principal,
            {"query": operation["body"] + "\n# interpreted", "variables": variables},
            "core",
        )
        after = executions(client.http)
        assert (after[PLAN] - before[PLAN], after[INTERPRETER] - before[INTERPRETER]) == (1, 1)
    finally:
        database.broken.clear()
        database.arguments.clear()
        captured.exit_check_off = False
        harness.run(_teardown(harness, made))
    for part, what in enumerate(("data", "errors", "ledger", "audit events")):
        if planned[part] != interpreted[part] and isinstance(planned[part], list):
            only_plan = [x for x in planned[part] if x not in interpreted[part]]
            only_core = [x for x in interpreted[part] if x not in planned[part]]
            raise AssertionError(f"{what} differ: {only_plan!r} vs {only_core!r}")
        assert planned[part] == interpreted[part], what


def test_the_hostile_modes_reach_foreign_rows_and_forged_grants(env, harness, hostile):
    """Guards the differential against passing vacuously: under the unfiltered and mislabelled
    statements, a patient's page holds other patients' consultations (refused field by field,
    or withheld whole), and a forged grant is what the gate reads."""
    client, database, captured = hostile
    subject, patient = env.patients()[0]
    query = "{ consultations(first: 100) { edges { node { id reason } } } }"
    database.broken.update(_hostile(None, None, None))
    captured.exit_check_off = True
    try:
        body = client.execute(query, env.token(subject))
    finally:
        captured.exit_check_off = False
        database.broken.clear()
    nodes = body["data"]["consultations"]["edges"]
    assert any(edge["node"] is None for edge in nodes)  # foreign rows, their id refused
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    database.broken.update(_hostile(list(scopes.ALL), FORGED_REASON, "own"))
    try:
        body = client.execute(query, env.token(subject))
    finally:
        database.broken.clear()
    assert body == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }
    assert isinstance(patient, UUID)
