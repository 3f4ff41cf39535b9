"""Layer 4: a foreign object forced past layers 1 to 3 is withheld, counted and recorded.

The sabotage: a database edge whose loader statements forget every WHERE clause and run as a
superuser (no RLS), the way a shared cache or a careless new query would. The field check refuses
the fields of those rows (tests/test_field_check_alone.py), but the rows were loaded: the exit
check withholds the whole response all the same, counts it and records an alert.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid

import asyncpg
import pytest

from gateway import create_app
from gateway.audit.events import expand_objects
from gateway.data import queries
from gateway.data.pool import Database
from gateway.ids import encode_global_id
from tests.support.executors import trusted
from tests.support.sabotage import sabotaged_gateway, unfiltered
from tests.support.server import GraphQLClient, serving

PAGE_WITH_RECORDINGS = trusted(
    "{ consultations(first: 100) { edges { node { id reason recordings { id } } } } }"
)
PAGE = trusted("{ consultations(first: 100) { edges { node { id } } } }")
TYPENAME = trusted("query($id: ID!) { consultation(id: $id) { __typename } }")
SUMMARY = trusted("query($id: ID!) { consultation(id: $id) { id summary } }")
REASON = trusted("query($id: ID!) { consultation(id: $id) { id reason } }")
RECORDING_ID = trusted("query($id: ID!) { recording(id: $id) { id } }")
PATIENT_ID = trusted("query($id: ID!) { patient(id: $id) { id } }")


@pytest.fixture(scope="module")
def leaky(env, executor, manifest):
    """A gateway of each executor whose loaders forget every predicate (as a superuser)."""
    with sabotaged_gateway(env, executor, manifest) as (client, database):
        database.broken.update(unfiltered())
        yield client


def _trips(client) -> float:
    text = client.http.get("/metrics").text
    match = re.search(r"^gateway_exit_check_trips_total ([0-9.]+)$", text, re.MULTILINE)
    return float(match.group(1))


def _alerts(env, subject):
    async def read():
        connection = await asyncpg.connect(env.admin_url)
        try:
            return await connection.fetch(
                "select kind, subject, patient_id, detail from data.access_events "
                "where kind = 'alert' and subject = $1",
                subject,
            )
        finally:
            await connection.close()

    return asyncio.run(read())


def test_a_leaking_list_is_withheld_counted_and_recorded(env, leaky):
    subject, patient = env.patients()[2]
    before = _trips(leaky)
    response = leaky.post(PAGE_WITH_RECORDINGS, env.token(subject))
    assert response.status_code == 200
    assert response.json() == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }
    assert _trips(leaky) == before + 1
    alerts = _alerts(env, subject)
    foreign_owners = {a["patient_id"] for a in alerts}
    assert foreign_owners and patient not in foreign_owners
    assert all(a["detail"] == '{"layer": 4, "reason": "exit-check"}' for a in alerts)


def test_a_foreign_object_is_withheld_even_when_only_its_typename_is_asked(env, leaky):
    (subject, _), (_, victim) = env.patients()[3], env.patients()[4]
    foreign = sorted(env.truth.consultations_of_patient[victim])[0]
    before = _trips(leaky)
    body = leaky.execute(
        TYPENAME,
        env.token(subject),
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "WITHHELD"
    assert _trips(leaky) == before + 1


def test_a_clinician_is_checked_against_the_patients_they_may_see(env, leaky):
    (subject, clinician), (_, other) = env.clinicians()[0], env.clinicians()[1]
    strangers = set(env.truth.consultations_of_patient) - env.truth.patients_of_clinician[clinician]
    foreign = next(
        pk
        for pk in sorted(env.truth.consultations_of_clinician[other])
        if env.truth.owner_of[pk] in strangers
    )
    body = leaky.execute(
        SUMMARY,
        env.token(subject),
        {"id": encode_global_id("Consultation", foreign)},
    )
    assert body == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }


def test_own_data_through_the_same_broken_edge_is_not_withheld(env, leaky):
    subject, patient = env.patients()[5]
    own = sorted(env.truth.consultations_of_patient[patient])[0]
    before = _trips(leaky)
    body = leaky.execute(
        REASON,
        env.token(subject),
        {"id": encode_global_id("Consultation", own)},
    )
    assert body["data"]["consultation"]["id"] == encode_global_id("Consultation", own)
    assert _trips(leaky) == before


def _alert_rows(env, subject, request_id):
    async def read():
        connection = await asyncpg.connect(env.admin_url)
        try:
            return await connection.fetch(
                "select kind, role, patient_id, data.event_objects(access_events) as objects, "
                "detail from data.access_events "
                "where subject = $1 and request_id = $2",
                subject,
                request_id,
            )
        finally:
            await connection.close()

    return asyncio.run(read())


def test_each_alert_names_one_foreign_patient_with_exactly_their_objects(env, leaky):
    subject, patient = env.patients()[6]
    response = leaky.post(PAGE, env.token(subject))
    assert response.json()["errors"][0]["extensions"]["code"] == "WITHHELD"
    rows = _alert_rows(env, subject, response.headers["x-request-id"])
    assert {row["kind"] for row in rows} == {"alert"}
    assert {row["role"] for row in rows} == {"patient"}
    by_owner = {row["patient_id"]: expand_objects(json.loads(row["objects"])) for row in rows}
    listed = _first_hundred(env)  # what the leaking page loaded, read as a superuser
    assert set(by_owner) == {owner for _, owner in listed} - {patient}
    for owner, objects in by_owner.items():
        assert sorted(objects, key=lambda o: o["id"]) == sorted(
            (
                {"type": "Consultation", "id": str(pk), "fields": []}
                for pk, of in listed
                if of == owner
            ),
            key=lambda o: o["id"],
        )


def _first_hundred(env):
    async def read():
        connection = await asyncpg.connect(env.admin_url)
        try:
            rows = await connection.fetch(
                "select id, patient_id from data.consultations "
                "order by scheduled_at desc, id desc limit 100"
            )
        finally:
            await connection.close()
        return [(row["id"], row["patient_id"]) for row in rows]

    return asyncio.run(read())


def test_a_trip_is_logged_critical_with_the_request_the_caller_and_the_foreign_count(
    env, leaky, caplog
):
    subject, patient = env.patients()[6]
    with caplog.at_level(logging.INFO, logger="gateway.exitcheck"):
        response = leaky.post(PAGE, env.token(subject))
    foreign = {owner for _, owner in _first_hundred(env)}
    [record] = [r for r in caplog.records if r.name == "gateway.exitcheck"]
    assert (record.levelno, record.getMessage()) == (
        logging.CRITICAL,
        "exit check tripped: response withheld",
    )
    assert (record.request_id, record.subject, record.role, record.foreign_patients) == (
        response.headers["x-request-id"],
        subject,
        "patient",
        len(foreign - {patient}),
    )


def test_when_the_alert_cannot_be_written_the_response_is_still_withheld_and_that_is_logged(
    env, leaky, caplog
):
    subject, _ = env.patients()[7]

    async def grant(statement):
        connection = await asyncpg.connect(env.admin_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(grant("revoke insert on data.access_events from gateway_app"))
    try:
        with caplog.at_level(logging.INFO, logger="gateway.exitcheck"):
            response = leaky.post(PAGE, env.token(subject))
    finally:
        asyncio.run(grant("grant insert on data.access_events to gateway_app"))
    assert response.json() == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }
    failures = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == "gateway.exitcheck"
    ]
    assert [r.getMessage() for r in failures] == ["could not record exit-check alert"]
    assert failures[0].request_id == response.headers["x-request-id"]
    assert failures[0].exc_info is not None


@pytest.mark.parametrize("type_name", ["Recording", "Patient"])
def test_a_partner_holding_a_consent_of_another_scope_is_withheld_the_type_it_lacks(
    env, leaky, type_name
):
    """The exit check asks for the type's own SMART scope: a consent to consultations only does
    not let a partner hold that patient's recordings or record."""
    _, victim = env.patients()[8]
    partner = uuid.uuid4()

    async def consent(connection):
        await connection.execute("insert into data.partners values ($1, 'Scope probe')", partner)
        await connection.execute(
            "insert into data.accounts (issuer, subject, role, partner_id) "
            "values ($1, $2, 'partner', $3)",
            env.identity.issuer,
            f"partner-{partner}",
            partner,
        )
        await connection.execute(
            "insert into data.consents (id, patient_id, partner_id, scopes, expires_at) "
            "values ($1, $2, $3, '{patient/Consultation.rs}', now() + interval '1 day')",
            uuid.uuid4(),
            victim,
            partner,
        )

    async def run():
        connection = await asyncpg.connect(env.admin_url)
        try:
            await consent(connection)
        finally:
            await connection.close()

    asyncio.run(run())
    pk = sorted(env.truth.recordings_of_patient[victim])[0] if type_name == "Recording" else victim
    query = {"Recording": RECORDING_ID, "Patient": PATIENT_ID}[type_name]
    token = env.token(
        f"partner-{partner}",
        scope="patient/Consultation.rs patient/Recording.rs patient/Patient.rs",
        azp=f"partner-{partner}",
    )
    body = leaky.execute(query, token, {"id": encode_global_id(type_name, pk)})
    assert body == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }


