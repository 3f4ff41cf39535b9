"""Compiled plans and graphql-core give the same answer: a differential test.

Every trusted operation (the apps' manifest, the benchmark's workload and
tests/plan_operations.graphql, which uses every construct a plan must handle) runs for every role
through both executors, over data sets hypothesis generates on top of the seeded database:
consents of any scopes, active, revoked or expired; break-glass grants, active or expired; new
consultations and recordings with missing fields; variables pointing at own, foreign, malformed
and other-typed objects, pages and cursors, and every @include/@skip outcome. The data
(serialized, so key order counts), the errors (path, code, message, locations), the ledger
(reads, denials, objects, break-glass) and the audit events must be identical.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from pathlib import Path
from typing import Annotated, NewType
from uuid import UUID, uuid4

import asyncpg
import orjson
import pytest
import strawberry
from graphql.pyutils import Undefined
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.directive import DirectiveLocation, DirectiveValue
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension
from strawberry.schema.config import StrawberryConfig

from gateway.audit.events import events_from_ledger
from gateway.authz.field_check import FieldPolicy
from gateway.authz.playback import PlaybackSigner
from gateway.data.pool import Database
from gateway.execution import plan as plan_module
from gateway.execution.compiler import NotCompilable, compile_operation
from gateway.execution.context import RequestContext
from gateway.execution.executor import Executor
from gateway.guards.trusted_documents import build_manifest
from gateway.identity import Principal, Role
from gateway.ids import encode_cursor, encode_global_id, encode_sequence_cursor
from gateway.ledger import Ledger
from gateway.policy import scopes
from gateway.web.error_format import format_error
from resolvers import build_schema
from tests.support.production import offline_production_settings

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    ROOT / "apps" / "operations",
    ROOT / "apps" / "partners",
    ROOT / "bench" / "operations.graphql",
    ROOT / "tests" / "plan_operations.graphql",
]


def _files() -> list[Path]:
    files: list[Path] = []
    for source in SOURCES:
        files += sorted(source.rglob("*.graphql")) if source.is_dir() else [source]
    return files


SETTINGS = offline_production_settings("plans")
SCHEMA = build_schema(SETTINGS)
MANIFEST = build_manifest(_files(), SCHEMA._schema)
OPERATIONS = {o["name"]: o for o in MANIFEST["operations"]}
# The benchmark's support page asks for 500 rows, past the default page size: refused by the
# limits on both paths (the benchmark raises GATEWAY_PAGE_SIZE_MAX).
REFUSED = {"Q4": "does not validate: 'first' may be at most 100"}
QUERIES = sorted(n for n, o in OPERATIONS.items() if o["type"] == "query" and n not in REFUSED)
ROLES = [role.value for role in Role]
EXAMPLES = 25  # per (operation, role); docs/TESTING.md gives the count and the run time


def test_every_trusted_query_compiles_and_a_mutation_runs_through_graphql_core():
    executor = Executor(
        SCHEMA,
        {o["id"]: o["body"] for o in OPERATIONS.values()},
        rules=SCHEMA.validation_rules,
        max_tokens=SCHEMA.max_tokens,
        names={o["id"]: o["name"] for o in OPERATIONS.values()},
    )
    assert all(executor.compiled(OPERATIONS[name]["id"]) for name in QUERIES)
    assert executor.not_compiled == {
        **REFUSED,
        **{
            name: "a mutation: only queries are compiled"
            for name in (
                "RevokeConsent",
                "RequestConsent",
                "AnswerConsentRequest",
                "RedeemConsentCode",
            )
        },
    }


def test_introspection_and_unknown_directives_are_left_to_graphql_core():
    for body, reason in [
        ("{ __schema { types { name } } }", "does not validate"),
        ("query Q { me { subject @deprecated } }", "does not validate"),
    ]:
        with pytest.raises(NotCompilable, match=reason):
            compile_operation(SCHEMA, body, rules=SCHEMA.validation_rules)


@pytest.mark.parametrize(
    ("body", "options", "reason"),
    [
        ("{ me {", {}, "does not parse: Syntax Error: Expected Name, found <EOF>."),
        (
            "{ me { subject } }",
            {"max_tokens": 3},
            "does not parse: Syntax Error: Document contains more than 3 tokens. Parsing aborted.",
        ),
        ("{ nope }", {}, "does not validate: Cannot query field 'nope' on type 'Query'. "
         "Did you mean 'node'?"),
        ("query A { me { subject } } query B { me { role } }", {},
         "a document of several operations"),
        ('mutation { revokeConsent(id: "x") { id } }', {}, "a mutation: only queries are compiled"),
        ('subscription { consultationEvents(consultationId: "x") { kind } }', {},
         "a subscription: only queries are compiled"),
    ],
)  # fmt: skip
def test_a_document_the_compiler_does_not_take_says_exactly_why(body, options, reason):
    with pytest.raises(NotCompilable) as refused:
        compile_operation(SCHEMA, body, rules=SCHEMA.validation_rules, **options)
    assert str(refused.value) == reason


def test_a_field_the_plan_cannot_run_is_refused_at_start_even_under_an_include():
    """Compiled once with no variables, every directive outcome is seen: introspection under an
    @include is found when the gateway starts, not at the first request that includes it."""
    body = "query Q($x: Boolean!) { me { role } __schema @include(if: $x) { queryType { name } } }"
    with pytest.raises(NotCompilable) as refused:
        compile_operation(SCHEMA, body)
    assert str(refused.value) == "introspection (__schema)"


@strawberry.input
class _Pair:
    left: str
    right: str


@strawberry.directive(
    locations=[DirectiveLocation.FIELD, DirectiveLocation.QUERY], description="A toy's own."
)
def shout(value: DirectiveValue[str]) -> str:
    return value.upper()


def _lonely() -> str:
    return "no self, no root"


@strawberry.type(name="Query")
class _ToyQuery:
    hello: str = "hi"
    lonely: str = strawberry.field(resolver=_lonely)

    @strawberry.field
    def joined(self, values: list[str]) -> str:
        return "+".join(values)

    @strawberry.field
    def paired(self, pair: _Pair) -> str:
        return pair.left + pair.right


def test_a_schemas_own_directives_and_list_or_object_arguments_are_left_to_graphql_core():
    """A plan runs @skip and @include only, and reads only scalar arguments (a literal, or a
    variable as a whole): a document with a directive of the schema's own, or a field taking a
    list or an input object, is not compiled, and runs through graphql-core."""
    toy = strawberry.Schema(query=_ToyQuery, directives=[shout])
    for body, reason in [
        ("{ hello @shout }", "the directive @shout"),
        ("query Q @shout { hello }", "a directive on an operation or fragment definition"),
        ("{ lonely }", "Query.lonely: a resolver without self or root"),
        ('query($v: String!) { joined(values: ["a", $v]) }', "Query.joined: a list argument"),
        (
            'query($v: String!) { paired(pair: {left: "l", right: $v}) }',
            "Query.paired: argument pair",
        ),
    ]:
        with pytest.raises(NotCompilable) as refused:
            compile_operation(toy, body)
        assert str(refused.value) == reason


_Blank = NewType("_Blank", str)
_Void = NewType("_Void", str)
_BLANK_CONFIG = StrawberryConfig(
    scalar_map={
        _Blank: strawberry.scalar(
            name="Blank", serialize=lambda value: None, parse_value=lambda value: value
        ),
        _Void: strawberry.scalar(
            name="Void", serialize=lambda value: Undefined, parse_value=lambda value: value
        ),
    }
)


@strawberry.type(name="Item")
class _BlankItem:
    stored: _Blank
    stored_maybe: _Blank | None
    absent: str | None = strawberry.field(graphql_type=str, default=None)  # non-null in GraphQL

    @strawberry.field
    def resolved(self) -> _Blank:
        return _Blank("z")

    @strawberry.field
    def missing(self) -> str:
        return None  # type: ignore[return-value]  # a resolver that breaks its type

    @strawberry.field
    def missing_items(self) -> list[str]:
        return ["a", None]  # type: ignore[list-item]

    @strawberry.field
    def missing_list(self) -> list[str]:
        return None  # type: ignore[return-value]

    @strawberry.field
    def unset(self) -> _Void:
        return _Void("w")  # its scalar coerces it to Undefined


@strawberry.type(name="Query")
class _BlankQuery:
    @strawberry.field
    def item(self) -> _BlankItem:
        return _BlankItem(stored=_Blank("x"), stored_maybe=_Blank("y"))


class _BareContext:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.principal = None


@pytest.mark.parametrize(
    "field",
    [
        "stored",
        "storedMaybe",
        "absent",
        "resolved",
        "missing",
        "missingItems",
        "missingList",
        "unset",
    ],
)
def test_a_value_that_breaks_its_type_is_the_same_error_on_both_executors(field):
    """graphql-core refuses a scalar coercion that returns null, and a null where the type says
    non-null; a plan says the same, with the same words and path, whether the value is an
    attribute, resolved, or an item of a list."""
    toy = strawberry.Schema(query=_BlankQuery, config=_BLANK_CONFIG)
    body = f"{{ item {{ {field} }} }}"
    compiled = compile_operation(toy, body)
    data, errors = asyncio.run(compiled.run(_BareContext(), compiled.variables({})))
    interpreted = toy.execute_sync(body)
    assert data == interpreted.data
    assert [(e.message, e.path) for e in errors] == [
        (e.message, e.path) for e in interpreted.errors
    ]
    assert errors[0].message.startswith(
        ("Expected `Blank.", "Expected `Void.", "Cannot return null for non-nullable")
    )


class _Anyone(strawberry.BasePermission):
    message = "anyone"

    def has_permission(self, source, info, **kwargs) -> bool:
        return True


class _Passing(FieldExtension):
    def resolve(self, next_, source, info, **kwargs):
        return next_(source, info, **kwargs)


@strawberry.type(name="Consultation")
class _Guarded:
    pk: strawberry.Private[int]
    owner: strawberry.Private[int]
    alone: str = strawberry.field(extensions=[PermissionExtension(permissions=[FieldPolicy()])])
    twice: str = strawberry.field(
        extensions=[PermissionExtension(permissions=[FieldPolicy(), _Anyone()])]
    )
    other: str = strawberry.field(extensions=[PermissionExtension(permissions=[_Anyone()])])
    extended: str = strawberry.field(
        extensions=[PermissionExtension(permissions=[FieldPolicy()]), _Passing()]
    )


@strawberry.type(name="Note")
class _Note:
    text: str = strawberry.field(extensions=[PermissionExtension(permissions=[_Anyone()])])


@strawberry.type(name="Query")
class _GuardQuery:
    consultation: _Guarded | None = None
    note: _Note | None = None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{ consultation { twice } }", "Consultation.twice is not guarded by FieldPolicy alone"),
        ("{ consultation { other } }", "Consultation.other is not guarded by FieldPolicy alone"),
        ("{ consultation { extended } }", "Consultation.extended has field extensions"),
        ("{ note { text } }", "Note.text has permissions outside the policy table"),
    ],
)
def test_a_field_whose_guard_a_plan_would_not_run_is_left_to_graphql_core(body, reason):
    """A plan runs the policy table's field gate and nothing else: a governed field guarded by
    anything more or other than FieldPolicy, a field with another extension, or a permission on
    a type outside the table would lose that guard in a plan, so it is not compiled."""
    toy = strawberry.Schema(query=_GuardQuery)
    with pytest.raises(NotCompilable) as refused:
        compile_operation(toy, body)
    assert str(refused.value) == reason
    compile_operation(toy, "{ consultation { alone } }")  # FieldPolicy alone compiles


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failure_awaiting_in_order_closes_every_coroutine_not_started(failing):
    """Awaited one after the other, the fields after a failed one never start: each is closed,
    as a cancelled task would be (no coroutine is left never awaited)."""
    import inspect

    async def fails():
        raise ValueError("the field failed")

    async def value():
        return 1

    started = [value() for _ in range(failing)]
    rest = [value() for _ in range(3)]
    with pytest.raises(ValueError, match="the field failed"):
        asyncio.run(plan_module._in_order([*started, fails(), *rest]))
    assert [inspect.getcoroutinestate(c) for c in started] == ["CORO_CLOSED"] * failing
    assert [inspect.getcoroutinestate(c) for c in rest] == ["CORO_CLOSED"] * 3
    assert all(c.cr_frame is None for c in rest)


@strawberry.type(name="Line")
class _AsyncLine:
    number: int

    @strawberry.field
    async def text(self) -> str:
        await asyncio.sleep(0)
        if self.number == 2:
            raise ValueError(f"line {self.number} failed")
        return f"line {self.number}"

    @strawberry.field
    async def note(self) -> str | None:
        await asyncio.sleep(0)
        return None if self.number % 2 else "even"


@strawberry.type(name="Query")
class _AsyncQuery:
    @strawberry.field
    def lines(self) -> list[_AsyncLine | None]:
        return [_AsyncLine(number=n) for n in range(4)]

    @strawberry.field
    def strict_lines(self) -> list[_AsyncLine] | None:
        return [_AsyncLine(number=n) for n in range(4)]

    @strawberry.field
    def good_lines(self) -> list[_AsyncLine]:
        return [_AsyncLine(number=n) for n in (0, 1, 3)]

    @strawberry.field
    def broken_lines(self) -> list[_AsyncLine] | None:
        return [_AsyncLine(number=0), None, _AsyncLine(number=3)]  # type: ignore[list-item]


@pytest.mark.parametrize(
    "body",
    [
        "{ lines { number text note } }",
        "{ strictLines { number text } }",
        "{ goodLines { number text note } }",
        "{ goodLines { number note } lines { text } }",
        "{ brokenLines { number text } goodLines { number } }",
    ],
)
def test_list_items_whose_non_null_fields_are_awaited_complete_as_graphql_core(body):
    """Items of a list each completed with a non-null field that fails after an await: the
    failing item (or the whole list, when its items are non-null) is nulled with one error at
    its path, the others completed, exactly as graphql-core does; a null item where items are
    non-null nulls the list while earlier items are still pending, and those settle."""
    toy = strawberry.Schema(query=_AsyncQuery)
    compiled = compile_operation(toy, body)

    async def both():
        run = plan_module.PlanRun(_BareContext(), compiled.variables({}))
        data = await run.root(compiled.tree(compiled.variables({})), None)
        await run.settled()
        return data, run.errors, await toy.execute(body)

    data, errors, interpreted = asyncio.run(both())
    assert data == interpreted.data
    assert [(e.message, e.path) for e in errors] == [
        (e.message, e.path) for e in interpreted.errors or []
    ]


async def _yields(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


@strawberry.type(name="Late")
class _Late:
    """A non-null field that fails after ``after`` turns of the loop, or answers."""

    after: strawberry.Private[int]
    fails: strawberry.Private[bool]

    @strawberry.field
    async def text(self) -> str:
        await _yields(self.after)
        if self.fails:
            raise ValueError(f"failed after {self.after}")
        return f"answered after {self.after}"


@strawberry.type(name="Pair")
class _LatePair:
    """Two non-null fields failing at different times: the first to fail in time is the one
    graphql-core reports, whatever their order in the document."""

    @strawberry.field
    async def slow(self) -> str:
        await _yields(5)
        raise ValueError("slow failed")

    @strawberry.field
    async def fast(self) -> str:
        await _yields(1)
        raise ValueError("fast failed")


@strawberry.type(name="Holder")
class _Holder:
    """Objects and lists held as attributes (no resolver), whose items fail after an await."""

    lines: list[_AsyncLine]
    line: _AsyncLine
    grid: list[list[_AsyncLine] | None]


@strawberry.type(name="Child")
class _Child:
    """A nullable field failing late, beside a non-null one failing at once."""

    @strawberry.field
    async def late(self) -> str | None:
        await _yields(3)
        raise ValueError("late failure")

    @strawberry.field
    def crash(self) -> str:
        raise ValueError("crashed")


@strawberry.type(name="Two")
class _TwoLate:
    """Two nullable fields failing after an await, the second one first."""

    @strawberry.field
    async def slow(self) -> str | None:
        await _yields(5)
        raise ValueError("slow failed")

    @strawberry.field
    async def fast(self) -> str | None:
        await _yields(1)
        raise ValueError("fast failed")


@strawberry.type(name="Numbered")
class _Numbered:
    """String and ID attributes holding numbers: coerced to strings, as graphql-core does."""

    code: strawberry.ID
    label: str


@strawberry.type(name="Parent")
class _Parent:
    child: _Child


_LateOrHolder = Annotated[_Late | _Holder, strawberry.union("LateOrHolder")]


def _late(*steps: tuple[int, bool]) -> list[_Late]:
    return [_Late(after=after, fails=fails) for after, fails in steps]


@strawberry.type(name="Query")
class _EdgeQuery:
    @strawberry.field
    def holder(self) -> _Holder | None:
        lines = [_AsyncLine(number=n) for n in range(4)]
        return _Holder(lines=lines, line=lines[2], grid=[lines[:2], lines[2:]])

    @strawberry.field
    def pair(self) -> _LatePair | None:
        return _LatePair()

    @strawberry.field
    def racing(self) -> list[_Late] | None:
        return _late((5, True), (1, True))

    @strawberry.field
    def one(self) -> list[_AsyncLine | None]:
        return [_AsyncLine(number=1)]

    @strawberry.field
    def one_failing(self) -> list[_AsyncLine | None]:
        return [_AsyncLine(number=2)]

    @strawberry.field
    def twice_failing(self) -> list[_AsyncLine | None]:
        return [_AsyncLine(number=2), _AsyncLine(number=1), _AsyncLine(number=2)]

    @strawberry.field
    def rows(self) -> list[list[_AsyncLine | None]]:
        return [[_AsyncLine(number=n)] for n in range(4)]

    @strawberry.field
    def broken_grid(self) -> list[list[_AsyncLine] | None]:
        return [[_AsyncLine(number=0), None], [_AsyncLine(number=1)]]  # type: ignore[list-item]

    @strawberry.field
    async def first_line(self) -> _AsyncLine:
        await asyncio.sleep(0)
        return _AsyncLine(number=1)

    @strawberry.field
    async def maybe_line(self) -> _AsyncLine | None:
        await asyncio.sleep(0)
        return _AsyncLine(number=3)

    @strawberry.field
    async def awaited_broken(self) -> list[_AsyncLine] | None:
        await asyncio.sleep(0)
        return [_AsyncLine(number=0), None]  # type: ignore[list-item]

    @strawberry.field
    def left_running(self) -> list[_Late] | None:
        # The null item fails at once, while the first two are pending: one fails later, one
        # answers later still.
        return [*_late((1, True), (8, False)), None]  # type: ignore[list-item]

    @strawberry.field
    def parent(self) -> _Parent | None:
        return _Parent(child=_Child())

    @strawberry.field
    def numbered(self) -> _Numbered:
        return _Numbered(code=5, label=7)  # type: ignore[arg-type]

    @strawberry.field
    def twos(self) -> list[_TwoLate]:
        return [_TwoLate(), _TwoLate()]

    @strawberry.field
    def either(self) -> _LateOrHolder:
        return _Late(after=0, fails=False)

    @strawberry.field
    def neither(self) -> _LateOrHolder:
        return None  # type: ignore[return-value]


_EDGES = strawberry.Schema(query=_EdgeQuery)


def _both_ways(body: str) -> tuple[tuple, tuple]:
    """(data, errors) from a plan, then from graphql-core; the plan's run settled first, with
    every warning it raises recorded (a coroutine left never awaited is one)."""
    compiled = compile_operation(_EDGES, body)

    async def planned():
        run = plan_module.PlanRun(_BareContext(), compiled.variables({}))
        data = await run.root(compiled.tree(compiled.variables({})), None)
        await run.settled()
        running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert running == [], f"settled, yet still running: {running}"
        return data, [(e.message, e.path) for e in run.errors]

    import gc
    import warnings

    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        plan = asyncio.run(planned())
        gc.collect()
    assert [str(w.message) for w in raised] == []
    interpreted = asyncio.run(_EDGES.execute(body))
    return plan, (interpreted.data, [(e.message, e.path) for e in interpreted.errors or []])


@pytest.mark.parametrize(
    ("body", "data"),
    [
        # A non-null list or object held as an attribute, failing after an await: its holder
        # is nulled (not the field alone, as a queued field would be).
        ("{ holder { lines { number text } } }", {"holder": None}),
        ("{ holder { line { text } } }", {"holder": None}),
        # Two non-null fields, or items, failing at different times: the first in time.
        ("{ pair { slow fast } }", {"pair": None}),
        ("{ racing { text } }", {"racing": None}),
        # One pending item; items of lists, pending one after the other.
        ("{ one { number text } }", {"one": [{"number": 1, "text": "line 1"}]}),
        ("{ oneFailing { number text } }", {"oneFailing": [None]}),
        ("{ twiceFailing { text } }", {"twiceFailing": [None, {"text": "line 1"}, None]}),
        (
            "{ rows { number text } }",
            {
                "rows": [
                    [{"number": 0, "text": "line 0"}],
                    [{"number": 1, "text": "line 1"}],
                    [None],
                    [{"number": 3, "text": "line 3"}],
                ]
            },
        ),
        (
            "{ holder { grid { number text } } }",
            {
                "holder": {
                    "grid": [
                        [{"number": 0, "text": "line 0"}, {"number": 1, "text": "line 1"}],
                        None,
                    ]
                }
            },
        ),
        ("{ brokenGrid { number } }", {"brokenGrid": [None, [{"number": 1}]]}),
        # An awaited resolver's value completed in turn: an object with awaited fields, a list
        # with a null item.
        ("{ firstLine { number text } }", {"firstLine": {"number": 1, "text": "line 1"}}),
        # The same, queued (no sibling can fail after an await): completed where it is drained.
        ("{ awaitedBroken { number } }", {"awaitedBroken": None}),
        ("{ maybeLine { number text } }", {"maybeLine": {"number": 3, "text": "line 3"}}),
        (
            "{ firstLine { number } awaitedBroken { number } }",
            {"firstLine": {"number": 1}, "awaitedBroken": None},
        ),
        # A nullable object whose completion fails after an await is nulled where it is, and
        # an error found later elsewhere is still reported.
        (
            "{ one { number } pair { fast } parent { child { late } } }",
            {"one": [{"number": 1}], "pair": None, "parent": {"child": {"late": None}}},
        ),
        # A list nulled while items are pending: they settle, none left running or unawaited.
        ("{ leftRunning { text } }", {"leftRunning": None}),
        # Numbers held by String and ID attributes, coerced.
        ("{ numbered { code label } }", {"numbered": {"code": "5", "label": "7"}}),
        # A field failing late, under an object already nulled: its error is not reported.
        ("{ parent { child { late crash } } }", {"parent": None}),
        # A union: resolved by class, and null where it may not be.
        (
            "{ either { __typename ... on Late { text } } }",
            {"either": {"__typename": "Late", "text": "answered after 0"}},
        ),
        ("{ neither { __typename } }", None),
    ],
)
def test_the_plans_rarer_paths_complete_as_graphql_core(body, data):
    """Lists and objects whose items fail after an await, in every shape a plan completes in
    its own way (gathered or one after the other, queued or not, one pending item or many):
    the same data and the same errors, at the same paths, as graphql-core."""
    plan, interpreted = _both_ways(body)
    assert plan == interpreted
    assert plan[0] == data


def test_nullable_fields_failing_after_an_await_are_reported_in_the_documents_order():
    """The one difference from graphql-core a plan keeps, and why: the errors of nullable fields
    that fail after an await are the same errors at the same paths, but a plan reports them in
    the order of the document (it awaits each queued field in turn, which is what lets their
    loads be batched), where graphql-core reports them in the order they failed in. The GraphQL
    specification gives the errors list no order; a plan's does not depend on timing."""
    plan, interpreted = _both_ways("{ twos { slow fast } }")
    assert plan[0] == interpreted[0] == {"twos": [{"slow": None, "fast": None}] * 2}
    assert plan[1] == [
        ("slow failed", ["twos", 0, "slow"]),
        ("fast failed", ["twos", 0, "fast"]),
        ("slow failed", ["twos", 1, "slow"]),
        ("fast failed", ["twos", 1, "fast"]),
    ]
    assert sorted(plan[1]) == sorted(interpreted[1])
    assert interpreted[1][0] == ("fast failed", ["twos", 0, "fast"])  # the first to fail


