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

__all__ = ["FieldPolicy", "Governed", "check_field", "install_fast_path", "policy_field"]


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


def check_field(context: Any, source: Governed, type_name: str, field_name: str, path: Any) -> bool:
    """The policy decision for one field read, written to the request's ledger."""
    ledger = context.ledger
    principal = context.principal
    rule = rule_for(type_name, field_name, principal.role)
    reason = f"not granted to {principal.role} (default deny)" if rule is None else None
    if rule is not None and rule.condition is not ALWAYS:
        unmet = _unmet(rule.condition, source, principal)
        if unmet is not None:
            reason = f"{rule.name} ({unmet})"
    if ledger.explanations is not None:
        where = ".".join(str(key) for key in path.as_list())
        ledger.explain(
            where,
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


class FieldPolicy(BasePermission):
    message = "Not authorized to read this field"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return check_field(info.context, source, info.path.typename, info.field_name, info.path)

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


def install_fast_path(schema: Any) -> int:
    """For guarded fields without arguments, call the same policy check straight from
    graphql-core, skipping Strawberry's per-field extension machinery (argument conversion,
    the extension chain): same decision, a fraction of the cost. An attribute field reads the
    attribute; a resolver taking ``(self, info)`` is called with the Info Strawberry would
    build. Fields with arguments, or any other extension, keep the Strawberry path. Returns
    how many fields were switched."""
    switched = 0
    for graphql_type in schema._schema.type_map.values():
        for field_name, field in getattr(graphql_type, "fields", {}).items():
            definition = (field.extensions or {}).get("strawberry-definition")
            if definition is None or field.args:
                continue
            resolver = definition.base_resolver
            if resolver is not None and not _self_and_info_only(resolver):
                continue
            guards = [
                extension
                for extension in definition.extensions
                if isinstance(extension, PermissionExtension)
            ]
            if (
                len(guards) != 1
                or len(definition.extensions) != 1
                or guards[0].fail_silently
                or not all(isinstance(p, FieldPolicy) for p in guards[0].permissions)
            ):
                continue
            if resolver is None:
                field.resolve = _fast_attribute(definition.python_name, field_name)
            else:
                info_class = schema.config.info_class
                field.resolve = _fast_resolver(
                    definition, resolver.wrapped_func, field_name, info_class
                )
            switched += 1
    return switched


def _self_and_info_only(resolver: Any) -> bool:
    parameters = resolver.signature.parameters
    return (
        len(parameters) == 2
        and resolver.self_parameter is not None
        and resolver.info_parameter is not None
        and not isinstance(resolver.wrapped_func, (staticmethod, classmethod))
    )


def _fast_attribute(attribute: str, field_name: str) -> Any:
    message = FieldPolicy.message

    def resolve(source: Any, info: Any, **_: Any) -> Any:
        if check_field(info.context, source, info.parent_type.name, field_name, info.path):
            return getattr(source, attribute)
        raise Forbidden(message)

    return resolve


def _fast_resolver(definition: Any, function: Any, field_name: str, info_class: Any) -> Any:
    message = FieldPolicy.message

    def resolve(source: Any, info: Any, **_: Any) -> Any:
        if check_field(info.context, source, info.parent_type.name, field_name, info.path):
            return function(source, info_class(_raw_info=info, _field=definition))
        raise Forbidden(message)

    return resolve


def policy_field(**kwargs: Any) -> Any:
    """``strawberry.field`` guarded by the policy table; every field of a governed type uses it."""
    guard = PermissionExtension(permissions=[FieldPolicy()], use_directives=False)
    extensions = [*kwargs.pop("extensions", ()), guard]
    return strawberry.field(extensions=extensions, **kwargs)
