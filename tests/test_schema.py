"""Layer 1's completeness: every field of every governed type carries the policy permission,
every object type is governed or purely structural, and schema.graphql matches the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import strawberry

from gateway.authz.field_check import policy_field
from gateway.authz.schema_check import schema_problems, verify_schema
from gateway.errors import ConfigurationError
from gateway.policy.table import POLICY
from resolvers import build_schema

ROOT = Path(__file__).resolve().parents[1]


def test_every_field_of_every_governed_type_has_the_policy_permission():
    assert schema_problems(build_schema()) == []


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


@strawberry.type(name="Mutation")
class LeakyMutation:
    @strawberry.mutation
    def open_break_glass(self) -> bool:
        return True

    @strawberry.mutation
    def delete_everything(self) -> bool:
        return True


def test_the_schema_check_names_every_gap_in_layer_one():
    schema = strawberry.Schema(query=LeakyQuery, mutation=LeakyMutation)
    assert schema_problems(schema) == [
        "Consultation.videoUrl",
        "Consultation does not declare clinician_pk",
        "Consultation does not declare consent_scopes",
        "Consultation does not declare granted",
        "type Replay is not in the policy table",
        "Mutation.openBreakGlass is not guarded by MutationPolicy",
        "Mutation.deleteEverything is not guarded by MutationPolicy",
        "Mutation.deleteEverything has no right in the policy table",
    ]


def test_a_schema_with_a_gap_refuses_to_build():
    with pytest.raises(ConfigurationError, match=r"Consultation\.videoUrl"):
        verify_schema(strawberry.Schema(query=LeakyQuery))


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