def test_a_union_value_of_no_member_class_is_refused_with_graphql_cores_words():
    """A plan resolves a union by the value's class; a value of none of its members is an error
    in graphql-core's words (Strawberry's own resolver words it differently), and is nulled
    like it."""
    toy = strawberry.Schema(query=_WrongMemberQuery)
    body = "{ wrong { __typename } }"
    compiled = compile_operation(toy, body)

    async def planned():
        run = plan_module.PlanRun(_BareContext(), compiled.variables({}))
        data = await run.root(compiled.tree(compiled.variables({})), None)
        return data, [(e.message, e.path, e.formatted["locations"]) for e in run.errors]

    assert asyncio.run(planned()) == (
        {"wrong": None},
        [
            (
                "Abstract type 'LateOrHolder' must resolve to an Object type at runtime for "
                "field 'Query.wrong'.",
                ["wrong"],
                [{"line": 1, "column": 3}],
            )
        ],
    )
    assert toy.execute_sync(body).data == {"wrong": None}


@strawberry.type(name="Query")
class _WrongMemberQuery:
    @strawberry.field
    def wrong(self) -> _LateOrHolder | None:
        return _LatePair()  # type: ignore[return-value]


def test_the_start_up_log_names_each_trusted_document_not_compiled_and_why(caplog):
    compiled = "{ me { subject } }"
    mutation = 'mutation { revokeConsent(id: "x") { id } }'
    long = "{ a: me { subject } b: me { subject } c: me { subject } d: me { subject } }"
    documents = {"a" * 64: compiled, "b" * 64: mutation, "c" * 64: long}
    with caplog.at_level("INFO", logger="gateway.execution"):
        executor = Executor(SCHEMA, documents, max_tokens=20, names={"b" * 64: "Revoke"})
    assert executor.compiled("a" * 64)
    assert executor.not_compiled == {
        "Revoke": "a mutation: only queries are compiled",
        "c" * 12: "does not parse: Syntax Error: Document contains more than 20 tokens. "
        "Parsing aborted.",
    }
    logged = [
        (r.getMessage(), getattr(r, "operation", None), getattr(r, "reason", None),
         getattr(r, "compiled", None), getattr(r, "not_compiled", None))
        for r in caplog.records
        if r.name == "gateway.execution"
    ]  # fmt: skip
    assert logged == [
        ("trusted document runs through graphql-core", "Revoke",
         "a mutation: only queries are compiled", None, None),
        ("trusted document runs through graphql-core", "c" * 12,
         executor.not_compiled["c" * 12], None, None),
        ("trusted documents compiled", None, None, 1, 2),
    ]  # fmt: skip


