"""Each lower layer on its own, against an independent model of the policy.

Layer 2 alone: every api.* function that returns patient data, called by the superuser (row-level
security does not apply to it) with the exact statement text of ``gateway.data.queries`` and the
arguments the loaders pass (role, actor, token scopes, ...), must still return exactly the rows
the caller may see, each with the grant it was seen under. A loader whose SQL forgot the patient
predicate would otherwise pass the whole suite, hidden by row-level security.

Layer 3 alone: the application role's unfiltered ``select`` of every patient-data table, under the
scope ``api.enter_scope`` sets, returns exactly what the row-level-security policies allow.

The truth is a model of the policy in Python over every row, read as superuser in the same
snapshot; it shares no code or SQL with the gateway. Two tests break a copy of a function and of
a policy to show the comparison fails when a predicate is missing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from gateway.data import queries
from gateway.policy.scopes import ALL, CONSULTATION, PATIENT, RECORDING
from tests.support.executors import trusted
from tests.support.leak_world import (
    CONSULTATIONS as CONSULTATIONS_PLAN,
)
from tests.support.leak_world import (
    World,
    admin,
    drop_world,
    insert_break_glass,
    insert_consent,
    make_world,
)

LOG_KINDS = {"disclosure", "media", "consent-granted", "consent-revoked", "break-glass-opened"}
UNLIMITED = 10_000_000


@dataclass(frozen=True)
class Who:
    """A caller as the loaders pass it: role, actor, token scopes (sorted)."""

    name: str
    role: str
    actor: UUID | None
    scopes: tuple[str, ...] = ()


# name -> (role, world party or None, token scopes); the world's grants are made below.
CALLERS = {
    "patient": ("patient", "ana", ()),
    "another-patient": ("patient", "cy", ()),
    "clinician-who-conducted": ("clinician", "dr_a", ()),
    "clinician-under-break-glass": ("clinician", "dr_c", ()),
    "clinician-with-expired-break-glass": ("clinician", "dr_b", ()),
    "clinician-with-revoked-break-glass": ("clinician", "dr_d", ()),
    "support": ("support", None, ()),
    "partner-with-consent-and-scopes": ("partner", "pa_full", ALL),
    "partner-with-consent-token-lacking-recordings": (
        "partner",
        "pa_full",
        (CONSULTATION, PATIENT),
    ),
    "partner-with-consent-token-without-scopes": ("partner", "pa_full", ()),
    "partner-with-narrower-consents": ("partner", "pa_some", ALL),
    "partner-with-revoked-consent": ("partner", "pa_revoked", ALL),
    "partner-with-expired-consent": ("partner", "pa_expired", ALL),
    "partner-without-consent": ("partner", "pa_none", ALL),
    "auditor": ("auditor", None, ()),
    "unknown-role": ("nosuchrole", None, ()),
}


@pytest.fixture(scope="module")
def world(env):
    made = make_world(env, "layers")
    p, c, q = made.patients, made.clinicians, made.partners

    async def grants(connection):
        await insert_break_glass(connection, c["dr_c"], p["cy"])
        await insert_break_glass(connection, c["dr_c"], p["ben"])  # and conducted one of Ben's
        await insert_break_glass(connection, c["dr_b"], p["ben"], expired=True)
        revoked = await insert_break_glass(connection, c["dr_d"], p["ana"])
        await connection.execute(
            "update data.break_glass_grants set revoked_at = now() where id = $1", revoked
        )
        await insert_consent(connection, p["ana"], q["pa_full"], ALL)
        await insert_consent(connection, p["ben"], q["pa_some"], [CONSULTATION])
        await insert_consent(connection, p["cy"], q["pa_some"], [RECORDING, PATIENT])
        await insert_consent(connection, p["ana"], q["pa_revoked"], ALL, revoked=True)
        await insert_consent(connection, p["ben"], q["pa_expired"], ALL, expired=True)
        # Audit events about Ana and Ben, of kinds her log shows and of kinds it does not.
        events = [
            {
                "request_id": made.tag,
                "kind": kind,
                "issuer": made.issuer,
                "subject": made.tag,
                "role": "clinician",
                "patient_id": str(patient),
            }
            for kind in ("disclosure", "denial", "alert", "media")
            for patient in (p["ana"], p["ben"])
        ]
        await connection.execute(queries.RECORD_ACCESS_EVENTS, json.dumps(events), [])

    asyncio.run(admin(env, grants))
    yield made
    drop_world(env, made)


def who(world: World, name: str) -> Who:
    role, party, scopes = CALLERS[name]
    actor = None
    if party is not None:
        actor = {**world.patients, **world.clinicians, **world.partners}[party]
    return Who(name, role, actor, tuple(sorted(scopes)))


# --- the model: every row, read as superuser, and the policy written out in Python --------------


@dataclass
class Snapshot:
    now: datetime
    consultations: list[Any]
    recordings: list[Any]
    patients: list[Any]
    consents: list[Any]
    grants: list[Any]
    events: list[Any]

    @classmethod
    async def read(cls, connection: asyncpg.Connection, *, events: bool = True) -> Snapshot:
        fetch = connection.fetch
        return cls(
            now=await connection.fetchval("select now()"),
            consultations=await fetch(
                "select id, patient_id, clinician_id from data.consultations"
            ),
            recordings=await fetch("select id, consultation_id, patient_id from data.recordings"),
            patients=await fetch("select id from data.patients"),
            consents=await fetch(
                "select id, patient_id, partner_id, scopes, expires_at, revoked_at "
                "from data.consents"
            ),
            grants=await fetch(
                "select id, clinician_id, patient_id, reason, expires_at, revoked_at "
                "from data.break_glass_grants"
            ),
            events=await fetch("select id, seq, patient_id, kind from data.access_events")
            if events
            else [],
        )


class Model:
    """What ``who`` may see, by the policy of docs/POLICY.md, row by row."""

    def __init__(self, snapshot: Snapshot, caller: Who) -> None:
        self.s = snapshot
        self.who = caller
        self.consultation_of = {c["id"]: c for c in snapshot.consultations}

    def _live(self, row: Any) -> bool:
        return row["revoked_at"] is None and self.s.now < row["expires_at"]

    def consent(self, patient: UUID, scope: str) -> Any | None:
        if self.who.role != "partner":
            return None
        for k in self.s.consents:
            if (
                k["partner_id"] == self.who.actor
                and k["patient_id"] == patient
                and self._live(k)
                and scope in k["scopes"]
            ):
                return k
        return None

    def consenting(self) -> set[UUID]:
        """Patients with a live consent (any scope) to this partner."""
        return {
            k["patient_id"]
            for k in self.s.consents
            if self.who.role == "partner" and k["partner_id"] == self.who.actor and self._live(k)
        }

    def break_glass(self, patient: UUID) -> Any | None:
        if self.who.role != "clinician":
            return None
        for g in self.s.grants:
            if g["clinician_id"] == self.who.actor and g["patient_id"] == patient and self._live(g):
                return g
        return None

    def conducted_any(self, patient: UUID) -> bool:
        return self.who.role == "clinician" and any(
            c["patient_id"] == patient and c["clinician_id"] == self.who.actor
            for c in self.s.consultations
        )

    # Layer 2: the grant a row is seen under, (consent scopes, break-glass reason, granted), or
    # None.
    def grant(self, patient: UUID, clinician: UUID | None, needs: str) -> tuple | None:
        role, actor = self.who.role, self.who.actor
        if role == "patient":
            return (None, None, "own") if patient == actor else None
        if role == "clinician":
            if clinician is not None and clinician == actor:
                return (None, None, "conducted")
            emergency = self.break_glass(patient)
            return (None, emergency["reason"], "break-glass") if emergency else None
        if role == "support":
            return (None, None, "everyone") if needs in (CONSULTATION, PATIENT) else None
        if role == "partner":
            k = self.consent(patient, needs)
            if k is None or needs not in self.who.scopes:
                return None
            return (tuple(sorted(set(k["scopes"]) & set(self.who.scopes))), None, "consent")
        return None

    def consultations(self, listed: bool = False) -> list[tuple]:
        rows = []
        for c in self.s.consultations:
            seen = self.grant(c["patient_id"], c["clinician_id"], CONSULTATION)
            if seen is None or (listed and not self.listed(c)):
                continue
            rows.append((c["id"], *seen))
        return sorted(rows, key=str)

    def listed(self, c: Any) -> bool:
        """The caller's own list (``consultations``): no break-glass rows, consented patients."""
        role, actor = self.who.role, self.who.actor
        return {
            "patient": c["patient_id"] == actor,
            "clinician": c["clinician_id"] == actor,
            "support": True,
            "partner": c["patient_id"] in self.consenting(),
        }.get(role, False)

    def recordings(self) -> list[tuple]:
        rows = []
        for r in self.s.recordings:
            c = self.consultation_of[r["consultation_id"]]
            seen = self.grant(c["patient_id"], c["clinician_id"], RECORDING)
            if seen is not None:
                rows.append((r["id"], *seen))
        return sorted(rows, key=str)

    def patients(self) -> list[tuple]:
        rows = []
        for p in self.s.patients:
            if self.conducted_any(p["id"]):
                seen = (None, None, "conducted")
            else:
                seen = self.grant(p["id"], None, PATIENT)
            if seen is not None:
                rows.append((p["id"], *seen))
        return sorted(rows, key=str)

    def access_log(self) -> list[int]:
        role, actor = self.who.role, self.who.actor
        return sorted(
            e["seq"]
            for e in self.s.events
            if e["seq"] is not None
            and (
                (role == "patient" and e["patient_id"] == actor and e["kind"] in LOG_KINDS)
                or role == "auditor"
            )
        )

    def consents_of(self) -> list[UUID]:
        return sorted(
            (
                k["id"]
                for k in self.s.consents
                if self.who.role == "patient" and k["patient_id"] == self.who.actor
            ),
            key=str,
        )

    # Layer 3: what each table's row-level-security policy lets the scope see.
    def rls_consultation(self, c: Any) -> bool:
        role, actor = self.who.role, self.who.actor
        if role == "patient":
            return c["patient_id"] == actor
        if role == "clinician":
            return c["clinician_id"] == actor or self.break_glass(c["patient_id"]) is not None
        if role == "support":
            return True
        if role == "partner":
            return CONSULTATION in self.who.scopes and bool(
                self.consent(c["patient_id"], CONSULTATION)
            )
        return False

    def rls(self, table: str) -> list[Any]:
        role, actor, s = self.who.role, self.who.actor, self.s
        if table == "data.consultations":
            ids = [c["id"] for c in s.consultations if self.rls_consultation(c)]
        elif table == "data.recordings":
            ids = [
                r["id"]
                for r in s.recordings
                if (
                    role in ("patient", "clinician")
                    and self.rls_consultation(self.consultation_of[r["consultation_id"]])
                )
                or (
                    role == "partner"
                    and RECORDING in self.who.scopes
                    and bool(self.consent(r["patient_id"], RECORDING))
                )
            ]
        elif table == "data.patients":
            ids = [
                p["id"]
                for p in s.patients
                if (role == "patient" and p["id"] == actor)
                or (
                    role == "clinician"
                    and any(
                        c["patient_id"] == p["id"] and self.rls_consultation(c)
                        for c in s.consultations
                    )
                )
                or role == "support"
                or (
                    role == "partner"
                    and PATIENT in self.who.scopes
                    and bool(self.consent(p["id"], PATIENT))
                )
            ]
        elif table == "data.consents":
            ids = [
                k["id"]
                for k in s.consents
                if (role == "patient" and k["patient_id"] == actor)
                or (role == "partner" and k["partner_id"] == actor)
            ]
        elif table == "data.break_glass_grants":
            ids = [
                g["id"]
                for g in s.grants
                if (role == "clinician" and g["clinician_id"] == actor)
                or (role == "patient" and g["patient_id"] == actor)
            ]
        elif table == "data.access_events":
            ids = [
                e["id"]
                for e in s.events
                if (role == "patient" and e["patient_id"] == actor) or role == "auditor"
            ]
        else:
            raise AssertionError(table)
        return sorted(ids, key=str)


