"""A compiled plan's objects as Python source: straight-line code per selection, made once.

``PlanRun`` walks a plan's tree generically: for every field of every object it looks up how the
field is resolved and completed. For an object whose pending fields are all nullable (its
``fails_async`` false, almost every object of a real document), this module writes that walk
out as one Python function per selection, with every decision the plan already holds taken:
which fields, in which order, read how, completed how. The functions run inside the same
``PlanRun`` (its errors, queue, ledger and field gate) and do exactly what ``PlanRun._object``
and ``PlanRun._complete`` do, step for step, so a plan's answer, errors, ledger and disclosures
are the same with or without them (the differential and leak tests run on this path).

What changes is the cost: no per-field dispatch, no awaitable per field, leaf values read and
passed through in place, and fields that are one load (``loaded_by``) queued as keys, so that a
level's loads are one ``Loaders.fetch`` per loader, with no future per object.

The source carries no text of the document: every value it uses (response keys, field and type
names, the plan's nodes, argument readers) is a constant of the function's namespace, named by
position (``k3``, ``field12``). Python names from the schema's own code (attributes, resolver
parameters) are written in when they are identifiers. ``gateway plan print`` shows the source.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.authz.field_check import FORBIDDEN_MESSAGE
from gateway.data.loaders import MISSING, Then
from gateway.errors import Forbidden
from gateway.execution.plan import Deferred, FieldPlan, ObjectPlan, ValuePlan, awaitable

__all__ = ["generate"]

_Part = TypeVar("_Part")


def _part(value: _Part | None) -> _Part:
    """A part of a plan its kind holds: a list's item, an object's plan, a field's value."""
    assert value is not None
    return value


_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def _name(name: str) -> str:
    """A GraphQL name of the document (a response key), written only in a comment."""
    if not _GRAPHQL_NAME.fullmatch(name):
        raise ValueError(f"not a GraphQL name: {name!r}")
    return name


def _identifier(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"not a Python identifier: {name!r}")
    return name


