"""Layer 1's completeness: every field of every governed type carries the policy permission,
every object type is governed or purely structural, and schema.graphql matches the code."""

from __future__ import annotations

from pathlib import Path

import strawberry
from graphql import GraphQLObjectType
from strawberry.permission import PermissionExtension

from gateway.authz.field_check import FieldPolicy, policy_field
from gateway.policy.table import POLICY, governed_types
from resolvers import build_schema

STRUCTURAL = {
    "Subscription",
    "ConsultationEvent",
    "Query",
    "Mutation",
    "PageInfo",
    "ConsultationConnection",
    "ConsultationEdge",
    "AccessEventConnection",
    "AccessEventEdge",
}
ROOT = Path(__file__).resolve().parents[1]


def _guarded(field) -> bool:
    definition = field.extensions.get("strawberry-definition")
    return definition is not None and any(
        isinstance(extension, PermissionExtension)
        and any(isinstance(p, FieldPolicy) for p in extension.permissions)
        for extension in definition.extensions
    )


def unprotected_fields(schema: strawberry.Schema, governed: frozenset[str]) -> list[str]:
    """Every field of a governed type without FieldPolicy, and every object type that is
    neither governed nor structural."""
    problems = []
    for name, graphql_type in schema._schema.type_map.items():
        if name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        if name not in governed:
            if name not in STRUCTURAL:
                problems.append(f"type {name} is not in the policy table")
            continue
        problems += [
            f"{name}.{field}" for field, value in graphql_type.fields.items() if not _guarded(value)
        ]
    return problems


def test_every_field_of_every_governed_type_has_the_policy_permission():
    assert unprotected_fields(build_schema(), governed_types()) == []


@strawberry.type(name="Consultation")
class LeakyConsultation:
    pk: strawberry.Private[int]
    owner: strawberry.Private[int]
    id: strawberry.ID = policy_field()
    video_url: str | None = None


@strawberry.type(name="Replay")
class UngovernedReplay:
    url: str


@strawberry.type(name="Query")
class LeakyQuery:
    consultation: LeakyConsultation | None = None
    replay: UngovernedReplay | None = None


def test_the_walk_catches_a_new_unguarded_field_and_a_new_ungoverned_type():
    problems = unprotected_fields(strawberry.Schema(query=LeakyQuery), governed_types())
    assert problems == ["Consultation.videoUrl", "type Replay is not in the policy table"]


def test_every_policy_field_exists_in_the_schema_and_every_schema_field_has_a_rule():
    type_map = build_schema()._schema.type_map
    for entry in POLICY:
        schema_fields = set(type_map[entry.type_name].fields)
        granted = set().union(*(grant.fields for grant in entry.grants.values()))
        assert granted - schema_fields == set(), entry.type_name
        assert schema_fields - granted == set(), entry.type_name


def test_schema_graphql_at_the_root_is_the_exported_schema():
    exported = build_schema().as_str() + "\n"
    assert (ROOT / "schema.graphql").read_text() == exported, (
        "schema.graphql is stale: run `gateway schema --output schema.graphql`"
    )


def test_denied_fields_are_nullable_so_a_denial_never_wipes_the_response():
    type_map = build_schema()._schema.type_map
    from graphql import GraphQLNonNull

    for entry in POLICY:
        for name, field in type_map[entry.type_name].fields.items():
            roles_denied = [r for r, g in entry.grants.items() if name not in g.fields]
            if roles_denied or name != "id":
                assert not isinstance(field.type, GraphQLNonNull), f"{entry.type_name}.{name}"