# --- layer 2: the api functions as the superuser ---------------------------------------------


def _grant_columns(row: Any) -> tuple:
    scopes = row["consent_scopes"]
    return (
        tuple(scopes) if scopes is not None else None,
        row["break_glass_reason"],
        row["granted"],
    )


# function -> (statement text, the loader's arguments after (role, actor, scopes), the model's
# expectation, what identifies a returned row)
FUNCTIONS = {
    "consultations_by_id": (
        queries.CONSULTATIONS_BY_ID,
        lambda s: [[c["id"] for c in s.consultations]],
        lambda m: m.consultations(),
        lambda r: (r["id"], *_grant_columns(r)),
    ),
    "consultations_page": (
        queries.CONSULTATIONS_PAGE,
        lambda s: [UNLIMITED, None, None],
        lambda m: m.consultations(listed=True),
        lambda r: (r["id"], *_grant_columns(r)),
    ),
    "consultations_by_patient": (
        queries.CONSULTATIONS_BY_PATIENT,
        lambda s: [[p["id"] for p in s.patients]],
        lambda m: m.consultations(),
        lambda r: (r["id"], *_grant_columns(r)),
    ),
    "recordings_by_consultation": (
        queries.RECORDINGS_BY_CONSULTATION,
        lambda s: [[c["id"] for c in s.consultations]],
        lambda m: m.recordings(),
        lambda r: (r["id"], *_grant_columns(r)),
    ),
    "recordings_by_id": (
        queries.RECORDINGS_BY_ID,
        lambda s: [[r["id"] for r in s.recordings]],
        lambda m: m.recordings(),
        lambda r: (r["id"], *_grant_columns(r)),
    ),
    "patients_by_id": (
        queries.PATIENTS_BY_ID,
        lambda s: [[p["id"] for p in s.patients]],
        lambda m: m.patients(),
        lambda r: (r["id"], *_grant_columns(r)),
    ),
    "access_events_page": (
        queries.ACCESS_EVENTS_PAGE,
        lambda s: [UNLIMITED, None, False, False],
        lambda m: m.access_log(),
        lambda r: r["seq"],
    ),
    "consents_of": (
        queries.CONSENTS_OF,
        None,  # (role, actor) only
        lambda m: m.consents_of(),
        lambda r: r["id"],
    ),
}


