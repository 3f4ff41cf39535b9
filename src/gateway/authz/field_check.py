"""Layer 1: the one field gate, and the permission class on every field of a governed type.

``decide`` is the gate: synchronous, a dict lookup and a comparison per field. It finds the rule
for (type, field, caller's role) in the policy table, checks that the row is within the rule's
row scope as the row itself shows (the caller's own, or loaded under the caller's consent, care or
break-glass), checks the rule's condition, and denies everything the table does not grant.
Whichever executor asks (Strawberry and graphql-core through ``FieldPolicy`` and the fast path,
a compiled plan for all of an object's fields at once), the media endpoint, or a field that
repeats another's value (``readable``), the decision is this function's, and it is recorded
through ``Ledger.record_field`` with the owner taken from the row. On its own it refuses a
foreign patient's row handed to a resolver by a loader that forgot its predicate.
``MutationPolicy`` guards each mutation by the table's list of who may make that change.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol
from uuid import UUID

import strawberry
from strawberry.permission import BasePermission, PermissionExtension

from gateway.authz.context import Context, Info
from gateway.errors import Forbidden
from gateway.identity import Principal, Role
from gateway.ledger import Key
from gateway.policy.table import (
    ALWAYS,
    Condition,
    RowScope,
    Rule,
    may_call,
    mutation_right,
    rule_for,
)

__all__ = [
    "FORBIDDEN_MESSAGE",
    "Conducted",
    "Consented",
    "FieldPolicy",
    "Governed",
    "Granted",
    "MutationPolicy",
    "check_field",
    "decide",
    "policy_field",
    "policy_mutation",
    "readable",
]

FORBIDDEN_MESSAGE = "Not authorized to read this field"


class Governed(Protocol):
    """What every governed object exposes to the policy: its key and its owner patient, both read
    from its database row (owner None when the type is not patient data)."""

    @property
    def pk(self) -> Key | None: ...

    @property
    def owner(self) -> UUID | None: ...


class Consented(Governed, Protocol):
    """A type a partner may read under consent: the consent's scopes (intersected with the
    token's) under which its row was loaded; None when not loaded under a consent."""

    @property
    def consent_scopes(self) -> tuple[str, ...] | None: ...


class Granted(Governed, Protocol):
    """A type a clinician may read under their own care or break-glass: the grant its row was
    loaded under (``conducted``, ``break-glass``, ...), as the loader's SQL computed it."""

    @property
    def granted(self) -> str | None: ...


class Conducted(Governed, Protocol):
    """A type with a condition on who conducted it: the clinician of its row."""

    @property
    def clinician_pk(self) -> UUID: ...


def _unmet(condition: Condition, source: Any, principal: Principal) -> str | None:
    """Why a granted field's condition fails on this row, or None when it holds. The schema check
    (``gateway.authz.schema_check``) has made sure the source declares what is read here."""
    if condition.scope is not None:
        if condition.scope not in principal.scopes:
            return f"token lacks {condition.scope}"
        consented: Consented = source
        if condition.scope not in (consented.consent_scopes or ()):
            return f"consent lacks {condition.scope}"
    if condition.conducted:
        conducted: Conducted = source
        if conducted.clinician_pk != principal.actor_id:
            return "not the conducting clinician"
    return None


_CLINICIAN_GRANTS = frozenset({"conducted", "break-glass"})


def _outside(rows: RowScope, source: Any, principal: Principal) -> str | None:
    """Why this row is outside the caller's row scope, as far as the row itself shows, or None.
    A row of patient data must be the patient's own (``own``), or carry the grant it was loaded
    under: a consent (``consented``), the clinician's care or break-glass (``conducted``)."""
    if source.owner is None or rows is RowScope.EVERYONE:
        return None
    if rows is RowScope.OWN:
        return None if source.owner == principal.actor_id else "not the caller's own row"
    if rows is RowScope.CONSENTED:
        consented: Consented = source
        return None if consented.consent_scopes is not None else "row not under a consent"
    if rows is RowScope.CONDUCTED:
        granted: Granted = source
        return None if granted.granted in _CLINICIAN_GRANTS else "row not under care or break-glass"
    return "no row scope"


@functools.lru_cache(maxsize=4096)
def _rules(type_name: str, role: Role, fields: tuple[str, ...]) -> tuple[Rule | None, ...]:
    return tuple(rule_for(type_name, field, role) for field in fields)


