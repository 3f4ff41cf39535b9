"""A compiled plan: one trusted operation's selection tree, run without graphql-core.

The compiler (``execution.compiler``) resolves everything that does not change between requests:
fragments and aliases merged per type, the resolver or attribute of every field, how each value
is completed (leaf coercion, list, object, abstract type) and which types the policy governs.
Running a plan is graphql-core's algorithm with the interpretation taken out:

- every field of a governed type gets the one field gate's decision (``field_check.decide``, asked
  once per object for all its selected fields), recorded through ``Ledger.record_field`` as the
  field is reached; a denied field is FORBIDDEN at its path and never resolved;
- rows come only from the request's loaders, through the schema's own resolvers (a resolver reads
  ``info.context`` and nothing else of ``info``); an object's fields are resolved in selection
  order before anything is awaited, so the loaders batch across siblings as they do under
  graphql-core;
- errors and nulls propagate as graphql-core does them: an error at a non-null position nulls
  the nearest nullable ancestor and is reported once, where it was absorbed; a synchronous one
  stops the rest of its object or list (their pending work settles in the background); siblings
  awaited together are cancelled when one fails at a non-null position.

The result is data and errors as graphql-core's ``ExecutionResult`` holds them, so everything
after execution (error format, the disclosure step, serialization) is the same code for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError, located_error
from graphql.language import FieldNode
from graphql.pyutils import Undefined, gather_with_cancel, inspect

from gateway.authz import field_check
from gateway.authz.field_check import FORBIDDEN_MESSAGE
from gateway.data.loaders import LoadSpec, Then
from gateway.errors import Forbidden

__all__ = ["Deferred", "FieldPlan", "ObjectPlan", "PlanRun", "ValuePlan", "awaitable"]

Path = tuple[Any, str | int] | None  # (parent path, key), as graphql-core's linked Path
FieldPath = tuple[Path, str]  # a field's: its object's path and its response key


def _as_list(path: Path) -> list[str | int]:
    keys: list[str | int] = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    return keys


def awaitable(value: Any) -> bool:
    return getattr(type(value), "__await__", None) is not None


_awaitable = awaitable


class Deferred:
    """A queued field that is one load (``loaded_by``): its loader and key, fetched with every
    other key of its level in one ``Loaders.fetch`` per loader when the queue is drained."""

    __slots__ = ("key", "spec")

    def __init__(self, spec: LoadSpec, key: Any) -> None:
        self.spec = spec
        self.key = key


async def _in_order(awaitables: list[Any]) -> list[Any]:
    """Await one after the other; if one is cancelled (or fails), close the coroutines not
    started, as cancelled tasks would be."""
    values = []
    for done, awaitable in enumerate(awaitables):
        try:
            values.append(await awaitable)
        except BaseException:
            for rest in awaitables[done + 1 :]:
                if asyncio.iscoroutine(rest):
                    rest.close()
            raise
    return values


@dataclass(slots=True)
class ValuePlan:
    """How to complete one value of a GraphQL type (wrappers included)."""

    non_null: bool
    kind: str  # "leaf", "list", "object" or "abstract"
    coerce: Callable[[Any], Any] | None = None  # leaf
    item: ValuePlan | None = None  # list
    object: ObjectPlan | None = None  # object
    by_class: dict[type, ObjectPlan] | None = None  # abstract: runtime type by Python class
    describe: str = ""  # "Type.field", as graphql-core names it in errors
    abstract: str = ""  # the abstract type's name
    # Completing a value here can fail after an await (an error at a non-null position under
    # it): only then are its awaits gathered with cancellation, as graphql-core does.
    fails_async: bool = True
    strings: bool = False  # a String or ID leaf: a str is its own coercion
    leaf: str = ""  # the leaf type's name, as graphql-core names it in errors
    # A Strawberry enum: its class, and each member's name by the member's id.
    enum: type | None = None
    members: dict[int, str] | None = None


@dataclass(slots=True)
class FieldPlan:
    key: str  # the response key (alias or name)
    name: str  # the field's name
    nodes: tuple[FieldNode, ...]  # for error locations
    value: ValuePlan | None = None  # None for __typename
    attribute: str | None = None  # a plain attribute of the source
    resolver: Callable[..., Any] | None = None  # else: called with (source, **arguments)
    info_parameter: str | None = None
    arguments: Callable[[Any], dict[str, Any]] | None = None  # variables -> keyword arguments
    leaf_attribute: str | None = None  # set when the field is a plain attribute holding a scalar
    source_parameter: str | None = None  # the resolver takes its source by this name (root)
    index: int = -1  # position in the object's governed fields (its decision)
    load: LoadSpec | None = None  # the resolver is this one load (``loaded_by``)
    # The generated completion of this field's value (``execution.codegen``), else None.
    complete: Callable[[Any, Any, Path], Any] | None = None


@dataclass(slots=True)
class ObjectPlan:
    type_name: str
    fields: list[FieldPlan]
    governed: bool  # the policy table governs this type: every field is checked
    governed_names: tuple[str, ...] = field(default=())  # the fields the check judges, in order
    fails_async: bool = True  # a non-null field of it can fail after an await
    # The generated function completing an object of this plan (``execution.codegen``), else
    # None: ``PlanRun._object`` then walks it.
    complete: Callable[[Any, Any, Path], Any] | None = None


@dataclass(slots=True)
class PlanInfo:
    """What resolvers may read of ``info`` on the compiled path: the request's context."""

    context: Any