async def _layer2(
    connection: asyncpg.Connection, caller: Who, function: str, sql: str | None = None
):
    """(what the function returned, what the model expects), in one snapshot, as superuser."""
    statement, arguments, expected, identify = FUNCTIONS[function]
    async with connection.transaction(isolation="repeatable_read"):
        snapshot = await Snapshot.read(connection, events=function == "access_events_page")
        if arguments is None:
            args = [caller.role, caller.actor]
        else:
            args = [caller.role, caller.actor, list(caller.scopes), *arguments(snapshot)]
        rows = await connection.fetch(sql or statement, *args)
    key = int if function == "access_events_page" else str
    return sorted((identify(r) for r in rows), key=key), expected(Model(snapshot, caller))


# The functions that change access, each with its role guard proven alone below.
CHANGES = {
    "grant_consent": queries.GRANT_CONSENT,
    "revoke_consent": queries.REVOKE_CONSENT,
    "open_consent_request": queries.OPEN_CONSENT_REQUEST,
    "answer_consent_request": queries.ANSWER_CONSENT_REQUEST,
    "open_break_glass": queries.OPEN_BREAK_GLASS,
}
CONSENT_PAGE = "https://layers.example/callback"


def test_every_function_that_returns_patient_rows_is_checked_here():
    """The statements under test come from the data layer's own list (minus those that return
    no patient rows, each named with why in tests.support.sabotage): a new loader or change without
    a test here fails."""
    from tests.support.sabotage import patient_row_statements

    checked = {FUNCTIONS[f][0] for f in FUNCTIONS} | set(CHANGES.values())
    assert checked == set(patient_row_statements().values())


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_an_api_function_called_past_row_level_security_returns_only_the_callers_rows(
    env, world, function, caller
):
    returned, expected = asyncio.run(admin(env, lambda c: _layer2(c, who(world, caller), function)))
    assert returned == expected


