"""The audit trail: access events from a ledger, their writer, the hash chain, FHIR export."""
