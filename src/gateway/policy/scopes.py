"""The SMART on FHIR v2 scopes a partner's token and a patient's consent carry.

The one place their names are written in Python: the policy table, consent validation, the seed
and the docs read them from here. The database keeps the same three in a check constraint on
``data.consents`` (migration 0003, never edited); a test keeps the two equal.
"""

from __future__ import annotations

__all__ = ["ALL", "CONSULTATION", "PATIENT", "RECORDING"]

CONSULTATION = "patient/Consultation.rs"
RECORDING = "patient/Recording.rs"
PATIENT = "patient/Patient.rs"
ALL = (CONSULTATION, RECORDING, PATIENT)