def test_the_world_gives_every_caller_something_to_see_and_something_to_miss(env, world):
    """Guards the matrix against passing vacuously: each function shows rows to some callers and
    hides rows from others."""

    async def work(connection):
        seen = {}
        for function in FUNCTIONS:
            for caller in CALLERS:
                _, expected = await _layer2(connection, who(world, caller), function)
                seen[(function, caller)] = len(expected)
        return seen

    seen = asyncio.run(admin(env, work))
    for function in FUNCTIONS:
        counts = [seen[(function, caller)] for caller in CALLERS]
        assert max(counts) > 0 and min(counts) == 0, function
    assert (
        seen[("consultations_by_id", "clinician-under-break-glass")]
        > seen[("consultations_page", "clinician-under-break-glass")]
    )
    assert seen[("recordings_by_id", "partner-with-narrower-consents")] > 0
    assert seen[("consultations_by_id", "partner-with-narrower-consents")] > 0
    assert seen[("patients_by_id", "partner-with-consent-token-without-scopes")] == 0


def test_the_layer_2_comparison_fails_for_a_copy_of_a_function_without_its_predicate(env, world):
    """The copy returns every consultation asked for, as a loader that forgot its WHERE would."""
    schema = f"leak_scratch_{secrets.token_hex(4)}"
    broken = queries.CONSULTATIONS_BY_ID.replace("api.consultations_by_id", f"{schema}.by_id")
    caller = who(world, "patient")

    async def work(connection):
        await connection.execute(f"create schema {schema}")
        try:
            await connection.execute(
                f"""create function {schema}.by_id(
                        p_role text, p_actor uuid, p_scopes text[], p_ids uuid[])
                    returns table (consultation data.consultations, consent_scopes text[],
                                   break_glass_reason text, granted text)
                    language sql stable as $$
                    select c, null::text[], null::text, 'own' from data.consultations c
                    where c.id = any(p_ids) $$"""
            )
            return await _layer2(connection, caller, "consultations_by_id", broken)
        finally:
            await connection.execute(f"drop schema {schema} cascade")

    returned, expected = asyncio.run(admin(env, work))
    assert returned != expected
    extra = {row[0] for row in returned} - {row[0] for row in expected}
    foreign = asyncio.run(
        admin(
            env,
            lambda c: c.fetch(
                "select id from data.consultations where patient_id <> $1", caller.actor
            ),
        )
    )
    assert extra == {r["id"] for r in foreign}


# --- layer 3: row-level security under an unfiltered query -----------------------------------

TABLES = [
    "data.patients",
    "data.consultations",
    "data.recordings",
    "data.consents",
    "data.break_glass_grants",
    "data.access_events",
]


async def _layer3(app: asyncpg.Connection, superuser: asyncpg.Connection, caller: Who, table: str):
    async with superuser.transaction(isolation="repeatable_read"):
        snapshot = await Snapshot.read(superuser, events=table == "data.access_events")
    async with app.transaction():
        await app.execute(
            "select api.enter_scope($1, $2, $3)", caller.role, caller.actor, list(caller.scopes)
        )
        rows = await app.fetch(f"select id from {table}")
    return sorted((r["id"] for r in rows), key=str), Model(snapshot, caller).rls(table)