class Harness:
    """A loop, a pool as the application role and a superuser connection, kept for the module:
    hypothesis calls the test synchronously, once per example."""

    def __init__(self, env) -> None:
        self.env = env
        self.runner = asyncio.Runner()
        self.settings = env.settings()
        self.database = self.run(Database.connect(self.settings))
        self.admin = self.run(asyncpg.connect(env.admin_url))
        self.signer = PlaybackSigner(self.settings.signing_keys(), 300, clock=lambda: 1_900_000_000)
        self.compiled = {
            name: compile_operation(SCHEMA, OPERATIONS[name]["body"], rules=SCHEMA.validation_rules)
            for name in QUERIES
        }
        rows = self.run(
            self.admin.fetch(
                "select c.id, c.patient_id, c.scheduled_at, "
                "(select array_agg(r.id) from data.recordings r where r.consultation_id = c.id) "
                "as recordings from data.consultations c order by c.id"
            )
        )
        self.consultations = [(r["id"], r["patient_id"], r["scheduled_at"]) for r in rows]
        self.recordings = [pk for r in rows for pk in r["recordings"] or ()]
        self.events = [
            r["seq"]
            for r in self.run(self.admin.fetch("select seq from data.access_events limit 50"))
        ]

    def run(self, work):
        return self.runner.run(work)

    def close(self) -> None:
        self.run(self.database.close())
        self.run(self.admin.close())
        self.runner.close()


