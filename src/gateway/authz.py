"""Layer 1: the one permission class every field of every governed type carries.

``FieldPolicy.has_permission`` is synchronous and costs a dict lookup: it finds the rule for
(type, field, caller's role) in the policy table, writes the read into the request's ledger with
the owner taken from the row, and denies everything the table does not grant.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

import strawberry
from strawberry.permission import BasePermission, PermissionExtension

from gateway.errors import Forbidden
from gateway.identity import Principal
from gateway.ledger import Denial
from gateway.policy import ALWAYS, Condition, rule_for

__all__ = ["FieldPolicy", "Governed", "policy_field"]


class Governed(Protocol):
    """What a governed object exposes to the policy: its key and its owner patient, both read
    from its database row (None when the type is not patient data)."""

    pk: UUID | None
    owner: UUID | None


def _unmet(condition: Condition, source: Any, principal: Principal) -> str | None:
    """Why a granted field's condition fails on this row, or None when it holds."""
    if condition.scope is not None:
        if condition.scope not in principal.scopes:
            return f"token lacks {condition.scope}"
        if condition.scope not in (getattr(source, "consent_scopes", None) or ()):
            return f"consent lacks {condition.scope}"
    if condition.conducted and getattr(source, "clinician_pk", None) != principal.actor_id:
        return "not the conducting clinician"
    return None


class FieldPolicy(BasePermission):
    message = "Not authorized to read this field"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        context = info.context
        ledger = context.ledger
        type_name = info.path.typename
        field_name = info.field_name
        principal = context.principal
        rule = rule_for(type_name, field_name, principal.role)
        reason = f"not granted to {principal.role} (default deny)" if rule is None else None
        if rule is not None and rule.condition is not ALWAYS:
            unmet = _unmet(rule.condition, source, principal)
            if unmet is not None:
                reason = f"{rule.name} ({unmet})"
        if ledger.explanations is not None:
            path = ".".join(str(key) for key in info.path.as_list())
            ledger.explain(
                path,
                type_name,
                field_name,
                reason is None,
                reason or f"{rule.name} ({rule.condition.describe()})",
            )
        if reason is not None:
            ledger.record_denial(Denial(type_name, source.pk, source.owner, field_name, reason))
            return False
        ledger.record_read(type_name, source.pk, source.owner, field_name)
        return True

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


def policy_field(**kwargs: Any) -> Any:
    """``strawberry.field`` guarded by the policy table; every field of a governed type uses it."""
    guard = PermissionExtension(permissions=[FieldPolicy()], use_directives=False)
    extensions = [*kwargs.pop("extensions", ()), guard]
    return strawberry.field(extensions=extensions, **kwargs)