@pytest.mark.parametrize("caller", list(CALLERS))
def test_an_unfiltered_query_of_every_patient_data_table_returns_only_what_the_policies_allow(
    env, world, caller
):
    async def work():
        app = await asyncpg.connect(env.app_url)
        superuser = await asyncpg.connect(env.admin_url)
        try:
            return {
                table: await _layer3(app, superuser, who(world, caller), table) for table in TABLES
            }
        finally:
            await app.close()
            await superuser.close()

    for table, (returned, expected) in asyncio.run(work()).items():
        assert returned == expected, table


def test_the_layer_3_comparison_fails_when_a_policy_lets_everything_through(env, world):
    """In one rolled-back transaction: the consultations policy replaced by ``using (true)``,
    then the application role's view compared as above."""
    caller = who(world, "patient")

    async def work(connection):
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("drop policy consultation_rows on data.consultations")
            await connection.execute(
                "create policy leaky on data.consultations for select to gateway_app using (true)"
            )
            snapshot = await Snapshot.read(connection, events=False)
            await connection.execute("set local role gateway_app")
            await connection.execute(
                "select api.enter_scope($1, $2, $3)", caller.role, caller.actor, []
            )
            rows = await connection.fetch("select id from data.consultations")
        finally:
            await transaction.rollback()
        return sorted((r["id"] for r in rows), key=str), Model(snapshot, caller).rls(
            "data.consultations"
        )

    returned, expected = asyncio.run(admin(env, work))
    assert set(expected) < set(returned)
    still = asyncio.run(
        admin(
            env,
            lambda c: c.fetchval(
                "select count(*) from pg_policies where tablename = 'consultations' "
                "and policyname = 'consultation_rows'"
            ),
        )
    )
    assert still == 1  # rolled back


# --- layers 2 and 3 alone, end to end, on both executors --------------------------------------
# The same comparisons through the gateway over HTTP, on each executor (tests.support.executors):
# the field gate allows every field and the exit check finds nothing foreign, so only the layer
# under test filters. Layer 2 alone: every loader statement as the gateway wrote it, run by the
# superuser (no row-level security). Layer 3 alone: every loader statement without its
# predicate, run as the application role in the caller's scope. Whatever the executor, every
# object the caller receives must be one the model lets them see: a plan reads rows only
# through the request's loaders.

HTTP_CALLERS = [name for name in CALLERS if name != "unknown-role"]
RELATED = {
    "consultation": "patient { id } recordings { id }",
    "recording": "consultation { id }",
    "patient": "consultations { id }",
}
_COUNTS = {
    "consultation": sum(len(plan) for plan in CONSULTATIONS_PLAN.values()),
    "recording": sum(n for plan in CONSULTATIONS_PLAN.values() for _, _, n in plan),
    "patient": len(CONSULTATIONS_PLAN),
}
EVERY_ID = trusted(
    "query("
    + ", ".join(f"${kind[0]}{i}: ID!" for kind, n in _COUNTS.items() for i in range(n))
    + ") { "
    + " ".join(
        f"{kind[0]}{i}: {kind}(id: ${kind[0]}{i}) {{ id {RELATED[kind]} }}"
        for kind, n in _COUNTS.items()
        for i in range(n)
    )
    + " }"
)
PAGE_AND_RELATIONS = trusted(
    "{ consultations(first: 100) { edges { node { id "
    "patient { id consultations { id } } recordings { id consultation { id } } } } } }"
)
LOGS = trusted("{ accessLog(first: 100) { edges { cursor node { patientId } } } consents { id } }")


def _world_ids(world: World) -> dict[str, str]:
    """The variables of EVERY_ID: every consultation, recording and patient of the world."""
    consultations = [pk for name in CONSULTATIONS_PLAN for pk in world.consultations[name]]
    recordings = [r for pk in consultations for r in world.recordings[pk]]
    values = {}
    for kind, keys in (
        ("Consultation", consultations),
        ("Recording", recordings),
        ("Patient", [world.patients[name] for name in CONSULTATIONS_PLAN]),
    ):
        for i, pk in enumerate(keys):
            values[f"{kind[0].lower()}{i}"] = world.gid(kind, pk)
    return values


def _received(body: Any) -> dict[str, set]:
    """Every object the response holds, by type (global IDs decoded), and the access events'
    sequence numbers."""
    from gateway.ids import decode_global_id, decode_sequence_cursor

    found: dict[str, set] = {"Consultation": set(), "Recording": set(), "Patient": set()}
    found["Consent"], found["AccessEvent"] = set(), set()

    def walk(value: Any, key: str | None = None) -> None:
        if isinstance(value, dict):
            for k, item in value.items():
                walk(item, k)
        elif isinstance(value, list):
            for item in value:
                walk(item, key)
        elif isinstance(value, str) and key == "id":
            type_name, pk = decode_global_id(value)
            found[type_name].add(pk)
        elif isinstance(value, str) and key == "cursor":
            found["AccessEvent"].add(decode_sequence_cursor(value))

    walk(body.get("data"))
    return found