@pytest.mark.parametrize("kind", ["denial", "alert", "consent-granted", "break-glass-opened"])
def test_the_disclosure_step_refuses_a_kind_under_which_nothing_is_disclosed(env, kind):
    from gateway.authz.disclosure import DisclosureStep
    from gateway.identity import Principal, Role
    from gateway.ledger import Ledger
    from gateway.ops.metrics import Metrics

    async def clear():
        database = await Database.connect(env.settings())
        try:
            metrics = Metrics()
            step = DisclosureStep(database.execute, metrics)
            principal = Principal("iss", "sub", Role.PATIENT, env.patients()[0][1], expires_at=0)
            with pytest.raises(ValueError, match=f"^not a disclosure kind: {kind}$"):
                await step.clear(principal, Ledger(), "request", kind=kind)
        finally:
            await database.close()

    asyncio.run(clear())


class _OtherGrantDatabase:
    """The real edge, except that opening break-glass hands back another clinician's grant on
    another patient (read as a superuser), as a broken change statement would."""

    def __init__(self, env, grant) -> None:
        self._env = env
        self._grant = grant
        self._real: Database | None = None

    async def _open(self) -> None:
        if self._real is None:
            self._real = await Database.connect(self._env.settings())

    async def fetch(self, statement, *args):
        await self._open()
        if statement == queries.OPEN_BREAK_GLASS:
            connection = await asyncpg.connect(self._env.admin_url)
            try:
                return await connection.fetch(
                    "select * from data.break_glass_grants where id = $1", self._grant
                )
            finally:
                await connection.close()
        return await self._real.fetch(statement, *args)

    async def execute(self, statement, *args):
        await self._open()
        return await self._real.execute(statement, *args)