@dataclass
class _Writer:
    label: str
    namespace: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # id(constant) -> its name
    counts: dict[str, int] = field(default_factory=dict)
    objects: dict[int, str] = field(default_factory=dict)  # id(ObjectPlan) -> function name
    completers: dict[int, str] = field(default_factory=dict)  # id(ValuePlan) -> function name

    def constant(self, value: Any, prefix: str) -> str:
        name = self.names.get(id(value))
        if name is None:
            number = self.counts.get(prefix, 0)
            self.counts[prefix] = number + 1
            name = self.names[id(value)] = f"{prefix}{number}"
            self.namespace[name] = value
        return name

    def function(self, prefix: str) -> str:
        number = self.counts.get(prefix, 0)
        self.counts[prefix] = number + 1
        return f"{prefix}_{number}"

    def emit(self, indent: int, *lines: str) -> None:
        self.lines.extend("    " * indent + line for line in lines)

    # --- objects -----------------------------------------------------------------------------

    def object(self, plan: ObjectPlan) -> str | None:
        """The function completing ``plan``'s objects, or None when ``PlanRun`` completes them
        (an object with a non-null field that can fail after an await).

        For a governed type, the function asks the field gate for the object's decisions
        first. When every field is allowed (the common case), the fields run without a check
        each and their reads are recorded in one ledger entry when the object is complete, or,
        when a non-null field fails, up to and including that field (the fields reached, as
        the per-field record would have them). Otherwise a second function runs the fields with
        each decision recorded as it is reached, a denied field refused at its path."""
        if plan.fails_async:
            return None
        name = self.objects.get(id(plan))
        if name is not None:
            return name
        name = self.objects[id(plan)] = self.function("complete_" + _identifier(plan.type_name))
        type_name = self.constant(plan.type_name, "type")
        # Each field's lines first: writing them writes the functions they call.
        fast = [self._field(plan, f, type_name, checked=False) for f in plan.fields]
        if not plan.governed:
            self.emit(0, "", f"def {name}(run, source, path):", "    results = {}")
            for lines in fast:
                self._emit(lines)
            self.emit(1, "return results")
            return name
        slow = [self._field(plan, f, type_name, checked=True) for f in plan.fields]
        names = self.constant(plan.governed_names, "judged")
        checked = f"{name}_checked"
        self.emit(
            0,
            "",
            f"def {name}(run, source, path):",
            f"    verdicts = run.decide(source, {type_name}, {names})",
            "    if any(verdicts):",
            f"        return {checked}(run, source, verdicts, path)",
            "    results = {}",
        )
        for lines in fast:
            self._emit(lines)
        self.emit(
            1,
            f"run._ledger.record_reads({type_name}, source.pk, source.owner, {names})",
            "return results",
        )
        self.emit(
            0,
            "",
            f"def {checked}(run, source, verdicts, path):",
            "    record = run._record",
            "    results = {}",
        )
        for lines in slow:
            self._emit(lines)
        self.emit(1, "return results")
        return name

    def _emit(self, lines: list[tuple[int, str]]) -> None:
        for indent, line in lines:
            self.emit(indent, line)

    def _field(
        self, plan: ObjectPlan, field_plan: FieldPlan, type_name: str, *, checked: bool
    ) -> list[Any]:
        key = self.constant(field_plan.key, "k")
        lines: list[tuple[int, str]] = [(1, f"# {_name(field_plan.key)}")]
        value_plan = field_plan.value
        if value_plan is None:  # __typename
            return [*lines, (1, f"results[{key}] = {type_name}")]
        fp = self.constant(field_plan, "field")
        lines.append((1, "try:"))
        if plan.governed and checked:
            name = self.constant(field_plan.name, "f")
            lines += [
                (
                    2,
                    f"if not record({type_name}, source.pk, source.owner, {name}, "
                    f"verdicts[{field_plan.index}]):",
                ),
                (3, "raise Forbidden(FORBIDDEN_MESSAGE)"),
            ]
        if field_plan.leaf_attribute is not None:
            lines += self._leaf_attribute(field_plan, key)
        else:
            lines += self._resolved(field_plan, key, fp)
        lines.append((1, "except Exception as raw:"))
        if plan.governed and not checked and value_plan.non_null:
            reached = self.constant(plan.governed_names[: field_plan.index + 1], "judged")
            lines.append(
                (2, f"run._ledger.record_reads({type_name}, source.pk, source.owner, {reached})")
            )
        lines += [
            (2, f"run._handle(raw, {fp}.value, {fp}.nodes, (path, {key}))"),
            (2, f"results[{key}] = None"),
        ]
        return lines

    def _leaf_attribute(self, field_plan: FieldPlan, key: str) -> list[Any]:
        value_plan = field_plan.value
        assert value_plan is not None and field_plan.leaf_attribute is not None
        plan = self.constant(value_plan, "plan")
        lines = [(2, f"value = source.{_identifier(field_plan.leaf_attribute)}")]
        test = "if"
        for condition, result in self._as_is(value_plan):
            lines += [(2, f"{test} {condition}:"), (3, f"results[{key}] = {result}")]
            test = "elif"
        lines.append((2, f"{test} value is None:"))
        if value_plan.non_null:
            message = self.constant(
                f"Cannot return null for non-nullable field {value_plan.describe}.", "message"
            )
            lines.append((3, f"raise TypeError({message})"))
        else:
            lines.append((3, f"results[{key}] = None"))
        lines += [(2, "else:"), (3, f"results[{key}] = run._leaf({plan}, value)")]
        return lines

    def _resolved(self, field_plan: FieldPlan, key: str, fp: str) -> list[Any]:
        value_plan = field_plan.value
        assert value_plan is not None
        complete, may_await = self.completer(value_plan, field_plan)
        path = f"(path, {key})"
        lines: list[tuple[int, str]] = []
        if field_plan.load is not None:
            spec = self.constant(field_plan.load, "load")
            answers = self.constant(field_plan.load.loader, "loader")
            lines += [
                (
                    2,
                    f"value = run._answers[{answers}].get(source.{_identifier(field_plan.load.key)}"
                    ", MISSING)",
                ),
                (2, "if value is MISSING:"),
                (3, f"results[{key}] = None"),
                (
                    3,
                    f"run._queue.append(({fp}, Deferred({spec}, "
                    f"source.{_identifier(field_plan.load.key)}), {path}, results, False))",
                ),
                (2, "else:"),
                (3, f"value = {spec}.convert(value)"),
            ]
            return lines + self._completed(3, complete, may_await, fp, key, path)
        if field_plan.attribute is not None:
            lines.append((2, f"value = source.{_identifier(field_plan.attribute)}"))
        elif (
            field_plan.arguments is None
            and field_plan.source_parameter is None
            and field_plan.info_parameter is not None
        ):
            resolver = self.constant(field_plan.resolver, "resolver")
            info = _identifier(field_plan.info_parameter)
            lines.append((2, f"value = {resolver}(source, {info}=run._info)"))
        else:
            lines.append((2, f"value = run._resolve({fp}, source)"))
        lines += [
            (2, "if awaitable(value):"),
            (3, "if type(value) is not Then:"),
            (4, "value = ensure_future(value)"),
            (3, f"results[{key}] = None"),
            (3, f"run._queue.append(({fp}, value, {path}, results, False))"),
            (2, "else:"),
        ]
        return lines + self._completed(3, complete, may_await, fp, key, path)

    @staticmethod
    def _completed(
        indent: int, complete: str, may_await: bool, fp: str, key: str, path: str
    ) -> list[Any]:
        if not may_await:
            return [(indent, f"results[{key}] = {complete}(run, value, {path})")]
        return [
            (indent, f"value = {complete}(run, value, {path})"),
            (indent, "if awaitable(value):"),
            (indent + 1, f"run._queue.append(({fp}, value, {path}, results, True))"),
            (indent + 1, "value = None"),
            (indent, f"results[{key}] = value"),
        ]

    # --- values ------------------------------------------------------------------------------

    def completer(self, value_plan: ValuePlan, field_plan: FieldPlan) -> tuple[str, bool]:
        """The function completing a value of ``value_plan`` (``PlanRun._complete``) and whether
        what it returns can be an awaitable."""
        known = self.completers.get(id(value_plan))
        if known is not None:
            return known, self._may_await(value_plan)
        name = self.completers[id(value_plan)] = self.function("complete_value")
        plan = self.constant(value_plan, "plan")
        fp = self.constant(field_plan, "field")
        lines: list[tuple[int, str]] = [
            (1, "if isinstance(value, Exception):"),
            (2, "raise value"),
            (1, "if value is None:"),
        ]
        if value_plan.non_null:
            message = self.constant(
                f"Cannot return null for non-nullable field {value_plan.describe}.", "message"
            )
            lines.append((2, f"raise TypeError({message})"))
        else:
            lines.append((2, "return None"))
        kind = value_plan.kind
        if kind == "leaf":
            for condition, result in self._as_is(value_plan):
                lines += [(1, f"if {condition}:"), (2, f"return {result}")]
            lines.append((1, f"return run._leaf({plan}, value)"))
        elif kind == "object" and (target := self.object(_part(value_plan.object))) is not None:
            lines.append((1, f"return {target}(run, value, path)"))
        elif kind == "list" and not self._may_await(_part(value_plan.item)):
            item = _part(value_plan.item)
            complete_item, _ = self.completer(item, field_plan)
            lines += [
                (1, "items = []"),
                (1, "for index, item in enumerate(value):"),
                (2, "item_path = (path, index)"),
                (2, "try:"),
                (3, f"items.append({complete_item}(run, item, item_path))"),
                (2, "except Exception as raw:"),
                (3, f"run._handle(raw, {self.constant(item, 'plan')}, {fp}.nodes, item_path)"),
                (3, "items.append(None)"),
                (1, "return items"),
            ]
        elif kind == "list":
            lines = [(1, f"return run._complete({plan}, {fp}, path, value)")]
        elif kind == "object":
            lines.append((1, f"return run._object({plan}.object, value, path)"))
        else:
            lines = [(1, f"return run._complete({plan}, {fp}, path, value)")]
        self.emit(0, "", f"def {name}(run, value, path):")
        for indent, line in lines:
            self.emit(indent, line)
        return name, self._may_await(value_plan)

    def _as_is(self, value_plan: ValuePlan) -> list[tuple[str, str]]:
        """Leaf values whose coercion is known without calling it, as (condition, result): a
        str for String and ID, an int in range for Int (graphql-core's serialize_int refuses the
        rest), a bool for Boolean, an enum member (its name, worked out at compile time). Any
        other value goes through the type's coercion (``PlanRun._leaf``)."""
        if value_plan.strings:
            return [("type(value) is str", "value")]
        if value_plan.leaf == "Int":
            return [("type(value) is int and -2147483648 <= value <= 2147483647", "value")]
        if value_plan.leaf == "Boolean":
            return [("type(value) is bool", "value")]
        if value_plan.enum is not None and value_plan.members is not None:
            enum = self.constant(value_plan.enum, "enum")
            members = self.constant(value_plan.members, "members")
            return [
                (
                    f"type(value) is {enum} and (name := {members}.get(id(value))) is not None",
                    "name",
                )
            ]
        return []

    def _may_await(self, value_plan: ValuePlan) -> bool:
        if value_plan.kind == "leaf":
            return False
        if value_plan.kind == "object":
            return _part(value_plan.object).fails_async
        if value_plan.kind == "list":
            return self._may_await(_part(value_plan.item))
        return True  # abstract: completed by PlanRun


