"""Layer 1's completeness: every field of every governed type carries the policy permission,
every object type is governed or purely structural, and schema.graphql matches the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension

from gateway.authz.fast_path import install_fast_path
from gateway.authz.field_check import FieldPolicy, MutationPolicy, policy_field
from gateway.authz.schema_check import schema_problems, verify_schema
from gateway.errors import ConfigurationError
from gateway.policy.table import POLICY, Role, RowScope, TypePolicy, governed_types, grant
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


class _Passing(FieldExtension):
    def resolve(self, next_, source, info, **kwargs):
        return next_(source, info, **kwargs)


class _Anyone(strawberry.BasePermission):
    message = "anyone"

    def has_permission(self, source, info, **kwargs) -> bool:
        return True


@strawberry.type(name="Note")
class UngovernedNote:
    text: str


@strawberry.type(name="Recording")
class HalfGuardedRecording:
    # No ``pk``: a governed type must declare the row's key and its owner.
    owner: strawberry.Private[int]
    # FieldPolicy among other permissions is guarded; other permissions alone, or another
    # extension, are not.
    id: strawberry.ID = strawberry.field(
        extensions=[PermissionExtension(permissions=[_Anyone(), FieldPolicy()])]
    )
    url: str = strawberry.field(extensions=[PermissionExtension(permissions=[_Anyone()])])
    kind: str = strawberry.field(extensions=[_Passing()])


@strawberry.type(name="Query")
class GapsInOrderQuery:
    note: UngovernedNote | None = None
    recording: HalfGuardedRecording | None = None


def test_the_schema_check_keeps_every_gap_in_type_order_and_reads_each_fields_permissions():
    schema = strawberry.Schema(query=GapsInOrderQuery)
    assert schema_problems(schema) == [
        "type Note is not in the policy table",
        "Recording.url",
        "Recording.kind",
        "Recording does not declare consent_scopes",
        "Recording does not declare granted",
        "Recording does not declare pk",
    ]


@pytest.mark.parametrize(
    "note_grant",
    [grant(RowScope.CONSENTED, "text"), grant(RowScope.EVERYONE, "text", scope="patient/Note.rs")],
    ids=["consented-rows", "scoped-field"],
)
def test_a_type_must_declare_consent_scopes_for_consented_rows_or_for_a_scoped_field(
    monkeypatch, note_grant
):
    from gateway.authz import schema_check

    note = TypePolicy("Note", {Role.PARTNER: note_grant})
    monkeypatch.setattr(schema_check, "POLICY", (*POLICY, note))
    problems = schema_problems(strawberry.Schema(query=GapsInOrderQuery))
    assert [problem for problem in problems if problem.startswith("Note")] == [
        "Note.text",
        "Note does not declare consent_scopes",
        "Note does not declare owner",
        "Note does not declare pk",
    ]


def test_a_schema_without_mutations_has_no_mutation_gap():
    @strawberry.type(name="Query")
    class OnlyQuery:
        hello: str = "hi"

    assert schema_problems(strawberry.Schema(query=OnlyQuery)) == []


def test_a_schema_with_a_gap_refuses_to_build_and_names_every_gap():
    with pytest.raises(ConfigurationError) as refused:
        verify_schema(strawberry.Schema(query=LeakyQuery))
    assert refused.value.message == (
        "schema: layer 1 has gaps: Consultation.videoUrl; "
        "Consultation does not declare clinician_pk; "
        "Consultation does not declare consent_scopes; "
        "Consultation does not declare granted; "
        "type Replay is not in the policy table"
    )


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


# --- the fast path: the same field check without Strawberry's per-field machinery ----------------


def _fast(field) -> bool:
    """Whether graphql-core calls the fast path's resolver for ``field``."""
    qualname = getattr(field.resolve, "__qualname__", "")
    return qualname.endswith(".<locals>.resolve") and (
        "_fast_attribute" in qualname or "_fast_resolver" in qualname
    )


# Resolvers taking only ``self`` (no Info) keep Strawberry's path, with the same FieldPolicy.
STRAWBERRY_PATH = {("Consent", "active"), ("ConsentRequest", "redirectTo"), ("Viewer", "role")}


def test_every_guarded_field_runs_the_field_check_on_the_fast_path_except_self_only_resolvers():
    schema = build_schema()
    fast, slow = set(), set()
    for type_name in governed_types():
        for field_name, field in schema._schema.type_map[type_name].fields.items():
            (fast if _fast(field) else slow).add((type_name, field_name))
    assert slow == STRAWBERRY_PATH
    assert install_fast_path(schema) == len(fast)  # idempotent, and it counts what it switched


@strawberry.type(name="Probe")
class _Probe:
    plain: str | None = policy_field()
    silent: str | None = strawberry.field(
        extensions=[PermissionExtension(permissions=[FieldPolicy()], fail_silently=True)]
    )
    other_permission: str | None = strawberry.field(
        extensions=[PermissionExtension(permissions=[FieldPolicy(), MutationPolicy()])]
    )
    two_guards: str | None = strawberry.field(
        extensions=[
            PermissionExtension(permissions=[FieldPolicy()]),
            PermissionExtension(permissions=[FieldPolicy()]),
        ]
    )
    guard_and_more: str | None = strawberry.field(
        extensions=[PermissionExtension(permissions=[FieldPolicy()]), _Passing()]
    )
    unguarded: str | None = None

    @policy_field()
    def with_info(self, info: strawberry.Info) -> str | None:
        return "x"

    @policy_field()
    def with_argument(self, info: strawberry.Info, n: int) -> str | None:
        return "x"

    @policy_field()
    def self_only(self) -> str | None:
        return "x"

    @policy_field()
    def with_root(self, root: str, info: strawberry.Info) -> str | None:
        return "x"

    @policy_field()
    def last_with_info(self, info: strawberry.Info) -> str | None:
        return "x"


@strawberry.type
class _ProbeRoot:
    probe: _Probe | None = None


def test_only_fields_guarded_by_the_field_check_alone_and_without_arguments_are_switched():
    schema = strawberry.Schema(query=_ProbeRoot)
    assert install_fast_path(schema) == 3
    fields = schema._schema.type_map["Probe"].fields
    switched = {name for name, f in fields.items() if _fast(f)}
    assert switched == {"plain", "withInfo", "lastWithInfo"}