class PlanRun:
    """One execution of a plan for one request."""

    def __init__(self, context: Any, variables: Any) -> None:
        self._principal = context.principal
        self._ledger = context.ledger
        self._record = context.ledger.record_field
        loaders = getattr(context, "loaders", None)
        self._loaders = loaders
        self._answers = loaders.answers if loaders is not None else {}
        self._variables = variables
        self._info = PlanInfo(context)
        self.errors: list[GraphQLError] = []
        self._nulled: set[Path] = set()
        self._background: set[asyncio.Future[Any]] = set()
        # (field, awaitable, path, the dict it fills, whether the awaitable is its completion)
        self._queue: list[tuple[FieldPlan, Any, FieldPath, dict[str, Any], bool]] = []

    async def root(self, plan: ObjectPlan, root_value: Any) -> dict[str, Any] | None:
        result: dict[str, Any] | None
        try:
            completed = self._object(plan, root_value, None)
            result = await completed if _awaitable(completed) else completed
        except GraphQLError as error:
            self._add(error, None)
            result = None
        await self._drain()
        return result

    async def settled(self) -> None:
        """Wait for work left in the background by a bubbling error (tests read the ledger
        after it)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def decide(self, source: Any, type_name: str, fields: tuple[str, ...]) -> list[str | None]:
        """The field gate's decisions for one object's fields (generated code asks here)."""
        return field_check.decide(self._principal, source, type_name, fields)

    # --- errors ------------------------------------------------------------------------------

    def _add(self, error: GraphQLError, path: Path) -> None:
        """Report ``error``, absorbed at ``path``, unless that position or an ancestor was
        already nulled (graphql-core's CollectedErrors)."""
        position = path
        while position is not None:
            if position in self._nulled:
                return
            position = position[0]
        if None in self._nulled:
            return
        self._nulled.add(path)
        self.errors.append(error)

    def _handle(
        self, raw: Exception, plan: ValuePlan, nodes: Sequence[FieldNode], path: Path
    ) -> None:
        """graphql-core's handle_field_error: raise at a non-null position, else report."""
        error = located_error(raw, list(nodes), _as_list(path))
        if plan.non_null:
            raise error
        self._add(error, path)

    def _settle_in_background(self, awaitables: list[Any]) -> None:
        future = asyncio.gather(*awaitables, return_exceptions=True)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    # --- objects -----------------------------------------------------------------------------

    def _object(self, plan: ObjectPlan, source: Any, path: Path) -> Any:
        """The completed object, or an awaitable of it; raises a located error when a non-null
        field nulls it. An object none of whose fields can fail after an await (``fails_async``
        false) completes at once: its pending fields, all nullable, are queued for ``_drain``
        and filled in place. A plan with generated code (``complete``) runs that instead."""
        if plan.complete is not None:
            return plan.complete(self, source, path)
        results: dict[str, Any] = {}
        queued = not plan.fails_async
        awaitable_keys: list[str] = []
        verdicts = (
            field_check.decide(self._principal, source, plan.type_name, plan.governed_names)
            if plan.governed
            else None
        )
        type_name = plan.type_name
        try:
            for field_plan in plan.fields:
                key = field_plan.key
                value_plan = field_plan.value
                if value_plan is None:  # __typename
                    results[key] = type_name
                    continue
                field_path = (path, key)
                try:
                    if verdicts is not None and not self._record(
                        type_name,
                        source.pk,
                        source.owner,
                        field_plan.name,
                        verdicts[field_plan.index],
                    ):
                        raise Forbidden(FORBIDDEN_MESSAGE)
                    leaf = field_plan.leaf_attribute
                    if leaf is not None:
                        value = getattr(source, leaf)
                        if type(value) is str and value_plan.strings:
                            results[key] = value
                        elif value is None:
                            if value_plan.non_null:
                                raise TypeError(
                                    "Cannot return null for non-nullable field "
                                    f"{value_plan.describe}."
                                )
                            results[key] = None
                        else:
                            results[key] = self._leaf(value_plan, value)
                        continue
                    value = self._resolve(field_plan, source)
                    if _awaitable(value):
                        if type(value) is not Then:
                            # An async resolver starts now, beside its siblings, so that the
                            # loads it makes are batched with theirs.
                            value = asyncio.ensure_future(value)
                        if queued:
                            results[key] = None
                            self._queue.append((field_plan, value, field_path, results, False))
                        else:
                            results[key] = self._complete_awaited(field_plan, value, field_path)
                            awaitable_keys.append(key)
                        continue
                    completed = self._complete(value_plan, field_plan, field_path, value)
                    if _awaitable(completed):
                        if queued:
                            completed, done = None, completed
                            self._queue.append((field_plan, done, field_path, results, True))
                        else:
                            completed = self._await_completed(
                                completed, value_plan, field_plan, field_path
                            )
                            awaitable_keys.append(key)
                    results[key] = completed
                except Exception as raw:
                    self._handle(raw, value_plan, field_plan.nodes, field_path)
                    results[key] = None
        except Exception:
            if awaitable_keys:
                self._settle_in_background([results[key] for key in awaitable_keys])
            raise
        if not awaitable_keys:
            return results
        return self._gather_fields(results, awaitable_keys, plan.fails_async)

    async def _drain(self) -> None:
        """Complete the queued fields, and the fields their completion queues, until none is
        left. Each was requested (its load queued) before the first await, so the loaders
        batch them; each is nullable, so its error is absorbed where it happens."""
        while self._queue:
            batch, self._queue = self._queue, []
            failed = await self._fetch(batch)
            for field_plan, pending, path, container, completed in batch:
                key = path[1]
                value_plan = field_plan.value
                assert value_plan is not None  # a queued field has a value (not __typename)
                try:
                    if completed:
                        value = await pending
                    else:
                        if type(pending) is Deferred:
                            loader = pending.spec.loader
                            if loader in failed:
                                raise failed[loader]
                            value = pending.spec.convert(self._answers[loader][pending.key])
                        elif type(pending) is Then:
                            value = pending.convert(await pending.future)
                        else:
                            value = await pending
                        if field_plan.complete is not None:
                            value = field_plan.complete(self, value, path)
                        else:
                            value = self._complete(value_plan, field_plan, path, value)
                        if _awaitable(value):
                            value = await value
                    container[key] = value
                except Exception as raw:
                    self._add(located_error(raw, list(field_plan.nodes), _as_list(path)), path)
                    container[key] = None

    async def _fetch(self, batch: list[Any]) -> dict[str, BaseException]:
        """Load the keys of the batch's deferred fields: one ``Loaders.fetch`` per loader, all
        at once (as a DataLoader dispatches its batches together). Returns the loaders whose
        fetch failed, with the error each of their fields reports."""
        keys: dict[str, list[Any]] = {}
        for entry in batch:
            pending = entry[1]
            if type(pending) is Deferred:
                keys.setdefault(pending.spec.loader, []).append(pending.key)
        if not keys:
            return {}
        assert self._loaders is not None  # a deferred field is a load: there are loaders
        fetch = self._loaders.fetch
        outcomes = await asyncio.gather(
            *(fetch(loader, wanted) for loader, wanted in keys.items()), return_exceptions=True
        )
        failed: dict[str, BaseException] = {}
        for loader, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failed[loader] = outcome
            elif isinstance(outcome, BaseException):  # cancelled: the request is ending
                raise outcome
        return failed

    @staticmethod
    async def _gather_fields(
        results: dict[str, Any], keys: list[str], fails: bool
    ) -> dict[str, Any]:
        """Await an object's pending fields. When none can fail (each is nullable, so its error
        is absorbed where it happens), one after the other: their loads are already queued
        together, and the outcome is the same. Else as graphql-core: gathered, the rest
        cancelled at the first failure."""
        if len(keys) == 1 or not fails:
            for done, value in enumerate(await _in_order([results[key] for key in keys])):
                results[keys[done]] = value
        else:
            values = await gather_with_cancel(*(results[key] for key in keys))
            results.update(zip(keys, values, strict=True))
        return results

    def _resolve(self, field_plan: FieldPlan, source: Any) -> Any:
        if field_plan.attribute is not None:
            return getattr(source, field_plan.attribute)
        kwargs = field_plan.arguments(self._variables) if field_plan.arguments else {}
        if field_plan.info_parameter is not None:
            kwargs[field_plan.info_parameter] = self._info
        resolver = field_plan.resolver
        assert resolver is not None  # a field that is no attribute has its resolver
        if field_plan.source_parameter is not None:
            kwargs[field_plan.source_parameter] = source
            return resolver(**kwargs)
        return resolver(source, **kwargs)

    async def _complete_awaited(self, field_plan: FieldPlan, value: Any, path: Path) -> Any:
        """graphql-core's complete_awaitable_value."""
        value_plan = field_plan.value
        assert value_plan is not None  # a resolved field has a value (not __typename)
        try:
            completed = self._complete(value_plan, field_plan, path, await value)
            if _awaitable(completed):
                completed = await completed
        except Exception as raw:
            self._handle(raw, value_plan, field_plan.nodes, path)
            completed = None
        return completed

    async def _await_completed(
        self, completed: Awaitable[Any], plan: ValuePlan, field_plan: FieldPlan, path: Path
    ) -> Any:
        try:
            return await completed
        except Exception as raw:
            self._handle(raw, plan, field_plan.nodes, path)
            return None

    # --- values ------------------------------------------------------------------------------

    @staticmethod
    def _leaf(plan: ValuePlan, value: Any) -> Any:
        """A non-null leaf value coerced (null has been handled), as graphql-core's
        complete_leaf_value: a scalar that coerces it to nothing is an error, with its words."""
        assert plan.coerce is not None  # a leaf's plan has its coercion
        coerced = plan.coerce(value)
        if coerced is None or coerced is Undefined:
            raise TypeError(
                f"Expected `{plan.leaf}.coerce_output_value({inspect(value)})` to return "
                f"non-nullable value, returned: {inspect(coerced)}"
            )
        return coerced

    def _complete(self, plan: ValuePlan, field_plan: FieldPlan, path: Path, value: Any) -> Any:
        """graphql-core's complete_value: the completed value or an awaitable of it."""
        if isinstance(value, Exception):
            raise value
        if value is None:
            if plan.non_null:
                raise TypeError(f"Cannot return null for non-nullable field {plan.describe}.")
            return None
        kind = plan.kind
        if kind == "leaf":
            return self._leaf(plan, value)
        if kind == "list":
            assert plan.item is not None  # a list's plan has its item's
            return self._list(plan.item, field_plan, path, value)
        if kind == "object":
            assert plan.object is not None  # an object's plan has its object plan
            return self._object(plan.object, value, path)
        runtime = plan.by_class.get(type(value)) if plan.by_class else None
        if runtime is None:
            raise GraphQLError(
                f"Abstract type '{plan.abstract}' must resolve to an Object type at runtime "
                f"for field '{plan.describe}'.",
                list(field_plan.nodes),
            )
        return self._object(runtime, value, path)

    def _list(self, item: ValuePlan, field_plan: FieldPlan, path: Path, values: Any) -> Any:
        """graphql-core's complete_iterable_value."""
        completed: list[Any] = []
        awaitable_indexes: list[int] = []
        try:
            for index, value in enumerate(values):
                item_path = (path, index)
                try:
                    result = self._complete(item, field_plan, item_path, value)
                    if _awaitable(result):
                        result = self._await_completed(result, item, field_plan, item_path)
                        awaitable_indexes.append(index)
                    completed.append(result)
                except Exception as raw:
                    self._handle(raw, item, field_plan.nodes, item_path)
                    completed.append(None)
        except Exception:
            if awaitable_indexes:
                self._settle_in_background([completed[i] for i in awaitable_indexes])
            raise
        if not awaitable_indexes:
            return completed
        return self._gather_items(completed, awaitable_indexes, item.fails_async)

    @staticmethod
    async def _gather_items(completed: list[Any], indexes: list[int], fails: bool) -> list[Any]:
        """A list's pending items, as ``_gather_fields`` awaits an object's fields."""
        if len(indexes) == 1 or not fails:
            for index, value in zip(
                indexes, await _in_order([completed[i] for i in indexes]), strict=True
            ):
                completed[index] = value
        else:
            values = await gather_with_cancel(*(completed[i] for i in indexes))
            for index, value in zip(indexes, values, strict=True):
                completed[index] = value
        return completed
