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
from uuid import UUID

import asyncpg
import pytest

from gateway.data import queries
from gateway.policy.scopes import ALL, CONSULTATION, PATIENT, RECORDING
from tests.leak_world import (
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
        await connection.execute(queries.RECORD_ACCESS_EVENTS, json.dumps(events))

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
        lambda s: [UNLIMITED, None],
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


def test_every_function_that_returns_patient_rows_is_checked_here():
    checked = {FUNCTIONS[f][0] for f in FUNCTIONS}
    patient_rows = {
        getattr(queries, name)
        for name in (
            "CONSULTATIONS_BY_ID",
            "CONSULTATIONS_PAGE",
            "CONSULTATIONS_BY_PATIENT",
            "RECORDINGS_BY_CONSULTATION",
            "RECORDINGS_BY_ID",
            "PATIENTS_BY_ID",
            "ACCESS_EVENTS_PAGE",
            "CONSENTS_OF",
        )
    }
    assert checked == patient_rows


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