def generate(tree: ObjectPlan, label: str) -> str:
    """Write the functions of ``tree``'s objects, attach each to its plan (``ObjectPlan.complete``
    and ``FieldPlan.complete``) and return the source."""
    writer = _Writer(label)
    writer.namespace.update(
        {
            "Forbidden": Forbidden,
            "FORBIDDEN_MESSAGE": FORBIDDEN_MESSAGE,
            "MISSING": MISSING,
            "Then": Then,
            "Deferred": Deferred,
            "awaitable": awaitable,
            "ensure_future": __import__("asyncio").ensure_future,
        }
    )
    plans: list[ObjectPlan] = []
    fields: list[FieldPlan] = []

    def visit(plan: ObjectPlan) -> None:
        plans.append(plan)
        for field_plan in plan.fields:
            if field_plan.value is not None:
                fields.append(field_plan)
                visit_value(field_plan.value)

    def visit_value(value_plan: ValuePlan) -> None:
        if value_plan.kind == "list":
            visit_value(_part(value_plan.item))
        elif value_plan.kind == "object":
            visit(_part(value_plan.object))
        elif value_plan.kind == "abstract":
            for runtime in _part(value_plan.by_class).values():
                visit(runtime)

    visit(tree)
    for plan in plans:
        writer.object(plan)
    for field_plan in fields:  # what ``PlanRun._drain`` completes a queued field's value with
        if field_plan.leaf_attribute is None:
            writer.completer(_part(field_plan.value), field_plan)
    source = "\n".join(
        [
            f"# The compiled plan of {_name(label)}: generated by gateway.execution.codegen.",
            *writer.lines,
        ]
    )
    code = compile(source, f"<plan {label}>", "exec")
    exec(code, writer.namespace)  # noqa: S102 - our own source, made above from the plan
    for plan in plans:
        name = writer.objects.get(id(plan))
        if name is not None:
            plan.complete = writer.namespace[name]
    for field_plan in fields:
        name = writer.completers.get(id(field_plan.value))
        if name is not None:
            field_plan.complete = writer.namespace[name]
    return source
