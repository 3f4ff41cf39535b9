"""A small world of its own for the leak tests: patients, clinicians, partners, consents and
break-glass grants made for one test module with fresh IDs, so that a test may change, grant,
revoke and expire without colliding with any other test of the shared database, and drop it all
afterwards. Also the independent truth of what the database holds, read as superuser."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from uuid import UUID

import asyncpg

from gateway.ids import encode_global_id

ALL_SCOPES = ("patient/Consultation.rs", "patient/Patient.rs", "patient/Recording.rs")
REASON = "Unconscious on arrival, no next of kin reachable"

# name -> [(clinician name, status, number of recording segments)], scheduled in 2019, so that the
# seeded data's first pages (2026) stay as they were.
CONSULTATIONS = {
    "ana": [("dr_a", "COMPLETED", 2), ("dr_a", "COMPLETED", 1), ("dr_b", "COMPLETED", 1)],
    "ben": [("dr_a", "COMPLETED", 2), ("dr_c", "COMPLETED", 1)],
    "cy": [("dr_b", "COMPLETED", 2), ("dr_b", "SCHEDULED", 0)],
}
CLINICIANS = ("dr_a", "dr_b", "dr_c", "dr_d")
PARTNERS = ("pa_full", "pa_some", "pa_revoked", "pa_expired", "pa_none")


@dataclass
class World:
    tag: str
    issuer: str
    patients: dict[str, UUID] = field(default_factory=dict)
    clinicians: dict[str, UUID] = field(default_factory=dict)
    partners: dict[str, UUID] = field(default_factory=dict)
    consultations: dict[str, list[UUID]] = field(default_factory=dict)
    recordings: dict[UUID, list[UUID]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # rows a test module added

    def subject(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def consultation(self, patient: str, index: int = 0) -> UUID:
        return self.consultations[patient][index]

    def gid(self, type_name: str, pk: UUID) -> str:
        return encode_global_id(type_name, pk)


async def _build(connection: asyncpg.Connection, world: World, media_root: Any) -> None:
    sample = (resources.files("gateway.dev") / "demo_media" / "sample.ogg").read_bytes()
    accounts = []
    for name in ("ana", "ben", "cy"):
        world.patients[name] = uuid.uuid4()
        await connection.execute(
            "insert into data.patients values ($1, $2, '1980-02-03')",
            world.patients[name],
            f"{name.title()} {world.tag}",
        )
        accounts.append((world.subject(name), "patient", world.patients[name], None, None))
    for name in CLINICIANS:
        world.clinicians[name] = uuid.uuid4()
        await connection.execute(
            "insert into data.clinicians values ($1, $2, 'General practice')",
            world.clinicians[name],
            f"Dr {name} {world.tag}",
        )
        accounts.append((world.subject(name), "clinician", None, world.clinicians[name], None))
    for name in PARTNERS:
        world.partners[name] = uuid.uuid4()
        await connection.execute(
            "insert into data.partners values ($1, $2)", world.partners[name], f"{name} {world.tag}"
        )
        accounts.append((world.subject(name), "partner", None, None, world.partners[name]))
    for role in ("support", "auditor"):
        accounts.append((world.subject(role), role, None, None, None))
    await connection.executemany(
        "insert into data.accounts (issuer, subject, role, patient_id, clinician_id, partner_id) "
        "values ($1, $2, $3, $4, $5, $6)",
        [(world.issuer, *account) for account in accounts],
    )
    at = datetime(2019, 3, 4, 9, 0, tzinfo=UTC)
    for patient, plan in CONSULTATIONS.items():
        world.consultations[patient] = []
        for clinician, status, segments in plan:
            pk = uuid.uuid4()
            at += timedelta(hours=7)
            await connection.execute(
                "insert into data.consultations values ($1, $2, $3, $4, $5, 'AUDIO', $6, $7, $8)",
                pk,
                world.patients[patient],
                world.clinicians[clinician],
                at,
                status,
                f"Reason of {patient} {world.tag}",
                f"Summary of {patient}" if status == "COMPLETED" else None,
                f"Notes on {patient}" if status == "COMPLETED" else None,
            )
            world.consultations[patient].append(pk)
            world.recordings[pk] = []
            for index in range(segments):
                world.recordings[pk].append(
                    await add_recording(
                        connection, world.patients[patient], pk, index, media_root, sample
                    )
                )


async def add_recording(
    connection: asyncpg.Connection,
    patient: UUID,
    consultation: UUID,
    index: int,
    media_root: Any = None,
    sample: bytes = b"",
) -> UUID:
    """Insert one audio segment (as superuser: it notifies `recording-added`)."""
    pk = uuid.uuid4()
    key = f"recordings/{patient}/{pk}.ogg"
    await connection.execute(
        "insert into data.recordings values ($1, $2, $3, $4, 'AUDIO', "
        "'2019-03-04T10:00:00Z', 60, 'audio/ogg', $5, $6)",
        pk,
        consultation,
        patient,
        index,
        len(sample),
        key,
    )
    if media_root is not None:
        path = media_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample)
    return pk


async def _drop(connection: asyncpg.Connection, world: World) -> None:
    patients = list(world.patients.values())
    clinicians = list(world.clinicians.values())
    partners = list(world.partners.values())
    async with connection.transaction():
        await connection.execute(
            "delete from data.recordings where patient_id = any($1::uuid[])", patients
        )
        await connection.execute(
            "delete from data.consultations where patient_id = any($1::uuid[])", patients
        )
        await connection.execute(
            "delete from data.consent_requests where patient_id = any($1::uuid[]) "
            "or partner_id = any($2::uuid[])",
            patients,
            partners,
        )
        await connection.execute(
            "delete from data.consents where patient_id = any($1::uuid[]) "
            "or partner_id = any($2::uuid[])",
            patients,
            partners,
        )
        await connection.execute(
            "delete from data.break_glass_grants where patient_id = any($1::uuid[]) "
            "or clinician_id = any($2::uuid[])",
            patients,
            clinicians,
        )
        await connection.execute(
            "delete from data.accounts where issuer = $1 and subject like $2",
            world.issuer,
            f"{world.tag}-%",
        )
        await connection.execute("delete from data.patients where id = any($1::uuid[])", patients)
        await connection.execute(
            "delete from data.clinicians where id = any($1::uuid[])", clinicians
        )
        await connection.execute("delete from data.partners where id = any($1::uuid[])", partners)


async def admin(env: Any, work: Any) -> Any:
    connection = await asyncpg.connect(env.admin_url)
    try:
        return await work(connection)
    finally:
        await connection.close()


def make_world(env: Any, tag: str) -> World:
    world = World(tag=f"{tag}-{uuid.uuid4().hex[:8]}", issuer=env.identity.issuer)
    asyncio.run(admin(env, lambda c: _build(c, world, env.media_root)))
    return world


def drop_world(env: Any, world: World) -> None:
    asyncio.run(admin(env, lambda c: _drop(c, world)))


# --- grants, as superuser ----------------------------------------------------------------------


async def insert_consent(
    connection: asyncpg.Connection,
    patient: UUID,
    partner: UUID,
    scopes: tuple[str, ...] | list[str],
    *,
    revoked: bool = False,
    expired: bool = False,
) -> UUID:
    pk = uuid.uuid4()
    await connection.execute(
        "insert into data.consents (id, patient_id, partner_id, scopes, expires_at) "
        "values ($1, $2, $3, $4, now() + interval '30 days')",
        pk,
        patient,
        partner,
        sorted(scopes),
    )
    if revoked:
        await connection.execute("update data.consents set revoked_at = now() where id = $1", pk)
    if expired:
        await expire_consent(connection, pk)
    return pk


async def expire_consent(connection: asyncpg.Connection, consent: UUID) -> None:
    await connection.execute(
        "update data.consents set granted_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 day' where id = $1",
        consent,
    )


async def insert_break_glass(
    connection: asyncpg.Connection,
    clinician: UUID,
    patient: UUID,
    *,
    expired: bool = False,
) -> UUID:
    pk = uuid.uuid4()
    await connection.execute(
        "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, expires_at) "
        "values ($1, $2, $3, $4, now() + interval '1 hour')",
        pk,
        clinician,
        patient,
        REASON,
    )
    if expired:
        await expire_break_glass(connection, pk)
    return pk


async def expire_break_glass(connection: asyncpg.Connection, grant: UUID) -> None:
    await connection.execute(
        "update data.break_glass_grants set opened_at = now() - interval '2 hours', "
        "expires_at = now() - interval '1 second' where id = $1",
        grant,
    )


# --- the truth, as superuser -------------------------------------------------------------------


@dataclass(frozen=True)
class Owned:
    """Every patient-data row's owner (patients, consultations, recordings, consents,
    break-glass grants), read as superuser: the oracle for 'no foreign id'."""

    owner_of: dict[UUID, UUID]
    type_of: dict[UUID, str]

    def foreign_ids(self, allowed: set[UUID]) -> set[str]:
        """Every ID (raw and global) of a row owned by a patient outside ``allowed``."""
        found: set[str] = set()
        for pk, owner in self.owner_of.items():
            if owner not in allowed:
                found.add(str(pk))
                found.add(encode_global_id(self.type_of[pk], pk))
        return found


async def read_owned(connection: asyncpg.Connection) -> Owned:
    owner_of: dict[UUID, UUID] = {}
    type_of: dict[UUID, str] = {}
    for table, type_name, owner in (
        ("data.patients", "Patient", "id"),
        ("data.consultations", "Consultation", "patient_id"),
        ("data.recordings", "Recording", "patient_id"),
        ("data.consents", "Consent", "patient_id"),
        ("data.consent_requests", "ConsentRequest", "patient_id"),
        ("data.break_glass_grants", "BreakGlassGrant", "patient_id"),
    ):
        for row in await connection.fetch(f"select id, {owner} as owner from {table}"):
            owner_of[row["id"]] = row["owner"]
            type_of[row["id"]] = type_name
    return Owned(owner_of, type_of)


def owned(env: Any) -> Owned:
    return asyncio.run(admin(env, read_owned))


def leaked(value: Any, foreign: set[str]) -> set[str]:
    """The foreign IDs that appear anywhere (any string, any key) in ``value``."""
    from tests.support.json_values import all_strings

    text = "\n".join(all_strings(value))
    return {item for item in foreign if item in text}