def test_a_break_glass_grant_of_another_clinician_on_another_patient_is_withheld(env):
    (subject, clinician), (_, other) = env.clinicians()[0], env.clinicians()[1]
    stranger = sorted(
        set(env.truth.consultations_of_patient) - env.truth.patients_of_clinician[clinician]
    )
    victim = stranger[0] if stranger else env.patients()[11][1]
    grant = uuid.uuid4()

    async def make():
        connection = await asyncpg.connect(env.admin_url)
        try:
            await connection.execute(
                # Revoked at once: the row only has to exist, and must open nothing to others.
                "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, "
                "expires_at, revoked_at) values ($1, $2, $3, "
                "'Another clinician, another emergency', now() + interval '1 hour', now())",
                grant,
                other,
                victim,
            )
        finally:
            await connection.close()

    asyncio.run(make())
    own_patient = sorted(env.truth.patients_of_clinician[clinician])[0]
    with serving(create_app(env.settings(), database=_OtherGrantDatabase(env, grant))) as server:
        body = GraphQLClient(server.url).execute(
            "mutation($p: ID!, $r: String!) { openBreakGlass(patientId: $p, reason: $r) "
            "{ id reason } }",
            env.token(subject),
            {
                "p": encode_global_id("Patient", own_patient),
                "r": "Patient unconscious in the ER, history needed",
            },
        )
    assert body == {
        "data": None,
        "errors": [{"message": "Response withheld", "extensions": {"code": "WITHHELD"}}],
    }


