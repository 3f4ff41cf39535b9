"""Layer 1's completeness, checked when the schema is built: a gap refuses to start.

Every object type of the schema is governed by the policy table or structural; every field of a
governed type carries ``FieldPolicy``; every mutation carries ``MutationPolicy`` and is listed in
the table's mutation rights; and every governed type declares what its conditions read on the row
(``consent_scopes`` for consented rows and scope conditions, ``granted`` for rows seen under a
clinician's care or break-glass, ``clinician_pk`` for ``conducted`` conditions).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLObjectType
from strawberry.permission import PermissionExtension

from gateway.authz.field_check import FieldPolicy, MutationPolicy
from gateway.errors import ConfigurationError
from gateway.policy.table import MUTATIONS, POLICY, STRUCTURAL_TYPES, RowScope

__all__ = ["schema_problems", "verify_schema"]


def _guarded_by(field: Any, permission: type) -> bool:
    definition = field.extensions.get("strawberry-definition")
    return definition is not None and any(
        isinstance(extension, PermissionExtension)
        and any(isinstance(p, permission) for p in extension.permissions)
        for extension in definition.extensions
    )


def _declared(graphql_type: GraphQLObjectType) -> set[str]:
    """Attribute names the type's Python class declares (Strawberry's private fields included)."""
    origin = (graphql_type.extensions or {}).get("strawberry-definition")
    cls = getattr(origin, "origin", None)
    return set(getattr(cls, "__dataclass_fields__", {})) if cls is not None else set()


def schema_problems(schema: Any) -> list[str]:
    """Every gap in layer 1 of a Strawberry schema, as short sentences (empty: none)."""
    problems: list[str] = []
    policies = {entry.type_name: entry for entry in POLICY}
    for name, graphql_type in schema._schema.type_map.items():
        if name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        entry = policies.get(name)
        if entry is None:
            if name not in STRUCTURAL_TYPES:
                problems.append(f"type {name} is not in the policy table")
            continue
        problems += [
            f"{name}.{field}"
            for field, value in graphql_type.fields.items()
            if not _guarded_by(value, FieldPolicy)
        ]
        declared = _declared(graphql_type)
        conditions = [c for grant in entry.grants.values() for c in grant.fields.values()]
        scopes = {grant.rows for grant in entry.grants.values()}
        needs = {"pk", "owner"}
        if RowScope.CONSENTED in scopes or any(condition.scope for condition in conditions):
            needs.add("consent_scopes")
        if RowScope.CONDUCTED in scopes:
            needs.add("granted")
        if any(condition.conducted for condition in conditions):
            needs.add("clinician_pk")
        problems += [f"{name} does not declare {attr}" for attr in sorted(needs - declared)]
    mutation = schema._schema.mutation_type
    fields = mutation.fields if mutation is not None else {}
    listed = {right.mutation for right in MUTATIONS}
    problems += [
        f"Mutation.{field} is not guarded by MutationPolicy"
        for field, value in fields.items()
        if not _guarded_by(value, MutationPolicy)
    ]
    problems += [
        f"Mutation.{field} has no right in the policy table"
        for field in fields
        if field not in listed
    ]
    return problems


def verify_schema(schema: Any) -> None:
    """Refuse a schema with a gap in layer 1."""
    problems = schema_problems(schema)
    if problems:
        raise ConfigurationError(f"schema: layer 1 has gaps: {'; '.join(problems)}")
