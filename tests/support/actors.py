"""Extra people and grants for leak tests, made as superuser with rows no other test uses.

Each maker returns what a test needs to act as the new party; ``Grants`` remembers the consents
and break-glass grants a module opened so that its fixture removes them afterwards (other tests
count a patient's consents and a clinician's patients)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from uuid import UUID

from gateway.ids import encode_global_id
from gateway.policy import scopes
from tests.support.database import as_admin

ALL_SCOPES = " ".join(scopes.ALL)
REASON = "Patient unconscious in the ER, allergy history needed"


def new_partner(env, label: str = "leak") -> tuple[str, UUID]:
    """A fresh partner account with no consent: (subject, partner id)."""
    pk = uuid.uuid4()
    subject = f"{label}-partner-{pk}"

    async def make(connection):
        await connection.execute("insert into data.partners values ($1, $2)", pk, f"P {pk}")
        await connection.execute(
            "insert into data.accounts (issuer, subject, role, partner_id) "
            "values ($1, $2, 'partner', $3)",
            env.identity.issuer,
            subject,
            pk,
        )

    as_admin(env, make)
    return subject, pk


def new_patient(env, label: str = "leak") -> tuple[str, UUID]:
    """A fresh patient account with no consultation and no consent: (subject, patient id)."""
    pk = uuid.uuid4()
    subject = f"{label}-patient-{pk}"

    async def make(connection):
        await connection.execute(
            "insert into data.patients values ($1, $2, '1980-02-03')", pk, f"Patient {pk}"
        )
        await connection.execute(
            "insert into data.accounts (issuer, subject, role, patient_id) "
            "values ($1, $2, 'patient', $3)",
            env.identity.issuer,
            subject,
            pk,
        )

    as_admin(env, make)
    return subject, pk


def new_clinician(env, label: str = "leak") -> tuple[str, UUID]:
    """A fresh clinician account who conducted nothing: (subject, clinician id)."""
    pk = uuid.uuid4()
    subject = f"{label}-clinician-{pk}"

    async def make(connection):
        await connection.execute("insert into data.clinicians values ($1, 'Dr Fresh', 'ER')", pk)
        await connection.execute(
            "insert into data.accounts (issuer, subject, role, clinician_id) "
            "values ($1, $2, 'clinician', $3)",
            env.identity.issuer,
            subject,
            pk,
        )

    as_admin(env, make)
    return subject, pk


def partner_token(env, subject: str, granted: Iterable[str] | str = ALL_SCOPES) -> str:
    scope = granted if isinstance(granted, str) else " ".join(sorted(granted))
    return env.token(subject, scope=scope, azp=subject)


def gid(type_name: str, pk: UUID) -> str:
    return encode_global_id(type_name, pk)


class Grants:
    """Consents and break-glass grants opened as superuser, removed by ``close``."""

    def __init__(self, env) -> None:
        self._env = env
        self.consents: list[UUID] = []
        self.break_glass: list[UUID] = []

    def consent(self, patient: UUID, partner: UUID, granted: Iterable[str]) -> UUID:
        pk = uuid.uuid4()
        as_admin(
            self._env,
            lambda c: c.execute(
                "insert into data.consents (id, patient_id, partner_id, scopes, expires_at) "
                "values ($1, $2, $3, $4, now() + interval '30 days')",
                pk,
                patient,
                partner,
                sorted(granted),
            ),
        )
        self.consents.append(pk)
        return pk

    def revoke(self, consent: UUID) -> None:
        as_admin(
            self._env,
            lambda c: c.execute(
                "update data.consents set revoked_at = now() where id = $1", consent
            ),
        )

    def open_break_glass(self, clinician: UUID, patient: UUID, reason: str = REASON) -> UUID:
        pk = uuid.uuid4()
        as_admin(
            self._env,
            lambda c: c.execute(
                "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, "
                "expires_at) values ($1, $2, $3, $4, now() + interval '1 hour')",
                pk,
                clinician,
                patient,
                reason,
            ),
        )
        self.break_glass.append(pk)
        return pk

    def expire_break_glass(self, grant: UUID) -> None:
        as_admin(
            self._env,
            lambda c: c.execute(
                "update data.break_glass_grants set opened_at = now() - interval '3 hours', "
                "expires_at = now() - interval '1 second' where id = $1",
                grant,
            ),
        )

    def close(self) -> None:
        async def remove(connection):
            await connection.execute(
                "delete from data.consents where id = any($1::uuid[])", self.consents
            )
            await connection.execute(
                "delete from data.break_glass_grants where id = any($1::uuid[])",
                self.break_glass,
            )

        as_admin(self._env, remove)
