"""The gateway with its field permission checks switched off, to price them. Bench only: the
shipped gateway has no such switch. Reads are still recorded in the ledger (so the exit check and
audit trail do the same work); only the policy lookup and condition check are skipped, on every
path: Strawberry's, the fast path and the compiled plans."""

from __future__ import annotations

from typing import Any

from gateway.app import create_app_from_environment
from gateway.authz import field_check


def _allow_all(principal: Any, source: Any, type_name: str, fields: tuple) -> list:
    return [None] * len(fields)


def create_app() -> Any:
    # The one field gate, which every path asks (check_field, the fast path, the plans, media).
    field_check.decide = _allow_all
    return create_app_from_environment()
