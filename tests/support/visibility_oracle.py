"""Who may see which row, restated in Python from the README's role table, over rows read as a
superuser: the oracle of the tests that run one database layer alone (test_sql_predicates_alone,
test_rls_alone).

``world`` adds what the seed lacks, around one target patient T: partners with an active consent
of every scope, of one scope each, a revoked and an expired consent, a consent of another patient
only; clinicians with an active, a revoked and an expired break-glass grant on T, and one with an
active grant on a patient of their own (a new patient W, outside the seed). ``Snapshot``
holds every row as the superuser reads it; its methods answer, for a caller, which rows each
table and each api function must give.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

CONSULTATION = "patient/Consultation.rs"
RECORDING = "patient/Recording.rs"
PATIENT = "patient/Patient.rs"
ALL = (CONSULTATION, RECORDING, PATIENT)
REASON = "Unconscious on arrival, allergy history needed now"
# Token scope sets a partner is tried with.
TOKEN_SCOPES = ((), (CONSULTATION,), (RECORDING,), (PATIENT,), ALL)


@dataclass(frozen=True)
class Caller:
    role: str
    actor: UUID | None
    scopes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.role} {self.actor} {' '.join(self.scopes)}"


@dataclass
class World:
    target: UUID
    other: UUID
    partners: dict[str, UUID]
    clinicians: dict[str, UUID]


async def make_world(connection: asyncpg.Connection, target: UUID, other: UUID) -> World:
    partners = {name: uuid.uuid4() for name in ("all", "consultation", "recording", "revoked",
                                                "expired", "other-patient")}  # fmt: skip
    for name, pk in partners.items():
        await connection.execute("insert into data.partners values ($1, $2)", pk, f"W {name}")
    consents = {
        "all": (target, ALL),
        "consultation": (target, (CONSULTATION,)),
        "recording": (target, (RECORDING,)),
        "revoked": (target, ALL),
        "expired": (target, ALL),
        "other-patient": (other, ALL),
    }
    for name, (patient, scopes) in consents.items():
        pk = uuid.uuid4()
        await connection.execute(
            "insert into data.consents (id, patient_id, partner_id, scopes, expires_at) "
            "values ($1, $2, $3, $4, now() + interval '1 year')",
            pk,
            patient,
            partners[name],
            list(scopes),
        )
        if name == "revoked":
            await connection.execute(
                "update data.consents set revoked_at = now() where id = $1", pk
            )
        if name == "expired":
            await connection.execute(
                "update data.consents set granted_at = now() - interval '2 hours', "
                "expires_at = now() - interval '1 hour' where id = $1",
                pk,
            )
    # Two approved requests of the target whose code lives, one redeemed (the partner sees both
    # for ten minutes), and a waiting request of each patient (the partner sees neither).
    for redeemed in (False, True):
        await connection.execute(
            "insert into data.consent_requests (id, patient_id, partner_id, scopes, "
            "redirect_uri, state, consent_expires_at, valid_until, answered_at, approved, "
            "consent_id, code_digest, code_expires_at, code_redeemed_at) select $1::uuid, $2, $3, "
            "k.scopes, 'https://w.example/back', 's', k.expires_at, now(), now(), true, k.id, "
            "sha256($1::uuid::text::bytea), now() + interval '10 minutes', "
            "case when $4 then now() end from data.consents k "
            "where k.patient_id = $2 and k.partner_id = $3",
            uuid.uuid4(),
            target,
            partners["all"],
            redeemed,
        )
    for patient in (target, other):
        await connection.execute(
            "insert into data.consent_requests (id, patient_id, partner_id, scopes, "
            "redirect_uri, state, consent_expires_at, valid_until) values ($1, $2, $3, $4, "
            "'https://w.example/back', 's', now() + interval '1 day', "
            "now() + interval '15 minutes')",
            uuid.uuid4(),
            patient,
            partners["all"],
            list(ALL),
        )
    clinicians = {name: uuid.uuid4() for name in ("break-glass", "revoked", "expired", "both")}
    for name, pk in clinicians.items():
        await connection.execute(
            "insert into data.clinicians values ($1, $2, 'Emergency')", pk, f"Dr {name}"
        )
        grant = uuid.uuid4()
        await connection.execute(
            "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, "
            "expires_at) values ($1, $2, $3, $4, now() + interval '1 hour')",
            grant,
            pk,
            target if name != "both" else await _own_patient(connection, pk),
            REASON,
        )
        if name == "revoked":
            await connection.execute(
                "update data.break_glass_grants set revoked_at = now() where id = $1", grant
            )
        if name == "expired":
            await connection.execute(
                "update data.break_glass_grants set opened_at = now() - interval '2 hours', "
                "expires_at = now() - interval '1 hour' where id = $1",
                grant,
            )
    return World(target, other, partners, clinicians)


async def _own_patient(connection: asyncpg.Connection, clinician: UUID) -> UUID:
    """A new patient (no account, outside the seed's truth) with one consultation that
    ``clinician`` conducted: the clinician then holds a break-glass grant on their own patient."""
    patient = uuid.uuid4()
    await connection.execute(
        "insert into data.patients values ($1, 'W both', date '1970-01-01')", patient
    )
    await connection.execute(
        "insert into data.consultations (id, patient_id, clinician_id, scheduled_at, status, "
        "mode, reason) values ($1, $2, $3, now() - interval '400 days', 'COMPLETED', 'AUDIO', "
        "'w')",
        uuid.uuid4(),
        patient,
        clinician,
    )
    return patient


class Snapshot:
    """Every row of the patient-data tables, read as a superuser, and the policy over them."""

    def __init__(self, rows: dict[str, list[Any]], now: datetime) -> None:
        self.consultations = rows["consultations"]
        self.recordings = rows["recordings"]
        self.patients = rows["patients"]
        self.consents = rows["consents"]
        self.consent_requests = rows.get("consent_requests", [])
        self.grants = rows["break_glass_grants"]
        self.events = rows["access_events"]
        self.now = now
        self.consultation = {c["id"]: c for c in self.consultations}

    @classmethod
    async def read(cls, connection: asyncpg.Connection) -> Snapshot:
        tables = (
            "consultations",
            "recordings",
            "patients",
            "consents",
            "consent_requests",
            "break_glass_grants",
            "access_events",
        )
        rows = {t: await connection.fetch(f"select * from data.{t}") for t in tables}
        return cls(rows, await connection.fetchval("select now()"))

    def _active(self, row: Any) -> bool:
        return row["revoked_at"] is None and self.now < row["expires_at"]

    def emergency_reasons(self, clinician: UUID | None, patient: UUID) -> set[str]:
        return {
            g["reason"]
            for g in self.grants
            if g["clinician_id"] == clinician and g["patient_id"] == patient and self._active(g)
        }

    def consent(self, partner: UUID | None, patient: UUID) -> Any | None:
        active = [
            k
            for k in self.consents
            if k["partner_id"] == partner and k["patient_id"] == patient and self._active(k)
        ]
        assert len(active) <= 1, "one active consent per partner and patient"
        return active[0] if active else None

    # --- layer 2: the grant of a row, as api.grant_for must compute it ------------------------

    def grant(
        self, caller: Caller, patient: UUID, clinician: UUID | None, needs: str
    ) -> tuple[str, tuple[str, ...] | None, frozenset[str]] | None:
        """(granted, consent scopes, possible break-glass reasons) or None (not visible)."""
        if caller.role == "patient":
            return ("own", None, frozenset()) if patient == caller.actor else None
        if caller.role == "clinician":
            if clinician is not None and clinician == caller.actor:
                return ("conducted", None, frozenset())
            reasons = self.emergency_reasons(caller.actor, patient)
            return ("break-glass", None, frozenset(reasons)) if reasons else None
        if caller.role == "support":
            return ("everyone", None, frozenset()) if needs in (CONSULTATION, PATIENT) else None
        if caller.role == "partner":
            consent = self.consent(caller.actor, patient)
            if consent is None or needs not in consent["scopes"] or needs not in caller.scopes:
                return None
            scopes = tuple(sorted(s for s in consent["scopes"] if s in caller.scopes))
            return ("consent", scopes, frozenset())
        return None

    def patient_grant(self, caller: Caller, patient: UUID) -> Any:
        if caller.role == "clinician" and any(
            c["patient_id"] == patient and c["clinician_id"] == caller.actor
            for c in self.consultations
        ):
            return ("conducted", None, frozenset())
        return self.grant(caller, patient, None, PATIENT)

    def page(self, caller: Caller) -> list[UUID]:
        """api.consultations_page: the caller's list, newest first."""

        def listed(c: Any) -> bool:
            if caller.role == "patient":
                return c["patient_id"] == caller.actor
            if caller.role == "clinician":
                return c["clinician_id"] == caller.actor
            if caller.role == "support":
                return True
            if caller.role == "partner":
                return self.consent(caller.actor, c["patient_id"]) is not None
            return False

        rows = [
            c
            for c in self.consultations
            if listed(c)
            and self.grant(caller, c["patient_id"], c["clinician_id"], CONSULTATION) is not None
        ]
        rows.sort(key=lambda c: (c["scheduled_at"], c["id"]), reverse=True)
        return [c["id"] for c in rows]

    # --- layer 4's question -------------------------------------------------------------------

    def authorized(self, caller: Caller, needs: str) -> set[UUID]:
        patients = {p["id"] for p in self.patients}
        if caller.role == "clinician":
            return {
                p
                for p in patients
                if any(
                    c["patient_id"] == p and c["clinician_id"] == caller.actor
                    for c in self.consultations
                )
                or self.emergency_reasons(caller.actor, p)
            }
        if caller.role == "partner" and needs in caller.scopes:
            return {
                p
                for p in patients
                if (k := self.consent(caller.actor, p)) is not None and needs in k["scopes"]
            }
        return set()

    # --- the access log and consents ----------------------------------------------------------

    def access_log(
        self, caller: Caller, *, by_others: bool = False, emergency: bool = False
    ) -> set[int]:
        """The access log's events for ``caller``; ``by_others`` leaves out patients' own
        events, ``emergency`` keeps those with a break-glass reason."""
        shown = {"disclosure", "media", "consent-granted", "consent-revoked", "break-glass-opened"}

        def kept(e: Any) -> bool:
            return (
                e["seq"] is not None
                and (not by_others or e["role"] != "patient")
                and (not emergency or e["break_glass_reason"] is not None)
            )

        if caller.role == "patient":
            return {
                e["seq"]
                for e in self.events
                if kept(e) and e["patient_id"] == caller.actor and e["kind"] in shown
            }
        if caller.role == "auditor":
            return {e["seq"] for e in self.events if kept(e)}
        return set()

    def consents_of(self, caller: Caller) -> set[UUID]:
        if caller.role != "patient":
            return set()
        return {k["id"] for k in self.consents if k["patient_id"] == caller.actor}

    # --- layer 3: what row-level security must show, table by table ---------------------------

    def _consultation_visible(self, caller: Caller, c: Any) -> bool:
        if caller.role == "patient":
            return c["patient_id"] == caller.actor
        if caller.role == "clinician":
            return c["clinician_id"] == caller.actor or bool(
                self.emergency_reasons(caller.actor, c["patient_id"])
            )
        if caller.role == "support":
            return True
        if caller.role == "partner":
            k = self.consent(caller.actor, c["patient_id"])
            return CONSULTATION in caller.scopes and k is not None and CONSULTATION in k["scopes"]
        return False

    def rls(self, caller: Caller) -> dict[str, set[Any]]:
        role, actor = caller.role, caller.actor

        def consented(patient: UUID, scope: str) -> bool:
            k = self.consent(actor, patient)
            return scope in caller.scopes and k is not None and scope in k["scopes"]

        consultations = {
            c["id"] for c in self.consultations if self._consultation_visible(caller, c)
        }
        if role in ("patient", "clinician"):
            recordings = {r["id"] for r in self.recordings if r["consultation_id"] in consultations}
        elif role == "partner":
            recordings = {r["id"] for r in self.recordings if consented(r["patient_id"], RECORDING)}
        else:
            recordings = set()
        if role == "patient":
            patients = {actor}
        elif role == "clinician":
            patients = {self.consultation[c]["patient_id"] for c in consultations}
        elif role == "support":
            patients = {p["id"] for p in self.patients}
        elif role == "partner":
            patients = {p["id"] for p in self.patients if consented(p["id"], PATIENT)}
        else:
            patients = set()
        return {
            "consultations": consultations,
            "recordings": recordings,
            "patients": patients,
            "consents": {
                k["id"]
                for k in self.consents
                if (role == "patient" and k["patient_id"] == actor)
                or (role == "partner" and k["partner_id"] == actor)
            },
            # The consent page's requests: the patient's own; to the partner, its approved ones
            # while their code lives.
            "consent_requests": {
                r["id"]
                for r in self.consent_requests
                if (role == "patient" and r["patient_id"] == actor)
                or (
                    role == "partner"
                    and r["partner_id"] == actor
                    and r["approved"]
                    and self.now < r["code_expires_at"]
                )
            },
            "access_events": {
                e["id"]
                for e in self.events
                if (role == "patient" and e["patient_id"] == actor) or role == "auditor"
            },
            "break_glass_grants": {
                g["id"]
                for g in self.grants
                if (role == "clinician" and g["clinician_id"] == actor)
                or (role == "patient" and g["patient_id"] == actor)
            },
        }


def callers(env: Any, world: World) -> list[Caller]:
    """Every seeded patient and clinician, the world's clinicians, its partners with every token
    scope set, support and an auditor."""
    found = [Caller("patient", p) for _, p in env.patients()]
    found += [Caller("clinician", c) for _, c in env.clinicians()]
    found += [Caller("clinician", c) for c in world.clinicians.values()]
    found += [
        Caller("partner", p, scopes) for p in world.partners.values() for scopes in TOKEN_SCOPES
    ]
    found += [Caller("support", None), Caller("auditor", None), Caller("nosuchrole", None)]
    return found