def _token_of(env, world: World, name: str) -> str:
    role, party, scopes = CALLERS[name]
    subject = world.subject(party or role)
    if role == "partner":
        return env.token(subject, scope=" ".join(sorted(scopes)), azp=subject)
    return env.token(subject)


@pytest.fixture
def layers_off(monkeypatch):
    """The field gate allows everything; the exit check finds nothing foreign."""
    from gateway.authz.exit_check import ExitCheck, ExitQuestions

    monkeypatch.setattr("gateway.authz.field_check.decide", lambda p, s, t, f: [None] * len(f))
    monkeypatch.setattr(ExitCheck, "questions", lambda self, principal, ledger: ExitQuestions())


LOADER_STATEMENTS = [
    queries.CONSULTATIONS_BY_ID,
    queries.CONSULTATIONS_PAGE,
    queries.CONSULTATIONS_BY_PATIENT,
    queries.RECORDINGS_BY_CONSULTATION,
    queries.RECORDINGS_BY_ID,
    queries.PATIENTS_BY_ID,
    queries.ACCESS_EVENTS_PAGE,
    queries.CONSENTS_OF,
]


@pytest.mark.parametrize("layer", [2, 3])
def test_one_lower_layer_alone_keeps_every_foreign_row_out_of_each_executors_responses(
    env, world, executor, manifest, layers_off, layer
):
    from tests.support.sabotage import as_written, sabotaged_gateway, unfiltered, unfiltered_logs

    with sabotaged_gateway(env, executor, manifest) as (client, database):
        if layer == 2:
            database.broken.update(as_written(LOADER_STATEMENTS))
        else:
            replacements = {**unfiltered(), **unfiltered_logs()}
            # Oldest first: the world's consultations (2019) before the seeded ones.
            replacements[queries.CONSULTATIONS_PAGE] = keeping_oldest()
            database.broken.update(replacements)
            database.scoped.update(replacements)
        assert set(database.broken) == set(LOADER_STATEMENTS)
        seen_any = set()
        for name in HTTP_CALLERS:
            caller = who(world, name)
            bodies = [
                client.execute(PAGE_AND_RELATIONS, _token_of(env, world, name)),
                client.execute(EVERY_ID, _token_of(env, world, name), _world_ids(world)),
                client.execute(LOGS, _token_of(env, world, name)),
            ]
            snapshot = asyncio.run(admin(env, lambda c: Snapshot.read(c)))
            model = Model(snapshot, caller)
            if layer == 2:
                allowed = {
                    "Consultation": {row[0] for row in model.consultations()},
                    "Recording": {row[0] for row in model.recordings()},
                    "Patient": {row[0] for row in model.patients()},
                    "Consent": set(model.consents_of()),
                    "AccessEvent": set(model.access_log()),
                }
            else:
                seq_of = {e["id"]: e["seq"] for e in snapshot.events}
                allowed = {
                    "Consultation": set(model.rls("data.consultations")),
                    "Recording": set(model.rls("data.recordings")),
                    "Patient": set(model.rls("data.patients")),
                    "Consent": set(model.rls("data.consents")),
                    "AccessEvent": {seq_of[i] for i in model.rls("data.access_events")},
                }
            for body in bodies:
                for type_name, keys in _received(body).items():
                    assert keys <= allowed[type_name], (name, type_name)
                    if keys:
                        seen_any.add((name, type_name))
        assert set(client.served) == {"plan" if executor == "compiled" else "graphql-core"}
    # Not vacuous: each kind of caller received rows of every kind they may see.
    assert {("patient", t) for t in ("Consultation", "Recording", "Patient", "Consent")} <= seen_any
    assert {
        ("clinician-under-break-glass", "Consultation"),
        ("partner-with-consent-and-scopes", "Recording"),
        ("support", "Patient"),
        ("auditor", "AccessEvent"),
    } <= seen_any


def keeping_oldest():
    from tests.support.sabotage import NO_GRANT, keeping

    return keeping(
        f"select *, {NO_GRANT} from data.consultations order by scheduled_at, id limit $1", 3
    )


# --- layer 2 alone for the changes of access: each function's role guard ---------------------


def _who(world: World) -> str:
    return json.dumps({"request_id": world.tag, "issuer": world.issuer, "subject": world.tag})