@pytest.fixture(scope="module")
def harness(env):
    made = Harness(env)
    try:
        yield made
    finally:
        made.close()


@st.composite
def scenarios(draw, role: str):
    return {
        "role": role,
        "caller": draw(st.integers(0, 50)),
        "token_scopes": draw(st.sets(st.sampled_from(scopes.ALL))),
        "consent": draw(
            st.none()
            | st.tuples(
                st.sets(st.sampled_from(scopes.ALL), min_size=1),
                st.sampled_from(["active", "revoked", "expired"]),
            )
        ),
        "break_glass": draw(st.none() | st.sampled_from(["active", "expired"])),
        "target": draw(st.integers(0, 10_000)),
        "new_consultation": draw(
            st.none()
            | st.tuples(
                st.sampled_from(["SCHEDULED", "IN_PROGRESS", "COMPLETED", "CANCELLED"]),
                st.sampled_from(["AUDIO", "VIDEO"]),
                st.booleans(),
                st.integers(0, 3),
            )
        ),
        "variables": draw(st.integers(0, 2**32)),
    }


def _principal(env, harness, scenario) -> Principal:
    role = Role(scenario["role"])
    people = [p for p in env.principals if p["role"] == role.value]
    person = people[scenario["caller"] % len(people)]
    actor = None
    if person["id"] is not None:
        from gateway.ids import decode_global_id

        actor = decode_global_id(person["id"])[1]
    granted = frozenset(scenario["token_scopes"]) if role is Role.PARTNER else frozenset()
    return Principal(
        env.identity.issuer, person["subject"], role, actor, time.time() + 600, scopes=granted
    )


