"""The gateway with its field permission checks switched off, to price them. Bench only: the
shipped gateway has no such switch. Reads are still recorded in the ledger (so the exit check and
audit trail do the same work); only the policy lookup and condition check are skipped."""

from __future__ import annotations

from typing import Any

import strawberry

from gateway import authz
from gateway.app import create_app_from_environment


def _allow(self: Any, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
    info.context.ledger.record_read(info.path.typename, source.pk, source.owner, info.field_name)
    return True


def create_app() -> Any:
    authz.FieldPolicy.has_permission = _allow  # type: ignore[method-assign]
    return create_app_from_environment()
