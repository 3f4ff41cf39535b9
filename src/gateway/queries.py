"""Every SQL statement the gateway sends at request time, as named constants.

Each calls a function of schema ``api`` (migrations/), which sets the caller's scope for row-level
security and carries the caller's visibility predicate. Values always travel as ``$n`` parameters;
a test prepares every statement here against the real database.
"""

from __future__ import annotations

__all__ = ["STATEMENTS"]

ACCOUNT_FOR = "select role, patient_id, clinician_id, partner_id from api.account_for($1, $2)"
CONSULTATIONS_BY_ID = "select * from api.consultations_by_id($1, $2, $3::uuid[])"
CONSULTATIONS_PAGE = "select * from api.consultations_page($1, $2, $3, $4, $5)"
RECORDINGS_BY_CONSULTATION = "select * from api.recordings_by_consultation($1, $2, $3::uuid[])"
RECORDINGS_BY_ID = "select * from api.recordings_by_id($1, $2, $3::uuid[])"
PATIENTS_BY_ID = "select * from api.patients_by_id($1, $2, $3::uuid[])"
CLINICIANS_BY_ID = "select * from api.clinicians_by_id($1::uuid[])"
AUTHORIZED_PATIENTS = "select x from api.authorized_patients($1, $2, $3::uuid[]) as x"
ACCESS_EVENTS_PAGE = "select * from api.access_events_page($1, $2, $3, $4)"
RECORD_ACCESS_EVENTS = "select api.record_access_events($1::jsonb)"
PING = "select 1"

STATEMENTS: dict[str, str] = {
    name: value for name, value in globals().items() if name.isupper() and isinstance(value, str)
}
