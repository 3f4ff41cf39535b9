"""Deterministic synthetic data: the same arguments always make the same rows and IDs.

Each patient has consultations with clinicians; completed ones have a recording of one to three
segments (audio, then video after a switch of mode, sometimes back). Every patient and clinician
gets an account ``patient-NNNNN`` / ``clinician-NNNN`` under the given issuer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import ConfigurationError
from gateway.ids import encode_global_id
from gateway.policy import scopes

__all__ = ["SeedPlan", "seed_database", "write_demo_media"]

_FIRST = [
    "Ada",
    "Bo",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Goran",
    "Hana",
    "Ivo",
    "Juno",
    "Kofi",
    "Lena",
    "Mira",
    "Nils",
    "Oona",
    "Pia",
    "Quinn",
    "Rafa",
    "Sana",
    "Tomas",
]
_LAST = [
    "Adams",
    "Berg",
    "Costa",
    "Dahl",
    "Ekwueme",
    "Fischer",
    "Garcia",
    "Holm",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lind",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Sato",
]
_SPECIALTIES = ["General practice", "Dermatology", "Psychiatry", "Paediatrics", "Cardiology"]
_REASONS = [
    "Persistent cough",
    "Skin rash",
    "Follow-up on blood pressure",
    "Sleep problems",
    "Medication review",
    "Headaches",
    "Back pain",
    "Anxiety",
    "Child fever",
    "Allergy",
]
_SUMMARIES = [
    "Advised rest and fluids.",
    "Prescription renewed.",
    "Referred to a specialist.",
    "Lab tests ordered.",
    "Symptoms improving; review in two weeks.",
]
_NOTES = [
    "Consider differential diagnosis.",
    "Patient anxious about results.",
    "History of non-adherence.",
    "Discussed lifestyle changes at length.",
]
_PARTNERS = [
    "Northside Pharmacy",
    "Meridian Health Insurance",
    "Harbour Care Group",
    "Lakeside Physiotherapy",
]
_ALL_SCOPES = sorted(scopes.ALL)
_CONTENT_TYPES = {"AUDIO": ("audio/ogg", "ogg"), "VIDEO": ("video/webm", "webm")}


@dataclass(frozen=True, slots=True)
class SeedPlan:
    patients: int = 8
    clinicians: int = 3
    consultations_per_patient: int = 4
    seed: int = 1
    partners: int = 2


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


async def seed_database(
    connection: asyncpg.Connection, plan: SeedPlan, issuer: str
) -> list[dict[str, str | None]]:
    """Insert ``plan``'s data into an empty database; return its principals."""
    if plan.patients < 1 or plan.clinicians < 1 or plan.consultations_per_patient < 0:
        raise ConfigurationError("seed: need at least one patient and one clinician")
    if await connection.fetchval("select exists (select 1 from data.patients)"):
        raise ConfigurationError("seed: the database already holds patients; seed an empty one")
    rng = random.Random(plan.seed)  # noqa: S311 - synthetic data, reproducible by design
    base = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    clinicians = [
        (_uuid(rng), f"Dr {_name(rng)}", rng.choice(_SPECIALTIES)) for _ in range(plan.clinicians)
    ]
    patients: list[tuple[UUID, str, date]] = []
    consultations: list[tuple[Any, ...]] = []
    recordings: list[tuple[Any, ...]] = []
    accounts: list[tuple[str, str, str, UUID | None, UUID | None, UUID | None]] = []
    principals: list[dict[str, str | None]] = []
    for number, clinician in enumerate(clinicians, start=1):
        subject = f"clinician-{number:04d}"
        accounts.append((issuer, subject, "clinician", None, clinician[0], None))
        principals.append(
            {
                "subject": subject,
                "role": "clinician",
                "id": encode_global_id("Clinician", clinician[0]),
            }
        )
    for number in range(1, plan.patients + 1):
        patient_id = _uuid(rng)
        birth = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 30000))
        patients.append((patient_id, _name(rng), birth))
        subject = f"patient-{number:05d}"
        accounts.append((issuer, subject, "patient", patient_id, None, None))
        principals.append(
            {"subject": subject, "role": "patient", "id": encode_global_id("Patient", patient_id)}
        )
        for _ in range(plan.consultations_per_patient):
            consultation_id = _uuid(rng)
            clinician_id = rng.choice(clinicians)[0]
            at = base + timedelta(minutes=15 * rng.randrange(0, 24 * 4 * 300))
            status = rng.choices(["COMPLETED", "SCHEDULED", "CANCELLED"], [8, 1, 1])[0]
            segments = rng.randint(1, 3) if status == "COMPLETED" else 0
            modes = ["AUDIO", "VIDEO", "AUDIO"][:segments]
            consultations.append(
                (
                    consultation_id,
                    patient_id,
                    clinician_id,
                    at,
                    status,
                    modes[-1] if modes else rng.choice(["AUDIO", "VIDEO"]),
                    rng.choice(_REASONS),
                    rng.choice(_SUMMARIES) if status == "COMPLETED" else None,
                    rng.choice(_NOTES) if status == "COMPLETED" else None,
                )
            )
            started = at
            for index, mode in enumerate(modes):
                recording_id = _uuid(rng)
                duration = rng.randint(60, 900)
                content_type, extension = _CONTENT_TYPES[mode]
                recordings.append(
                    (
                        recording_id,
                        consultation_id,
                        patient_id,
                        index,
                        mode,
                        started,
                        duration,
                        content_type,
                        rng.randint(20_000, 90_000),
                        f"recordings/{patient_id}/{recording_id}.{extension}",
                    )
                )
                started += timedelta(seconds=duration)
    # Partners, staff and demo consents come from a second stream, so adding them left every
    # patient, clinician and consultation ID of earlier versions unchanged.
    extra = random.Random(plan.seed * 7919 + 1)  # noqa: S311 - reproducible by design
    partners = [(_uuid(extra), _PARTNERS[i % len(_PARTNERS)]) for i in range(plan.partners)]
    for number, (partner_id, _) in enumerate(partners, start=1):
        subject = f"partner-{number:04d}"
        accounts.append((issuer, subject, "partner", None, None, partner_id))
        principals.append(
            {"subject": subject, "role": "partner", "id": encode_global_id("Partner", partner_id)}
        )
    for role in ("support", "auditor"):
        accounts.append((issuer, f"{role}-0001", role, None, None, None))
        principals.append({"subject": f"{role}-0001", "role": role, "id": None})
    consents = [
        (
            _uuid(extra),
            patients[0][0],
            partner_id,
            _ALL_SCOPES,
            datetime.now(UTC) + timedelta(days=365),
        )
        for partner_id, _ in partners[:1]
    ]
    async with connection.transaction():
        await connection.copy_records_to_table(
            "partners", schema_name="data", records=partners, columns=["id", "name"]
        )
        await connection.copy_records_to_table(
            "clinicians",
            schema_name="data",
            records=clinicians,
            columns=["id", "display_name", "specialty"],
        )
        await connection.copy_records_to_table(
            "patients",
            schema_name="data",
            records=patients,
            columns=["id", "display_name", "birth_date"],
        )
        await connection.copy_records_to_table(
            "accounts",
            schema_name="data",
            records=accounts,
            columns=["issuer", "subject", "role", "patient_id", "clinician_id", "partner_id"],
        )
        await connection.copy_records_to_table(
            "consultations",
            schema_name="data",
            records=consultations,
            columns=[
                "id",
                "patient_id",
                "clinician_id",
                "scheduled_at",
                "status",
                "mode",
                "reason",
                "summary",
                "clinician_notes",
            ],
        )
        await connection.copy_records_to_table(
            "consents",
            schema_name="data",
            records=consents,
            columns=["id", "patient_id", "partner_id", "scopes", "expires_at"],
        )
        await connection.copy_records_to_table(
            "recordings",
            schema_name="data",
            records=recordings,
            columns=[
                "id",
                "consultation_id",
                "patient_id",
                "segment_index",
                "mode",
                "started_at",
                "duration_seconds",
                "content_type",
                "byte_size",
                "storage_key",
            ],
        )
    await connection.execute("analyze")
    return principals


_SAMPLES = {"audio/ogg": "sample.ogg", "video/webm": "sample.webm"}
# How long each sample plays (a browser test reads it from the media element): the demo
# recordings say so, so that the app's "Audio, 0:03" is what plays.
SAMPLE_SECONDS = {"audio/ogg": 3, "video/webm": 3}


async def write_demo_media(connection: asyncpg.Connection, root: Path) -> int:
    """Give every recording a small real media file (a generated tone, a test pattern) under
    ``root`` and set its byte size and duration to match; return how many files were written."""
    samples = {
        content_type: (resources.files("gateway.dev") / "demo_media" / name).read_bytes()
        for content_type, name in _SAMPLES.items()
    }
    rows = await connection.fetch("select id, content_type, storage_key from data.recordings")
    for row in rows:
        path = root / row["storage_key"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(samples[row["content_type"]])
    await connection.executemany(
        "update data.recordings set byte_size = $2, duration_seconds = $3 where content_type = $1",
        [(t, len(data), SAMPLE_SECONDS[t]) for t, data in samples.items()],
    )
    return len(rows)