async def _change(connection, function: str, role: str, actor, world: World, target) -> tuple:
    """Call one change function as the superuser (no row-level security, no gateway) in a
    transaction rolled back afterwards: (rows returned, what changed in its tables)."""
    from datetime import UTC, datetime, timedelta

    counts = (
        "select (select count(*) from data.consents), "
        "(select count(*) from data.consents where revoked_at is not null), "
        "(select count(*) from data.break_glass_grants), "
        "(select count(*) from data.access_events where kind in "
        "('consent-granted', 'consent-revoked', 'break-glass-opened')), "
        "(select count(*) from data.consent_requests), "
        "(select count(*) from data.consent_requests where answered_at is not null)"
    )
    soon = datetime.now(UTC) + timedelta(days=1)
    args = {
        "grant_consent": [target, [CONSULTATION], soon],
        "revoke_consent": [target],
        "open_consent_request": [target, [CONSULTATION], CONSENT_PAGE, "s", soon],
        "answer_consent_request": [target, True, b"\x00" * 32],
        "open_break_glass": [target, "Unconscious on arrival, history needed", 5],
    }[function]
    transaction = connection.transaction()
    await transaction.start()
    try:
        # Every partner may ask for every scope and send patients back to CONSENT_PAGE.
        await connection.execute(
            "update data.partners set allowed_scopes = $1, redirect_uris = $2",
            list(ALL),
            [CONSENT_PAGE],
        )
        before = tuple(await connection.fetchrow(counts))
        rows = await connection.fetch(CHANGES[function], _who(world), role, actor, *args)
        after = tuple(await connection.fetchrow(counts))
    finally:
        await transaction.rollback()
    return len(rows), tuple(b - a for a, b in zip(before, after, strict=True))