def _foreign_owners(env, principal, objects):
    """Layer 4 alone, through the code production runs: a ledger of rows of the given owners
    handed to ``DisclosureStep.clear`` (the exit check's questions, asked of the database with
    the audit write). Returns the patients it alerted about; asserts that a withheld ledger
    stored nothing but those alerts, and that a cleared one stored its disclosures."""
    from gateway.authz.disclosure import DisclosureStep
    from gateway.errors import ResponseWithheld
    from gateway.ledger import Ledger
    from gateway.ops.metrics import Metrics

    request_id = f"layer-4-alone-{uuid.uuid4().hex}"

    async def clear():
        database = await Database.connect(env.settings())
        try:
            metrics = Metrics()
            step = DisclosureStep(database.fetch, metrics)
            ledger = Ledger()
            for type_name, owner in objects:
                ledger.record_object(type_name, uuid.uuid4(), owner)
            try:
                await step.clear(principal, ledger, request_id)
            except ResponseWithheld:
                withheld = True
            else:
                withheld = False
        finally:
            await database.close()
        connection = await asyncpg.connect(env.admin_url)
        try:
            rows = await connection.fetch(
                "select kind, patient_id from data.access_events where request_id = $1",
                request_id,
            )
        finally:
            await connection.close()
        return withheld, [(r["kind"], r["patient_id"]) for r in rows], metrics

    withheld, stored, metrics = asyncio.run(clear())
    alerted = {patient for kind, patient in stored if kind == "alert"}
    trips = metrics.registry.get_sample_value("gateway_exit_check_trips_total")
    if withheld:
        assert sorted(kind for kind, _ in stored) == ["alert"] * len(alerted)
        assert trips == 1
    else:
        owners = {owner for _, owner in objects if owner is not None}
        assert stored and {kind for kind, _ in stored} == {"disclosure"}
        assert {patient for _, patient in stored} == owners
        assert trips == 0
    return alerted


def test_the_exit_check_alone_names_exactly_the_owners_each_role_may_not_hold(env):
    from gateway.identity import Principal, Role

    patients = [p for _, p in env.patients()]
    (_, clinician) = env.clinicians()[0]
    treated = sorted(env.truth.patients_of_clinician[clinician])
    strangers = sorted(set(patients) - set(treated))

    def principal(role, actor=None):
        return Principal("iss", "sub", role, actor, expires_at=0)

    # Support holds every consultation and patient, never a recording or a consent: however the
    # ledger is ordered, the rows of everyone do not hide the others.
    support = [("Consultation", p) for p in patients[:6]] + [("Patient", p) for p in patients[:6]]
    support += [("Recording", p) for p in patients[6:]] + [("Consent", patients[0])]
    assert _foreign_owners(env, principal(Role.SUPPORT), support) == set(patients[6:]) | {
        patients[0]
    }
    assert _foreign_owners(env, principal(Role.SUPPORT), support[:12]) == set()
    # A patient holds only their own.
    own = [("Consultation", patients[0]), ("Recording", patients[0])]
    foreign = [("Consultation", p) for p in patients[1:4]]
    assert _foreign_owners(env, principal(Role.PATIENT, patients[0]), own + foreign) == set(
        patients[1:4]
    )
    assert _foreign_owners(env, principal(Role.PATIENT, patients[0]), own) == set()
    # A clinician holds the patients they treated, and never an access event or a consent.
    ledger = [("Consultation", p) for p in treated[:2] + strangers[:2]]
    ledger += [("AccessEvent", treated[0]), ("Consent", treated[1])]
    assert _foreign_owners(env, principal(Role.CLINICIAN, clinician), ledger) == set(
        strangers[:2]
    ) | {treated[0], treated[1]}
    # The database half alone: only care is asked (no type judged without it).
    ledger = [("Consultation", p) for p in treated[:2] + strangers[:2]]
    assert _foreign_owners(env, principal(Role.CLINICIAN, clinician), ledger) == set(strangers[:2])
    assert _foreign_owners(env, principal(Role.CLINICIAN, clinician), ledger[:2]) == set()
    # A partner holds, per type, the patients whose consent covers that type's scope, and never
    # an access event: a consent to consultations does not cover recordings.
    partner, consenting, other = uuid.uuid4(), patients[9], patients[10]

    async def consent(connection):
        await connection.execute("insert into data.partners values ($1, 'Ledger probe')", partner)
        await connection.execute(
            "insert into data.consents (id, patient_id, partner_id, scopes, expires_at) "
            "values ($1, $2, $3, '{patient/Consultation.rs}', now() + interval '1 day')",
            uuid.uuid4(),
            consenting,
            partner,
        )

    async def run(work):
        connection = await asyncpg.connect(env.admin_url)
        try:
            await work(connection)
        finally:
            await connection.close()

    asyncio.run(run(consent))
    scopes = frozenset({"patient/Consultation.rs", "patient/Recording.rs"})
    caller = Principal("iss", "sub", Role.PARTNER, partner, expires_at=0, scopes=scopes)
    ledger = [("Consultation", consenting), ("Recording", consenting), ("AccessEvent", other)]
    assert _foreign_owners(env, caller, ledger) == {consenting, other}
    # The database half alone: consent and its scope.
    ledger = [("Consultation", consenting), ("Consultation", other), ("Recording", consenting)]
    assert _foreign_owners(env, caller, ledger) == {consenting, other}
    assert _foreign_owners(env, caller, [("Consultation", consenting)]) == set()
    # An auditor holds every access event and nothing clinical.
    ledger = [("AccessEvent", p) for p in patients[:6]] + [("Consultation", patients[7])]
    assert _foreign_owners(env, principal(Role.AUDITOR), ledger) == {patients[7]}


