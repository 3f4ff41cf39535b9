"""Every SQL statement the gateway sends at request time, as named constants.

Each that reads patient data calls a function of schema ``api`` (migrations/), which sets the
caller's scope for row-level security and carries the caller's visibility predicate. Scoped
loader statements take ($1 role, $2 actor, $3 token scopes, ...) and return each row's columns
followed by the grant it was seen under (``consent_scopes``, ``break_glass_reason``, and
``granted``: own, conducted, break-glass, everyone or consent, which the field check holds against
the caller's row scope). Values always travel as ``$n`` parameters; a test prepares every
statement here against the real database.
"""

from __future__ import annotations

__all__ = ["STATEMENTS", "STATEMENT_NAMES"]

ACCOUNT_FOR = (
    "select role, patient_id, clinician_id, partner_id, developer from api.account_for($1, $2)"
)
CONSULTATIONS_BY_ID = (
    "select (x.consultation).*, x.consent_scopes, x.break_glass_reason, x.granted "
    "from api.consultations_by_id($1, $2, $3::text[], $4::uuid[]) x"
)
CONSULTATIONS_PAGE = (
    "select (x.consultation).*, x.consent_scopes, x.break_glass_reason, x.granted "
    "from api.consultations_page($1, $2, $3::text[], $4, $5, $6) x"
)
CONSULTATIONS_BY_PATIENT = (
    "select (x.consultation).*, x.consent_scopes, x.break_glass_reason, x.granted "
    "from api.consultations_by_patient($1, $2, $3::text[], $4::uuid[]) x"
)
RECORDINGS_BY_CONSULTATION = (
    "select (x.recording).*, x.consent_scopes, x.break_glass_reason, x.granted "
    "from api.recordings_by_consultation($1, $2, $3::text[], $4::uuid[]) x"
)
RECORDINGS_BY_ID = (
    "select (x.recording).*, x.consent_scopes, x.break_glass_reason, x.granted "
    "from api.recordings_by_id($1, $2, $3::text[], $4::uuid[]) x"
)
PATIENTS_BY_ID = (
    "select (x.patient).*, x.consent_scopes, x.break_glass_reason, x.granted "
    "from api.patients_by_id($1, $2, $3::text[], $4::uuid[]) x"
)
CLINICIANS_BY_ID = "select * from api.clinicians_by_id($1::uuid[])"
PARTNERS_BY_ID = "select * from api.partners_by_id($1::uuid[])"
ALL_PARTNERS = "select * from api.all_partners()"
ACCESS_EVENTS_PAGE = "select * from api.access_events_page($1, $2, $3::text[], $4, $5, $6, $7)"
# The months of the trail archived (migration 0021), newest first: no patient data, read from
# the table itself (gateway_app may select it; it has no row-level security).
ARCHIVED_PERIODS = (
    "select id, period_start, period_end, archived_at, deleted_at, location "
    "from data.audit_archives order by period_start desc"
)
CONSENTS_OF = "select (x.consent).*, x.partner_name from api.consents_of($1, $2) x"
GRANT_CONSENT = "select * from api.grant_consent($1::jsonb, $2, $3, $4, $5::text[], $6)"
REVOKE_CONSENT = "select * from api.revoke_consent($1::jsonb, $2, $3, $4)"
OPEN_CONSENT_REQUEST = (
    "select * from api.open_consent_request($1::jsonb, $2, $3, $4, $5::text[], $6, $7, $8)"
)
ANSWER_CONSENT_REQUEST = "select * from api.answer_consent_request($1::jsonb, $2, $3, $4, $5, $6)"
REDEEM_CONSENT_CODE = (
    "select patient_id, consent_id from api.redeem_consent_code($1::jsonb, $2, $3, $4, $5)"
)
OPEN_BREAK_GLASS = "select * from api.open_break_glass($1::jsonb, $2, $3, $4, $5, $6)"
RECORD_ACCESS_EVENTS = "select api.record_access_events($1::jsonb, $2::uuid[])"
RECORD_ACCESS_EVENTS_IF_AUTHORIZED = (
    "select x from api.record_access_events_if_authorized("
    "$1, $2, $3::text[], $4::jsonb, $5::jsonb, $6::uuid[]) x"
)
PING = "select 1"  # readiness

STATEMENTS: dict[str, str] = {
    name: value for name, value in globals().items() if name.isupper() and isinstance(value, str)
}
# The constant's name of each statement: what spans and logs call it, never its text.
STATEMENT_NAMES: dict[str, str] = {sql: name for name, sql in STATEMENTS.items()}