def _variables(harness, scenario, name: str, target_patient: UUID) -> dict:
    """Values for the operation's variables: own, foreign, malformed and other-typed IDs,
    page sizes inside and past the limit, real, foreign and forged cursors, both booleans."""
    pick = random.Random(scenario["variables"])
    consultation, _, at = pick.choice(harness.consultations)
    own = [c for c in harness.consultations if c[1] == target_patient] or harness.consultations
    ids = {
        "Consultation": [encode_global_id("Consultation", c[0]) for c in (pick.choice(own),)]
        + [encode_global_id("Consultation", consultation)],
        "Recording": [encode_global_id("Recording", pick.choice(harness.recordings))],
        "Patient": [encode_global_id("Patient", target_patient)],
    }
    any_id = [
        *ids["Consultation"],
        *ids["Recording"],
        *ids["Patient"],
        "not-an-id",
        encode_global_id("Consultation", uuid4()),
    ]
    values = {}
    definitions = harness.compiled[name].operation.variable_definitions or ()
    for definition in definitions:
        variable = definition.variable.name.value
        type_name = getattr(getattr(definition.type, "type", definition.type), "name", None)
        type_name = type_name.value if type_name else ""
        if pick.random() < 0.15 and definition.type.kind != "non_null_type":
            continue
        if type_name == "ID":
            pool = {"consultation": ids["Consultation"], "recording": ids["Recording"]}.get(
                variable, ids["Patient"] if variable == "patient" else any_id
            )
            values[variable] = pick.choice([*pool, *any_id[3:]])
        elif type_name == "Int":
            values[variable] = pick.choice([None, 0, 1, 2, 5, 20, 100, 101, -1, "five"])
        elif type_name == "String":
            values[variable] = pick.choice(
                [
                    None,
                    encode_cursor(at, consultation),
                    encode_sequence_cursor(pick.choice(harness.events or [1])),
                    "garbage",
                ]
            )
        elif type_name == "Boolean":
            values[variable] = pick.choice([True, False])
    return values


