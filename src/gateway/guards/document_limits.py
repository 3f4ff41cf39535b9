"""Document limits, checked during validation, before any resolver runs.

The rules are classes built once per schema (not per request), so the tuple of validation rules is
the same object on every request and Strawberry's validation cache keeps hitting. Every rule
follows fragments through the one selection walk (``guards.selections``), which enters a fragment
once along a path, so a circular fragment is refused (by graphql-core's NoFragmentCyclesRule)
without recursing.

- depth: the deepest selection of any operation;
- aliases: aliased fields in the document;
- directives: directive uses in the document (ten unknown directives are one error, not ten);
- cost: fields weighted by list sizes: a connection multiplies its subtree by its ``first``
  (the maximum page size when ``first`` is a variable or absent), another list by
  ``default_list_size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql.language import DirectiveNode, Visitor, visit
from strawberry.extensions import SchemaExtension

from gateway.errors import Code
from gateway.guards.selections import fragments_of, selected_fields

__all__ = ["DocumentLimits", "LimitsExtension", "document_cost"]


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_depth: int
    max_aliases: int
    max_directives: int
    max_cost: int
    page_size_max: int
    default_list_size: int = 10

    def rules(self) -> tuple[type[ASTValidationRule], ...]:
        """The validation rules for these limits: build once, reuse on every request."""
        return (_make_rule(self),)


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str],
    budget: int,
) -> int:
    deepest = 0
    for field, path, _ in selected_fields(selection_set, fragments, seen):
        if field.name.value.startswith("__"):
            continue
        below = 0
        if field.selection_set is not None and budget > 0:
            below = _depth(field.selection_set, fragments, path, budget - 1)
        deepest = max(deepest, 1 + below)
    return deepest


def _first(field: FieldNode) -> int | None:
    for argument in field.arguments or ():
        if argument.name.value == "first":
            return int(argument.value.value) if isinstance(argument.value, IntValueNode) else None
    return None


def document_cost(
    context: ValidationContext | None,
    document: DocumentNode,
    limits: DocumentLimits,
    schema: Any = None,
) -> int:
    """The cost of the costliest operation of ``document``: every field counts once per item of
    the lists around it."""
    schema = schema or (context.schema if context else None)
    fragments = fragments_of(document.definitions)

    def cost(
        selection_set: SelectionSetNode | None,
        parent: Any,
        seen: frozenset[str],
        multiplier: int,
        depth: int,
    ) -> int:
        total = 0
        if depth > 64:
            return total
        for field, path, conditions in selected_fields(selection_set, fragments, seen):
            name = field.name.value
            if name.startswith("__"):
                continue
            owner = parent
            for condition in conditions:  # the innermost type condition the schema knows
                owner = schema.get_type(condition.name.value) or owner
            total += multiplier
            definition = getattr(owner, "fields", {}).get(name) if owner is not None else None
            if field.selection_set is None or definition is None:
                continue
            inner = multiplier
            field_type = get_nullable_type(definition.type)
            if definition.args.get("first") is not None:
                first = _first(field)
                inner *= max(first if first is not None else limits.page_size_max, 1)
            elif is_list_type(field_type) and name != "edges":  # a connection's page: counted
                inner *= limits.default_list_size
            total += cost(field.selection_set, get_named_type(field_type), path, inner, depth + 1)
        return total

    worst = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and schema is not None:
            root = schema.get_root_type(definition.operation)
            worst = max(worst, cost(definition.selection_set, root, frozenset(), 1, 0))
    return worst


def _make_rule(limits: DocumentLimits) -> type[ASTValidationRule]:
    class GatewayLimitsRule(ValidationRule):
        """Depth, aliases, directives and cost of the whole document, judged once."""

        def enter_document(self, node: DocumentNode, *_args: Any) -> Any:
            fragments = fragments_of(node.definitions)
            for definition in node.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    depth = _depth(
                        definition.selection_set, fragments, frozenset(), limits.max_depth + 1
                    )
                    if depth > limits.max_depth:
                        return self._refuse(f"Query depth exceeds {limits.max_depth}")
            counts = _Counter()
            visit(node, counts)
            if counts.largest_first > limits.page_size_max:
                return self._refuse(f"'first' may be at most {limits.page_size_max}")
            if counts.aliases > limits.max_aliases:
                return self._refuse(f"Query has more than {limits.max_aliases} aliases")
            if counts.directives > limits.max_directives:
                return self._refuse(f"Query has more than {limits.max_directives} directives")
            cost = document_cost(self.context, node, limits)
            if cost > limits.max_cost:
                return self._refuse(f"Query cost {cost} exceeds {limits.max_cost}")
            return None

        def _refuse(self, message: str) -> Any:
            self.report_error(GraphQLError(message, extensions={"code": Code.LIMIT_EXCEEDED}))
            return self.BREAK

    return GatewayLimitsRule


class _Counter(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.aliases = 0
        self.directives = 0
        self.largest_first = 0

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.alias is not None:
            self.aliases += 1
        first = _first(node)
        if first is not None:
            self.largest_first = max(self.largest_first, first)

    def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
        self.directives += 1


class LimitsExtension(SchemaExtension):
    """Adds prebuilt validation rules; the same tuple on every request keeps the cache warm."""

    def __init__(
        self, *, rules: tuple[type[ASTValidationRule], ...], execution_context: Any = None
    ) -> None:
        super().__init__(execution_context=execution_context)
        self.rules = rules

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = (*context.validation_rules, *self.rules)
        yield