def test_when_the_database_half_cannot_be_asked_after_a_trip_the_send_is_withheld_all_the_same(
    env, caplog
):
    """A clinician's ledger holding an access event (foreign without asking the database) and a
    stranger's consultation (the database's question): the question fails, so the alerts name
    only the patient known to be foreign, the failure is logged with the request, and the
    response is still withheld."""
    from gateway.authz.disclosure import DisclosureStep
    from gateway.errors import ResponseWithheld
    from gateway.identity import Principal, Role
    from gateway.ledger import Ledger
    from gateway.ops.metrics import Metrics

    (_, clinician) = env.clinicians()[0]
    treated = sorted(env.truth.patients_of_clinician[clinician])[0]
    stranger = sorted(
        set(env.truth.consultations_of_patient) - env.truth.patients_of_clinician[clinician]
    )[0]
    principal = Principal("iss", "sub", Role.CLINICIAN, clinician, expires_at=0)
    request_id = f"unasked-{uuid.uuid4().hex}"
    function = "api.record_access_events_if_authorized(text, uuid, text[], jsonb, jsonb, uuid[])"

    async def run():
        admin = await asyncpg.connect(env.admin_url)
        database = await Database.connect(env.settings())
        await admin.execute(f"revoke execute on function {function} from gateway_app")
        try:
            ledger = Ledger()
            ledger.record_object("AccessEvent", 1, treated)
            ledger.record_object("Consultation", uuid.uuid4(), stranger)
            with pytest.raises(ResponseWithheld):
                await DisclosureStep(database.fetch, Metrics()).clear(principal, ledger, request_id)
        finally:
            await admin.execute(f"grant execute on function {function} to gateway_app")
            await database.close()
        try:
            return await admin.fetch(
                "select kind, patient_id from data.access_events where request_id = $1",
                request_id,
            )
        finally:
            await admin.close()

    with caplog.at_level(logging.INFO):
        stored = asyncio.run(run())
    assert [(r["kind"], r["patient_id"]) for r in stored] == [("alert", treated)]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [(r.name, r.getMessage()) for r in failures] == [
        ("gateway.audit", "audit write failed; response withheld"),
        ("gateway.exitcheck", "could not ask the exit check's questions"),
    ]
    assert failures[1].request_id == request_id
