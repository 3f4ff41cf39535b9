"""Administration without hand-written SQL: ``gateway accounts`` and ``gateway partners`` as an
operator runs them (real processes, one clear line on every refusal), each change an event of
the audit trail, a disabled account or partner refused from the next request on, and nothing
done to a database that is not migrated exactly as this gateway expects."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from gateway.audit.chain import verify_chain
from gateway.audit.fhir import to_audit_event
from gateway.data import administration as admin
from gateway.data.administration import AdminError
from gateway.ids import encode_global_id
from tests.support.database import as_admin
from tests.support.gateway_process import run_gateway
from tests.test_cli import _fresh_database, assert_one_line_failure

gateway = run_gateway
OPERATOR = "ops-alice"


def _cli(env, *args: str):
    """The command on the test database; a change is made as OPERATOR."""
    operator = [] if args[-1] == "list" or "list" in args[:2] else ["--operator", OPERATOR]
    return gateway(*args, "--database-url", env.admin_url, *operator)


def _events(env, marker: str) -> list[dict]:
    """The administrative events whose detail mentions ``marker``, oldest first."""
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select kind, issuer, subject, role, patient_id, actor_id, objects, detail "
            "from data.access_events where kind in ('account-changed', 'partner-changed') "
            "and detail::text like $1 order by seq",
            f"%{marker}%",
        ),
    )
    return [
        {**dict(row), "objects": json.loads(row["objects"]), "detail": json.loads(row["detail"])}
        for row in rows
    ]


def _new_patient(env) -> uuid.UUID:
    pk = uuid.uuid4()
    as_admin(
        env,
        lambda c: c.execute(
            "insert into data.patients (id, display_name, birth_date) "
            "values ($1, 'New Patient', '1990-01-02')",
            pk,
        ),
    )
    return pk


def _me(client, env, subject: str):
    return client.http.post(
        "/graphql",
        json={"query": "{ me { subject role } }"},
        headers={"authorization": f"Bearer {env.token(subject)}"},
    )


def test_an_operator_adds_a_patient_account_that_signs_in_and_the_change_is_audited(env, client):
    patient = _new_patient(env)
    subject = f"admin-patient-{uuid.uuid4()}"
    refused = _me(client, env, subject)
    assert refused.status_code == 401
    added = _cli(
        env,
        "accounts",
        "add",
        "--issuer",
        env.identity.issuer,
        "--subject",
        subject,
        "--role",
        "patient",
        "--patient",
        str(patient),
    )
    assert added.returncode == 0, added.stderr
    account = {
        "issuer": env.identity.issuer,
        "subject": subject,
        "role": "patient",
        "party": str(patient),
        "developer": False,
        "disabled_at": None,
    }
    assert json.loads(added.stdout) == account
    assert _me(client, env, subject).json() == {
        "data": {"me": {"subject": subject, "role": "PATIENT"}}
    }
    assert _events(env, subject) == [
        {
            "kind": "account-changed",
            "issuer": "urn:consultation-gateway:cli",
            "subject": OPERATOR,
            "role": "operator",
            "patient_id": None,
            "actor_id": None,
            "objects": [],
            "detail": {"action": "add", "before": None, "after": account},
        }
    ]
    listed = _cli(env, "accounts", "list", "--role", "patient")
    assert account in json.loads(listed.stdout)


def test_a_disabled_account_is_refused_at_its_next_request_and_can_be_enabled_again(env, client):
    patient = _new_patient(env)
    subject = f"admin-disable-{uuid.uuid4()}"
    add = ["--issuer", env.identity.issuer, "--subject", subject]
    assert (
        _cli(
            env, "accounts", "add", *add, "--role", "patient", "--patient", str(patient)
        ).returncode
        == 0
    )
    assert _me(client, env, subject).status_code == 200
    disabled = _cli(env, "accounts", "disable", *add)
    assert disabled.returncode == 0, disabled.stderr
    assert json.loads(disabled.stdout)["disabled_at"] is not None
    response = _me(client, env, subject)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    again = _cli(env, "accounts", "disable", *add)
    assert_one_line_failure(again, "gateway: the account is already disabled")
    assert subject not in {a["subject"] for a in json.loads(_cli(env, "accounts", "list").stdout)}
    assert subject in {
        a["subject"] for a in json.loads(_cli(env, "accounts", "list", "--disabled").stdout)
    }
    enabled = _cli(env, "accounts", "change", *add, "--enable", "--developer")
    assert enabled.returncode == 0, enabled.stderr
    assert json.loads(enabled.stdout)["developer"] is True
    assert _me(client, env, subject).status_code == 200
    actions = [
        (
            e["detail"]["action"],
            e["detail"]["before"]["disabled_at"] is None if e["detail"]["before"] else None,
        )
        for e in _events(env, subject)
    ]
    assert actions == [("add", None), ("disable", True), ("change", False)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--role", "patient"], "a patient account needs the patient it acts for"),
        (["--role", "clinician"], "a clinician account needs the clinician it acts for"),
        (["--role", "partner"], "a partner account needs the partner it acts for"),
        (
            ["--role", "support", "--patient", "00000000-0000-4000-8000-000000000001"],
            "a support account acts for no patient, clinician or partner",
        ),
        (
            ["--role", "patient", "--patient", "00000000-0000-4000-8000-000000000001"],
            "no patient with id 00000000-0000-4000-8000-000000000001",
        ),
        (
            [
                "--role",
                "patient",
                "--patient",
                "00000000-0000-4000-8000-000000000001",
                "--clinician",
                "00000000-0000-4000-8000-000000000002",
            ],
            "give at most one of --patient, --clinician, --partner",
        ),
        (["--role", "admin"], "Invalid value for '--role'"),
        (["--role", "patient", "--patient", "not-a-uuid"], "'not-a-uuid' is not a valid UUID"),
    ],
)
def test_a_bad_account_is_refused_in_one_line_and_nothing_is_written(env, arguments, message):
    subject = f"admin-bad-{uuid.uuid4()}"
    result = _cli(
        env, "accounts", "add", "--issuer", env.identity.issuer, "--subject", subject, *arguments
    )
    assert_one_line_failure(result, message)
    assert _events(env, subject) == []
    assert (
        as_admin(
            env,
            lambda c: c.fetchval("select count(*) from data.accounts where subject = $1", subject),
        )
        == 0
    )


def test_an_existing_account_is_not_added_twice_nor_changed_to_what_it_is(env):
    subject = env.patients()[0][0]
    patient = env.patients()[0][1]
    args = ["--issuer", env.identity.issuer, "--subject", subject]
    twice = _cli(env, "accounts", "add", *args, "--role", "patient", "--patient", str(patient))
    assert_one_line_failure(
        twice, f"an account for issuer '{env.identity.issuer}' and subject '{subject}' exists"
    )
    same = _cli(env, "accounts", "change", *args, "--no-developer")
    assert_one_line_failure(same, "nothing changed: the account is already so")
    nothing = _cli(env, "accounts", "change", *args)
    assert_one_line_failure(
        nothing, "nothing to change: give --developer/--no-developer or --enable"
    )
    unknown = _cli(env, "accounts", "disable", "--issuer", "x", "--subject", "nobody")
    assert_one_line_failure(unknown, "no account for issuer 'x' and subject 'nobody'")
    assert _events(env, subject) == []


def test_an_operator_adds_a_partner_and_its_client_which_reads_by_consent_until_disabled(
    env, client
):
    from tests.support.actors import Grants, partner_token

    client_id = f"pharmacy-{uuid.uuid4()}"
    added = _cli(
        env,
        "partners",
        "add",
        "--name",
        "Corner Pharmacy",
        "--client-id",
        client_id,
        "--scope",
        "patient/Consultation.rs",
        "--redirect-uri",
        "https://pharmacy.example/consent/done",
        "--redirect-uri",
        "http://localhost:8080/cb",
    )
    assert added.returncode == 0, added.stderr
    partner = json.loads(added.stdout)
    assert partner == {
        "id": partner["id"],
        "name": "Corner Pharmacy",
        "client_id": client_id,
        "allowed_scopes": ["patient/Consultation.rs"],
        "redirect_uris": ["http://localhost:8080/cb", "https://pharmacy.example/consent/done"],
        "disabled_at": None,
        # What its consent links name (docs/PARTNERS.md).
        "graphql_id": encode_global_id("Partner", uuid.UUID(partner["id"])),
    }
    assert partner in json.loads(_cli(env, "partners", "list").stdout)
    account = _cli(
        env,
        "accounts",
        "add",
        "--issuer",
        env.identity.issuer,
        "--subject",
        client_id,
        "--role",
        "partner",
        "--partner",
        partner["id"],
    )
    assert account.returncode == 0, account.stderr
    subject, patient = env.patients()[1]
    grants = Grants(env)
    try:
        grants.consent(patient, uuid.UUID(partner["id"]), ["patient/Consultation.rs"])
        token = partner_token(env, client_id, "patient/Consultation.rs")
        page = client.post("{ consultations(first: 50) { edges { node { id } } } }", token)
        assert len(page.json()["data"]["consultations"]["edges"]) == len(
            env.truth.consultations_of_patient[patient]
        )
        offered = client.execute("{ partners { id name } }", env.token(subject))
        assert "Corner Pharmacy" in {p["name"] for p in offered["data"]["partners"]}
        disabled = _cli(env, "partners", "disable", "--id", partner["id"])
        assert disabled.returncode == 0, disabled.stderr
        refused = client.post("{ consultations(first: 50) { edges { node { id } } } }", token)
        assert refused.status_code == 401
        offered = client.execute("{ partners { id name } }", env.token(subject))
        assert "Corner Pharmacy" not in {p["name"] for p in offered["data"]["partners"]}
    finally:
        grants.close()
    assert [(e["kind"], e["detail"]["action"]) for e in _events(env, partner["id"])] == [
        ("partner-changed", "add"),
        ("account-changed", "add"),
        ("partner-changed", "disable"),
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--name", " "], "a partner needs a name patients will recognise"),
        (["--name", "P", "--scope", "patient/*.rs"], "unknown SMART scope 'patient/*.rs'"),
        (
            ["--name", "P", "--redirect-uri", "http://pharmacy.example/cb"],
            "redirect URI 'http://pharmacy.example/cb': an absolute https URL (http only for "
            "localhost)",
        ),
        (["--name", "P", "--redirect-uri", "/relative"], "an absolute https URL"),
        (
            ["--name", "P", "--redirect-uri", "https://pharmacy.example/cb#x"],
            "redirect URI 'https://pharmacy.example/cb#x': no fragment",
        ),
        (["--name", "P", "--client-id", " "], "a client id cannot be empty"),
    ],
)
def test_a_bad_partner_is_refused_in_one_line_and_nothing_is_written(env, arguments, message):
    before = as_admin(env, lambda c: c.fetchval("select count(*) from data.partners"))
    result = _cli(env, "partners", "add", *arguments)
    assert_one_line_failure(result, message)
    assert as_admin(env, lambda c: c.fetchval("select count(*) from data.partners")) == before


def test_a_client_id_belongs_to_one_partner(env):
    client_id = f"insurer-{uuid.uuid4()}"
    first = json.loads(_cli(env, "partners", "add", "--name", "A", "--client-id", client_id).stdout)
    second = _cli(env, "partners", "add", "--name", "B", "--client-id", client_id)
    assert_one_line_failure(second, f"client id '{client_id}' belongs to partner {first['id']}")
    other = json.loads(_cli(env, "partners", "add", "--name", "C").stdout)
    taken = _cli(env, "partners", "change", "--id", other["id"], "--client-id", client_id)
    assert_one_line_failure(taken, f"client id '{client_id}' belongs to partner {first['id']}")
    renamed = _cli(env, "partners", "change", "--id", other["id"], "--name", "C Renamed")
    assert json.loads(renamed.stdout)["name"] == "C Renamed"


def test_the_commands_refuse_a_database_not_migrated_as_this_gateway_expects(env, postgres_url):
    import asyncio

    from gateway.data.migrate import apply_migrations, available_migrations

    fresh = _fresh_database(postgres_url)

    async def on_fresh(*statements: str, migrate: bool = False) -> None:
        connection = await asyncpg.connect(fresh)
        try:
            if migrate:
                await apply_migrations(connection)
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    never = gateway("accounts", "list", "--database-url", fresh)
    assert_one_line_failure(
        never, "gateway: the database has never been migrated: run `gateway migrate` first"
    )
    asyncio.run(
        on_fresh(
            "delete from public.schema_migrations where version = '0013_administration'",
            migrate=True,
        )
    )
    behind = gateway("partners", "list", "--database-url", fresh)
    assert_one_line_failure(
        behind, "gateway: the database lacks migrations 0013_administration: run `gateway migrate`"
    )
    asyncio.run(
        on_fresh(
            "insert into public.schema_migrations (version, checksum) values "
            "('0013_administration', 'x'), ('9999_future', 'y')"
        )
    )
    newer = gateway("accounts", "list", "--database-url", fresh)
    assert_one_line_failure(
        newer, "gateway: the database has migrations this gateway does not know (9999_future)"
    )
    asyncio.run(on_fresh("delete from public.schema_migrations where version = '9999_future'"))
    changed = gateway("accounts", "list", "--database-url", fresh)
    assert_one_line_failure(
        changed, "gateway: the database's migrations 0013_administration differ from this gateway's"
    )
    # A function changed by hand (here: everyone is support) is a database this gateway refuses
    # to administer until `gateway migrate` puts the definitions back.
    asyncio.run(
        on_fresh(
            "update public.schema_migrations set checksum = "
            f"'{available_migrations()[12].checksum}' where version = '0013_administration'",
            "create or replace function api.scope_role() returns text language sql stable "
            "parallel safe as $$ select 'support' $$",
        )
    )
    drifted = gateway("accounts", "list", "--database-url", fresh)
    assert_one_line_failure(
        drifted,
        "gateway: the database's functions, policies or privileges differ from this gateway's "
        "definitions: run `gateway migrate`",
    )


def test_administrative_events_keep_the_chain_intact_export_as_fhir_and_show_to_auditors(
    env, client
):
    partner = json.loads(_cli(env, "partners", "add", "--name", "Chain Check").stdout)

    async def verify(connection):
        return await verify_chain(connection)

    assert as_admin(env, verify).intact
    row = as_admin(
        env,
        lambda c: c.fetchrow(
            "select * from data.access_events where kind = 'partner-changed' "
            "and detail::text like $1",
            f"%{partner['id']}%",
        ),
    )
    event = to_audit_event(row)
    assert (event["action"], event["subtype"][0]["code"], event["outcomeDesc"]) == (
        "U",
        "update",
        "partner changed by an operator",
    )
    assert event["agent"][0]["who"] == {
        "identifier": {"system": "urn:consultation-gateway:cli", "value": OPERATOR}
    }
    assert event["entity"] == [
        {
            "what": {
                "identifier": {"system": "urn:consultation-gateway:Partner", "value": partner["id"]}
            },
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object",
            },
            "detail": [{"type": "action", "valueString": "add"}],
        }
    ]
    auditor = as_admin(
        env,
        lambda c: c.fetchval("select subject from data.accounts where role = 'auditor' limit 1"),
    )
    body = client.execute(
        "{ accessLog(first: 100) { edges { node { kind accessorRole accessorSubject patientId "
        "objects { id } } } } }",
        env.token(auditor),
    )
    assert "errors" not in body
    changes = [
        edge["node"]
        for edge in body["data"]["accessLog"]["edges"]
        if edge["node"]["kind"] == "PARTNER_CHANGED"
    ]
    assert {
        "kind": "PARTNER_CHANGED",
        "accessorRole": None,
        "accessorSubject": OPERATOR,
        "patientId": None,
        "objects": [],
    } in changes


def test_the_engine_refuses_what_the_command_line_cannot_send(env):
    """Inputs click already refuses, checked again where the change is made."""

    async def attempt(connection):
        with pytest.raises(AdminError) as role:
            await admin.add_account(
                connection, operator="o", issuer="i", subject="s", role="root", party=None
            )
        with pytest.raises(AdminError) as empty:
            await admin.add_account(
                connection, operator="o", issuer=" ", subject="s", role="support", party=None
            )
        return role.value.message, empty.value.message

    assert as_admin(env, attempt) == (
        "unknown role 'root': one of patient, clinician, support, partner, auditor",
        "an account needs a non-empty issuer and subject",
    )