@functools.lru_cache(maxsize=4096)
def _uniform(type_name: str, role: Role, fields: tuple[str, ...]) -> RowScope | None:
    """The one row scope all of ``fields`` are granted under, each with no condition; None
    when a field is not granted, has a condition, or the scopes differ."""
    rules = _rules(type_name, role, fields)
    if not rules or any(rule is None or rule.condition is not ALWAYS for rule in rules):
        return None
    scopes = {rule.rows for rule in rules if rule is not None}
    return scopes.pop() if len(scopes) == 1 else None


def decide(
    principal: Principal, source: Governed, type_name: str, fields: tuple[str, ...]
) -> list[str | None]:
    """The field gate: the policy decision for each of ``fields`` of one object, in order; None
    where the table allows the read, else why not (default deny, the row outside the caller's
    row scope, or the rule whose condition failed on this row). Every executor and the media
    endpoint ask this one function. The rules are looked up once per (type, role, fields); the
    row scope, one per type and role, is judged once per object; conditions per field. When
    every field is granted under one row scope with no condition (most selections), the row
    scope is the only question left, and a row inside it has every field allowed."""
    uniform = _uniform(type_name, principal.role, fields)
    if uniform is not None and _outside(uniform, source, principal) is None:
        return [None] * len(fields)
    decisions: list[str | None] = []
    outside: str | None = None
    judged = False
    for rule in _rules(type_name, principal.role, fields):
        if rule is None:
            decisions.append(f"not granted to {principal.role} (default deny)")
            continue
        if not judged:
            outside, judged = _outside(rule.rows, source, principal), True
        if outside is not None:
            decisions.append(f"{rule.name} ({outside})")
        elif rule.condition is not ALWAYS:
            unmet = _unmet(rule.condition, source, principal)
            decisions.append(None if unmet is None else f"{rule.name} ({unmet})")
        else:
            decisions.append(None)
    return decisions


def check_field(
    context: Context, source: Governed, type_name: str, field_name: str, path: Any
) -> bool:
    """The gate's decision for one field read, recorded in the request's ledger (and explained
    when the request asks): what the interpreted executor calls for every governed field."""
    ledger = context.ledger
    reason = decide(context.principal, source, type_name, (field_name,))[0]
    if ledger.explanations is not None:
        where = ".".join(str(key) for key in path.as_list())
        if reason is None:
            rule = rule_for(type_name, field_name, context.principal.role)
            assert rule is not None  # allowed: the table has the rule that allowed it
            ledger.explain(
                where, type_name, field_name, True, f"{rule.name} ({rule.condition.describe()})"
            )
        else:
            ledger.explain(where, type_name, field_name, False, reason)
    return ledger.record_field(type_name, source.pk, source.owner, field_name, reason)


def readable(context: Context, source: Governed, type_name: str, field_name: str) -> bool:
    """Whether the gate lets the caller read ``field_name`` of ``source``, for a field whose
    value another field repeats where the table grants it (``ArchivedPeriod.where`` names the
    ``location`` to the roles that may read it): an allowed read is recorded as the field's own
    would be; a refusal is not recorded as a denial, since the field itself was not asked for."""
    allowed = decide(context.principal, source, type_name, (field_name,))[0] is None
    if allowed:
        context.ledger.record_field(type_name, source.pk, source.owner, field_name, None)
    return allowed


class FieldPolicy(BasePermission):
    message = FORBIDDEN_MESSAGE

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        type_name = info.path.typename
        assert type_name is not None  # a field's path names its object type (only an index's not)
        return check_field(info.context, source, type_name, info.field_name, info.path)

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


class MutationPolicy(BasePermission):
    """Only the roles the policy table lists for a mutation may call it."""

    message = "Not authorized to make this change"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if may_call(info.field_name, info.context.principal.role):
            return True
        right = mutation_right(info.field_name)
        raise Forbidden(f"Only a {right.describe()} may do this" if right else self.message)


# pragma: no mutate block (these two run at import, when the schema is defined: scripts/mutants.py)
def policy_field(**kwargs: Any) -> Any:
    """``strawberry.field`` guarded by the policy table; every field of a governed type uses it."""
    guard = PermissionExtension(permissions=[FieldPolicy()], use_directives=False)
    extensions = [*kwargs.pop("extensions", ()), guard]
    return strawberry.field(extensions=extensions, **kwargs)


def policy_mutation(**kwargs: Any) -> Any:
    """``strawberry.mutation`` guarded by the table's list of who may make the change."""
    return strawberry.mutation(permission_classes=[MutationPolicy], **kwargs)