async def _setup(harness, principal, scenario, patient: UUID) -> list[tuple[str, UUID]]:
    """Make the scenario's rows as superuser; returns what to delete afterwards."""
    made: list[tuple[str, UUID]] = []
    admin = harness.admin
    await admin.execute("set session_replication_role = replica")
    try:
        if scenario["consent"] and principal.role is Role.PARTNER:
            granted, state = scenario["consent"]
            pk = uuid4()
            expires = (
                "now() - interval '1 day'" if state == "expired" else "now() + interval '1 day'"
            )
            revoked = "now()" if state == "revoked" else "null"
            await admin.execute(
                "insert into data.consents (id, patient_id, partner_id, scopes, granted_at, "
                f"expires_at, revoked_at) values ($1, $2, $3, $4, now() - interval '2 days', "
                f"{expires}, {revoked})",
                pk,
                patient,
                principal.actor_id,
                sorted(granted),
            )
            made.append(("consents", pk))
        if scenario["break_glass"] and principal.role is Role.CLINICIAN:
            pk = uuid4()
            expires = (
                "now() - interval '1 hour'"
                if scenario["break_glass"] == "expired"
                else "now() + interval '1 hour'"
            )
            await admin.execute(
                "insert into data.break_glass_grants (id, clinician_id, patient_id, reason, "
                f"opened_at, expires_at) values ($1, $2, $3, $4, now() - interval '2 hours', "
                f"{expires})",
                pk,
                principal.actor_id,
                patient,
                "differential test: emergency access reason",
            )
            made.append(("break_glass_grants", pk))
        if scenario["new_consultation"]:
            status, mode, with_summary, segments = scenario["new_consultation"]
            pk = uuid4()
            clinician = await admin.fetchval("select id from data.clinicians order by id limit 1")
            await admin.execute(
                "insert into data.consultations (id, patient_id, clinician_id, scheduled_at, "
                "status, mode, reason, summary, clinician_notes) values "
                "($1, $2, $3, now() + interval '30 days', $4, $5, 'generated', $6, null)",
                pk,
                patient,
                clinician,
                status,
                mode,
                "a summary" if with_summary else None,
            )
            for index in range(segments):
                recording = uuid4()
                await admin.execute(
                    "insert into data.recordings (id, consultation_id, patient_id, "
                    "segment_index, mode, started_at, duration_seconds, content_type, "
                    "byte_size, storage_key) values ($1, $2, $3, $4, $5, now(), 60, "
                    "'video/webm', 100, $6)",
                    recording,
                    pk,
                    patient,
                    index,
                    mode,
                    f"recordings/{patient}/{recording}.webm",
                )
                made.append(("recordings", recording))
            made.append(("consultations", pk))
    finally:
        await admin.execute("set session_replication_role = origin")
    return made


