"""The gateway with its field permission checks switched off, to price them. Bench only: the
shipped gateway has no such switch. Reads are still recorded in the ledger (so the exit check and
audit trail do the same work); only the policy lookup and condition check are skipped."""

from __future__ import annotations

from typing import Any

from gateway import authz
from gateway.app import create_app_from_environment


def _allow(context: Any, source: Any, type_name: str, field_name: str, path: Any) -> bool:
    context.ledger.record_read(type_name, source.pk, source.owner, field_name)
    return True


def create_app() -> Any:
    authz.check_field = _allow  # both the Strawberry path and the fast path call it
    return create_app_from_environment()