# (function, the role it is for, the actor of that role, the target) of a change that must work.
RIGHT = {
    "grant_consent": ("patient", lambda w: w.patients["ana"], lambda w: w.partners["pa_some"]),
    "revoke_consent": ("patient", lambda w: w.patients["ana"], lambda w: w.extra["ana_consent"]),
    "open_consent_request": (
        "patient",
        lambda w: w.patients["ana"],
        lambda w: w.partners["pa_some"],
    ),
    "answer_consent_request": (
        "patient",
        lambda w: w.patients["ana"],
        lambda w: w.extra["ana_request"],
    ),
    "open_break_glass": ("clinician", lambda w: w.clinicians["dr_a"], lambda w: w.patients["cy"]),
}
# What the right call changes: (consents, revoked consents, break-glass grants, change events,
# consent requests, answered consent requests).
CHANGED = {
    "grant_consent": (1, 0, 0, 1, 0, 0),
    "revoke_consent": (0, 1, 0, 1, 0, 0),
    "open_consent_request": (0, 0, 0, 0, 1, 0),
    # Ana's request is of pa_none, whom she had consented to: the approval replaces that consent.
    "answer_consent_request": (1, 1, 0, 1, 0, 1),
    "open_break_glass": (0, 0, 1, 1, 0, 0),
}
NOTHING = (0, 0, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def ana_consent(env, world):
    async def grant(connection):
        return await insert_consent(
            connection, world.patients["ana"], world.partners["pa_none"], ALL
        )

    async def ask(connection):
        request = uuid4()
        await connection.execute(
            "insert into data.consent_requests (id, patient_id, partner_id, scopes, "
            "redirect_uri, state, consent_expires_at, valid_until) values "
            "($1, $2, $3, $4, $5, 's', now() + interval '7 days', now() + interval '15 minutes')",
            request,
            world.patients["ana"],
            world.partners["pa_none"],
            [CONSULTATION],
            CONSENT_PAGE,
        )
        return request

    world.extra["ana_consent"] = asyncio.run(admin(env, grant))
    world.extra["ana_request"] = asyncio.run(admin(env, ask))
    return world.extra["ana_consent"]


@pytest.mark.parametrize("function", list(CHANGES))
@pytest.mark.parametrize("role", ["patient", "clinician", "support", "partner", "auditor", "root"])
def test_a_change_function_called_past_every_other_lock_refuses_every_other_role(
    env, world, ana_consent, function, role
):
    """The role guard of each api change function alone: called by the superuser (no gateway,
    no MutationPolicy, no row-level security), with the actor of the role it is for, by every
    other role: no row, nothing changed, nothing recorded."""
    right_role, actor, target = RIGHT[function]
    returned, changed = asyncio.run(
        admin(env, lambda c: _change(c, function, role, actor(world), world, target(world)))
    )
    if role == right_role:
        assert (returned, changed) == (1, CHANGED[function])
    else:
        assert (returned, changed) == (0, NOTHING)


def test_revoking_another_patients_consent_past_every_other_lock_changes_nothing(
    env, world, ana_consent
):
    """revoke_consent's row guard alone: Ben, a patient, names Ana's consent."""
    returned, changed = asyncio.run(
        admin(
            env,
            lambda c: _change(
                c, "revoke_consent", "patient", world.patients["ben"], world, ana_consent
            ),
        )
    )
    assert (returned, changed) == (0, NOTHING)


def test_answering_another_patients_consent_request_past_every_other_lock_changes_nothing(
    env, world, ana_consent
):
    """answer_consent_request's row guard alone: Ben, a patient, approves Ana's request."""
    returned, changed = asyncio.run(
        admin(
            env,
            lambda c: _change(
                c,
                "answer_consent_request",
                "patient",
                world.patients["ben"],
                world,
                world.extra["ana_request"],
            ),
        )
    )
    assert (returned, changed) == (0, NOTHING)


async def _redeem(
    connection,
    world: World,
    role: str,
    actor,
    code: bytes,
    state: str = "s",
    times: int = 1,
    lifetime: str = "10 minutes",
) -> tuple:
    """redeem_consent_code called as the superuser (no gateway, no MutationPolicy, no row-level
    security), ``times`` times, rolled back: (the patient returned or the refusal's SQLSTATE, for
    each call; redeemed after)."""
    import hashlib

    transaction = connection.transaction()
    await transaction.start()
    try:
        request = uuid4()
        await connection.execute(
            "insert into data.consent_requests (id, patient_id, partner_id, scopes, "
            "redirect_uri, state, consent_expires_at, valid_until) values ($1, $2, $3, $4, "
            "$5, 's', now() + interval '7 days', now() + interval '15 minutes')",
            request,
            world.patients["ana"],
            world.partners["pa_some"],
            [CONSULTATION],
            CONSENT_PAGE,
        )
        await connection.execute(
            "update data.consent_requests set answered_at = now(), approved = true, "
            "consent_id = $2, code_digest = $3, code_expires_at = now() + $4::text::interval "
            "where id = $1",
            request,
            world.extra["ana_consent"],
            hashlib.sha256(code).digest(),
            lifetime,
        )
        outcomes = []
        for _ in range(times):
            try:
                async with connection.transaction():  # a savepoint: a refusal rolls back here
                    rows = await connection.fetch(
                        queries.REDEEM_CONSENT_CODE,
                        _who(world),
                        role,
                        actor,
                        hashlib.sha256(code).digest(),
                        state,
                    )
                outcomes.append([row["patient_id"] for row in rows])
            except asyncpg.PostgresError as error:
                outcomes.append(error.sqlstate)
        redeemed = await connection.fetchval(
            "select code_redeemed_at is not null from data.consent_requests where id = $1",
            request,
        )
    finally:
        await transaction.rollback()
    return (*outcomes, redeemed)


@pytest.mark.parametrize("role", ["patient", "clinician", "support", "partner", "auditor", "root"])
def test_redeeming_a_consent_code_past_every_other_lock_answers_only_its_partner(
    env, world, ana_consent, role
):
    """redeem_consent_code's guards alone: the code of a request pa_some sent Ana, redeemed with
    pa_some's id as the actor under every role (only a partner's scope may redeem: Ana's id,
    once), and by pa_none (only the partner it was issued to): refused, unredeemed."""
    actor = world.partners["pa_some"]
    outcome = asyncio.run(
        admin(env, lambda c: _redeem(c, world, role, actor, b"the-code", times=2))
    )
    if role == "partner":  # once: row-level security is not what refuses the second call here
        assert outcome == ([world.patients["ana"]], "GW400", True)
    else:
        assert outcome == ("GW400", "GW400", False)
    other = asyncio.run(
        admin(env, lambda c: _redeem(c, world, "partner", world.partners["pa_none"], b"the-code"))
    )
    assert other == ("GW400", False)
    elsewhere = asyncio.run(
        admin(
            env,
            lambda c: _redeem(c, world, "partner", actor, b"the-code", state="another session"),
        )
    )
    assert elsewhere == ("GW400", False)
    late = asyncio.run(
        admin(
            env,
            lambda c: _redeem(c, world, "partner", actor, b"the-code", lifetime="-1 second"),
        )
    )
    assert late == ("GW400", False)


def test_two_grants_at_once_leave_one_consent_in_force(env, world):
    """grant_consent's lock alone: while one grant's transaction is open, a second grant of the
    same patient and partner waits for it, then replaces it. Without the lock the second sees no
    consent to replace and two stay in force ("replaces any earlier consent" broken)."""
    from datetime import UTC, datetime, timedelta

    partner = uuid4()
    ana = world.patients["ana"]
    expires = datetime.now(UTC) + timedelta(days=1)

    async def race():
        first = await asyncpg.connect(env.admin_url)
        second = await asyncpg.connect(env.admin_url)
        try:
            await first.execute("insert into data.partners values ($1, 'Race')", partner)
            transaction = first.transaction()
            await transaction.start()
            await first.fetch(
                queries.GRANT_CONSENT, _who(world), "patient", ana, partner, [CONSULTATION], expires
            )
            waiting = asyncio.create_task(
                second.fetch(
                    queries.GRANT_CONSENT,
                    _who(world),
                    "patient",
                    ana,
                    partner,
                    [RECORDING],
                    expires,
                )
            )
            await asyncio.sleep(0.5)
            blocked = not waiting.done()
            await transaction.commit()
            await waiting
            in_force = await first.fetch(
                "select scopes from data.consents where patient_id = $1 and partner_id = $2 "
                "and revoked_at is null",
                ana,
                partner,
            )
            await first.execute("delete from data.consents where partner_id = $1", partner)
            return blocked, [list(r["scopes"]) for r in in_force]
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(race()) == (True, [[RECORDING]])