async def _teardown(harness, made) -> None:
    for table, pk in made:
        await harness.admin.execute(f"delete from data.{table} where id = $1", pk)


def _normalized(result, context, principal) -> tuple:
    """What must be equal. When an error nulls the whole response (data null), graphql-core
    cancels the sibling root fields mid-flight, and how far each got is a matter of timing: the
    response (errors, null data) must still be equal, and nothing of the ledger is sent."""
    ledger = context.ledger
    if result.data is None:
        errors = sorted(
            orjson.dumps(format_error(error, development=False), option=orjson.OPT_SORT_KEYS)
            for error in result.errors or []
        )
        return (b"null", errors)
    errors = sorted(
        orjson.dumps(format_error(error, development=False), option=orjson.OPT_SORT_KEYS)
        for error in result.errors or []
    )
    events = sorted(
        orjson.dumps(event, default=str, option=orjson.OPT_SORT_KEYS)
        for event in events_from_ledger(principal, "r", ledger)
    )
    return (
        orjson.dumps(result.data),
        errors,
        sorted(map(repr, ledger.reads)),
        sorted(map(repr, ledger.denials)),
        sorted(map(repr, ledger.objects)),
        sorted(ledger.break_glass.items()),
        events,
    )


async def _settled() -> None:
    """Let work an error left in the background finish (both executors settle siblings of a
    bubbling error in the background), so that both ledgers are complete when compared."""
    for _ in range(100):
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not others:
            return
        await asyncio.gather(*others, return_exceptions=True)


def _both(harness, name: str, scenario, variables: dict | None = None) -> tuple[tuple, tuple]:
    env = harness.env
    principal = _principal(env, harness, scenario)
    patients = [p for _, p in env.patients()]
    patient = patients[scenario["target"] % len(patients)]
    if principal.role is Role.PATIENT:
        patient = principal.actor_id if scenario["target"] % 3 else patient
    if variables is None:
        variables = _variables(harness, scenario, name, patient)
    operation = OPERATIONS[name]
    executor = Executor(SCHEMA, {operation["id"]: operation["body"]})

    async def run() -> tuple[tuple, tuple]:
        made = await _setup(harness, principal, scenario, patient)
        try:
            outcomes = []
            for document in (operation["id"], "not-compiled:" + secrets.token_hex(4)):
                context = RequestContext.open(
                    principal,
                    "r",
                    fetch=harness.database.fetch,
                    settings=harness.settings,
                    playback=harness.signer,
                )
                result, served = await executor.execute(
                    operation["body"], document, dict(variables), None, context
                )
                assert served == ("plan" if document == operation["id"] else "graphql-core")
                await _settled()
                outcomes.append(_normalized(result, context, principal))
            return outcomes[0], outcomes[1]
        finally:
            await _teardown(harness, made)

    return harness.run(run())


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", QUERIES)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_plan_and_graphql_core_agree(harness, name, role, data):
    scenario = data.draw(scenarios(role))
    planned, interpreted = _both(harness, name, scenario)
    assert planned == interpreted


def test_the_differential_catches_a_plan_that_skips_one_field_check(harness, monkeypatch):
    """The comparison is strong enough: a plan whose field check lets one denied field through
    (clinicianNotes, which a patient may never read) differs from graphql-core."""
    real = plan_module.field_check.decide

    def lenient(principal, source, type_name, fields):
        decisions = real(principal, source, type_name, fields)
        return [
            None if field == "clinicianNotes" else decision
            for field, decision in zip(fields, decisions, strict=True)
        ]

    monkeypatch.setattr(plan_module, "field_check", type("Lenient", (), {"decide": lenient}))
    scenario = {
        "role": "patient",
        "caller": 0,
        "token_scopes": set(),
        "consent": None,
        "break_glass": None,
        "target": 1,
        "new_consultation": None,
        "variables": 7,
    }
    planned, interpreted = _both(harness, "Everything", scenario, {"first": 5, "clinical": True})
    assert b"clinicianNotes" in interpreted[0]  # the query reached the field, and core denied it
    assert planned != interpreted
    assert planned[0] != interpreted[0]  # the notes reached the data
    assert planned[3] != interpreted[3]  # and the ledger lost their denial


@strawberry.type(name="Query")
class _EchoQuery:
    @strawberry.field
    def echo(self, n: int) -> int:
        return n


@pytest.mark.parametrize("count", [1, 50, 51, 60])
def test_variables_that_do_not_coerce_are_the_same_errors_on_both_executors(count):
    """A plan coerces variables as graphql-core does, with its cap: at most 50 errors, then
    graphql-core's "Too many errors" (a request of a thousand bad variables costs fifty)."""
    toy = strawberry.Schema(query=_EchoQuery)
    definitions = ", ".join(f"$v{i}: Int!" for i in range(count))
    selections = " ".join(f"a{i}: echo(n: $v{i})" for i in range(count))
    body = f"query Many({definitions}) {{ {selections} }}"
    inputs = {f"v{i}": "not a number" for i in range(count)}
    planned = compile_operation(toy, body).variables(inputs)
    interpreted = toy.execute_sync(body, variable_values=inputs)
    assert isinstance(planned, list)
    assert [e.message for e in planned] == [e.message for e in interpreted.errors]
    assert len(planned) == min(count, 51)
    if count > 50:
        assert planned[-1].message == (
            "Too many errors processing variables, error limit reached. Execution aborted."
        )


def test_a_plan_compiles_one_tree_per_directive_outcome_on_first_use():
    """@skip and @include choose the tree: each outcome is compiled the first time a request
    brings it, then reused (a request does not recompile its document)."""
    toy = strawberry.Schema(query=_EchoQuery)
    body = (
        "query Q($a: Boolean!, $b: Boolean!) "
        "{ x: echo(n: 1) @include(if: $a) y: echo(n: 2) @skip(if: $b) z: echo(n: 3) }"
    )
    compiled = compile_operation(toy, body)
    assert compiled.trees == {}

    def keys(a: bool, b: bool):
        tree = compiled.tree(compiled.variables({"a": a, "b": b}))
        return tree, [f.key for f in tree.fields]

    first, first_keys = keys(True, False)
    assert first_keys == ["x", "y", "z"]
    assert keys(True, False)[0] is first
    other, other_keys = keys(False, True)
    assert other_keys == ["z"] and other is not first
    assert keys(False, True)[0] is other
    assert list(compiled.trees) == [(True, True), (False, False)]


def test_a_level_of_loads_is_one_fetch_per_loader_with_no_dataloader_future(harness):
    """Q2 for a patient with consultations, by plan and by graphql-core: the same statements,
    as many of them (one per loader and level: the page, then clinicians, patients and
    recordings), and the same answer; the plan loads the consultations' clinicians, patients
    and recordings by key through ``Loaders.fetch`` (its generated code queues keys), so no
    DataLoader holds a future for any of them, where graphql-core's run holds one per key."""
    env = harness.env
    patient = next(p for p in env.principals if p["role"] == "patient" and p["id"] is not None)
    from gateway.ids import decode_global_id

    principal = Principal(
        env.identity.issuer,
        patient["subject"],
        Role.PATIENT,
        decode_global_id(patient["id"])[1],
        time.time() + 600,
    )
    operation = OPERATIONS["Q2"]
    executor = Executor(SCHEMA, {operation["id"]: operation["body"]})

    async def run() -> list[tuple]:
        outcomes = []
        for document in (operation["id"], "not-compiled"):
            statements: list[str] = []

            async def counted(statement: str, *args, statements=statements):
                statements.append(statement)
                return await harness.database.fetch(statement, *args)

            context = RequestContext.open(
                principal, "r", fetch=counted, settings=harness.settings, playback=harness.signer
            )
            result, served = await executor.execute(operation["body"], document, {}, None, context)
            assert served == ("plan" if document == operation["id"] else "graphql-core")
            loaders = context.loaders
            futures = {
                name: len(getattr(loaders, name)._cache)
                for name in ("clinician", "patient", "recordings_of")
            }
            answers = {name: len(loaders.answers[name]) for name in futures}
            outcomes.append((result.data, result.errors, statements, futures, answers))
        return outcomes

    planned, interpreted = harness.run(run())
    assert planned[1] is None and interpreted[1] is None
    assert planned[0] == interpreted[0]
    edges = planned[0]["consultations"]["edges"]
    assert edges and any(edge["node"]["recordings"] for edge in edges)
    assert sorted(planned[2]) == sorted(interpreted[2])
    assert len(planned[2]) == 4  # the page, clinicians, patients, recordings
    assert planned[3] == {"clinician": 0, "patient": 0, "recordings_of": 0}
    assert all(count > 0 for count in interpreted[3].values())
    assert planned[4] == interpreted[4]
