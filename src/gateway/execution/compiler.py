"""Compiling a trusted operation into a plan (``execution.plan``) once, at start.

A document compiles when it validates against the schema with every rule the request path
applies (the standard rules, the production and limit rules the schema carries), its operation is
a query, and every field it selects is one the plan knows how to run: an attribute or a resolver
of the schema's own types, with scalar arguments, guarded only by the field check. Anything else
(a mutation, introspection, a field with another extension) is ``NotCompilable`` with the reason,
and runs through graphql-core as before; the start-up log says which and why.

``@skip`` and ``@include`` are honoured per request: a plan keeps one compiled tree per outcome
of the document's directives (almost always one), made on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_argument_values,
    is_abstract_type,
    is_leaf_type,
    is_object_type,
    parse,
    specified_rules,
    type_from_ast,
    validate,
)
from graphql.execution.values import get_variable_values
from strawberry.permission import PermissionExtension

from gateway.authz.field_check import FieldPolicy
from gateway.execution.codegen import generate
from gateway.execution.plan import FieldPlan, ObjectPlan, PlanRun, ValuePlan
from gateway.guards.selections import fragments_of, selected_fields
from gateway.policy.table import governed_types

__all__ = ["CompiledOperation", "NotCompilable", "compile_operation"]

_SCALAR_ARGUMENTS = frozenset({"ID", "Int", "String", "Boolean", "Float"})


class NotCompilable(Exception):
    """This document runs through graphql-core; the message says why."""


@dataclass(slots=True)
class CompiledOperation:
    """One trusted query, compiled: its trees by directive outcome, and how to run one."""

    name: str | None
    schema: GraphQLSchema
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    directives: list[Any]  # the @skip/@include nodes whose outcome selects the tree
    resolvers: dict[type, str]  # Python class -> GraphQL type name (abstract types)
    strawberry: Any
    trees: dict[tuple[bool, ...], ObjectPlan] = field(default_factory=dict)
    sources: dict[tuple[bool, ...], str] = field(default_factory=dict)  # generated code

    def variables(self, inputs: dict[str, Any] | None) -> Any:
        """Coerced variables, or the list of errors graphql-core would report."""
        return get_variable_values(
            self.schema, self.operation.variable_definitions or (), inputs or {}, max_errors=50
        )

    def tree(self, variables: Any) -> ObjectPlan:
        outcome = tuple(_included(node, variables) for node in self.directives)
        tree = self.trees.get(outcome)
        if tree is None:
            tree = _Compiler(self, dict(zip(map(id, self.directives), outcome, strict=True))).root()
            self.sources[outcome] = generate(tree, self.name or "anonymous")
            self.trees[outcome] = tree
        return tree

    async def run(
        self, context: Any, variables: Any
    ) -> tuple[dict[str, Any] | None, list[GraphQLError]]:
        run = PlanRun(context, variables)
        data = await run.root(self.tree(variables), None)
        return data, run.errors


def _included(node: Any, variables: Any) -> bool:
    """The outcome of one @skip/@include node."""
    if node.name.value == GraphQLSkipDirective.name:
        return not get_argument_values(GraphQLSkipDirective, node, variables)["if"]
    return bool(get_argument_values(GraphQLIncludeDirective, node, variables)["if"])


def compile_operation(
    strawberry_schema: Any,
    body: str,
    *,
    rules: tuple[Any, ...] = (),
    max_tokens: int | None = None,
) -> CompiledOperation:
    """Compile ``body`` (one operation and its fragments), or raise NotCompilable."""
    schema: GraphQLSchema = strawberry_schema._schema
    try:
        document = parse(body, max_tokens=max_tokens)
    except GraphQLError as exc:
        raise NotCompilable(f"does not parse: {exc.message}") from None
    errors = validate(schema, document, (*specified_rules, *rules))
    if errors:
        raise NotCompilable(f"does not validate: {errors[0].message}")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        raise NotCompilable("a document of several operations")
    operation = operations[0]
    if operation.operation is not OperationType.QUERY:
        raise NotCompilable(f"a {operation.operation.value}: only queries are compiled")
    fragments = fragments_of(document.definitions)
    compiled = CompiledOperation(
        name=operation.name.value if operation.name else None,
        schema=schema,
        operation=operation,
        fragments=fragments,
        directives=_directive_nodes(document),
        resolvers=_classes(schema),
        strawberry=strawberry_schema,
    )
    # Compile the tree of every directive outcome seen with no variables, so that a field the
    # plan cannot run is found at start, not at the first request.
    _Compiler(compiled, None).root()
    return compiled


def _directive_nodes(document: DocumentNode) -> list[Any]:
    found: list[Any] = []

    def visit(selection_set: SelectionSetNode | None) -> None:
        for selection in selection_set.selections if selection_set else ():
            for directive in selection.directives or ():
                name = directive.name.value
                if name not in {GraphQLSkipDirective.name, GraphQLIncludeDirective.name}:
                    raise NotCompilable(f"the directive @{name}")  # a schema's own directive
                found.append(directive)
            visit(getattr(selection, "selection_set", None))

    for definition in document.definitions:
        assert isinstance(definition, ExecutableDefinitionNode)  # validated: executable only
        if definition.directives:
            raise NotCompilable("a directive on an operation or fragment definition")
        visit(definition.selection_set)
    return found


def _classes(schema: GraphQLSchema) -> dict[type, str]:
    classes: dict[type, str] = {}
    for name, graphql_type in schema.type_map.items():
        definition = (getattr(graphql_type, "extensions", None) or {}).get("strawberry-definition")
        origin = getattr(definition, "origin", None)
        if is_object_type(graphql_type) and isinstance(origin, type):
            classes[origin] = name
    return classes


class _Compiler:
    """Builds one tree; ``outcomes`` maps each directive node (by id) to include or not; None
    compiles every directive's selections (the check at start)."""

    def __init__(self, compiled: CompiledOperation, outcomes: dict[int, bool] | None) -> None:
        self._compiled = compiled
        self._schema = compiled.schema
        self._outcomes = outcomes
        self._governed = governed_types()
        self._converter = compiled.strawberry.config.name_converter

    def root(self) -> ObjectPlan:
        root = self._schema.query_type
        assert root is not None
        return self._object(root, [self._compiled.operation.selection_set])

    def _include(self, node: Any) -> bool:
        if self._outcomes is None:
            return True
        return all(
            self._outcomes[id(directive)]
            for directive in node.directives or ()
            if directive.name.value in {GraphQLSkipDirective.name, GraphQLIncludeDirective.name}
        )

    def _collect(
        self, object_type: GraphQLObjectType, selection_sets: list[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        """The fields of ``selection_sets`` that apply to ``object_type``, by response key; a
        field node reached twice (a fragment spread twice) counts once, as in graphql-core."""
        grouped: dict[str, list[FieldNode]] = {}
        reached: set[int] = set()
        for selection_set in selection_sets:
            for field_node, _, conditions in selected_fields(
                selection_set, self._compiled.fragments, include=self._include
            ):
                if id(field_node) in reached:
                    continue
                if not all(self._applies(condition, object_type) for condition in conditions):
                    continue
                reached.add(id(field_node))
                key = field_node.alias.value if field_node.alias else field_node.name.value
                grouped.setdefault(key, []).append(field_node)
        return grouped

    def _applies(self, condition: Any, object_type: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        conditional = type_from_ast(self._schema, condition)
        if conditional is object_type:
            return True
        return is_abstract_type(conditional) and self._schema.is_sub_type(conditional, object_type)

    def _object(
        self, object_type: GraphQLObjectType, selection_sets: list[SelectionSetNode]
    ) -> ObjectPlan:
        grouped = self._collect(object_type, selection_sets)
        governed = object_type.name in self._governed
        fields = [self._field(object_type, key, nodes, governed) for key, nodes in grouped.items()]
        judged = [f for f in fields if f.value is not None]
        for index, field_plan in enumerate(judged):
            field_plan.index = index
        names = tuple(f.name for f in judged) if governed else ()
        fails = any(
            value.non_null and (f.resolver is not None or value.fails_async)
            for f in judged
            if (value := f.value) is not None
        )
        return ObjectPlan(object_type.name, fields, governed, names, fails)

    def _field(
        self, parent: GraphQLObjectType, key: str, nodes: list[FieldNode], governed: bool
    ) -> FieldPlan:
        name = nodes[0].name.value
        if name == "__typename":
            return FieldPlan(key, name, tuple(nodes))
        if name.startswith("__"):
            raise NotCompilable(f"introspection ({name})")
        graphql_field = parent.fields[name]
        definition = graphql_field.extensions.get("strawberry-definition")
        if definition is None:
            raise NotCompilable(f"{parent.name}.{name} is not a Strawberry field")
        self._check_extensions(parent.name, name, definition, governed)
        plan = FieldPlan(key, name, tuple(nodes))
        resolver = definition.base_resolver
        if resolver is None:
            plan.attribute = definition.python_name
        else:
            if resolver.self_parameter is None:
                if resolver.root_parameter is None:
                    raise NotCompilable(f"{parent.name}.{name}: a resolver without self or root")
                plan.source_parameter = resolver.root_parameter.name
            plan.resolver = resolver.wrapped_func
            plan.info_parameter = resolver.info_parameter.name if resolver.info_parameter else None
            plan.arguments = self._arguments(parent, graphql_field, definition, nodes[0])
            if plan.arguments is None and plan.info_parameter is not None:
                plan.load = getattr(resolver.wrapped_func, "load_spec", None)
        sub = [node.selection_set for node in nodes if node.selection_set is not None]
        plan.value = self._value(graphql_field.type, sub, f"{parent.name}.{name}")
        if plan.attribute is not None and plan.value.kind == "leaf":
            plan.leaf_attribute = plan.attribute
        return plan

    @staticmethod
    def _check_extensions(type_name: str, name: str, definition: Any, governed: bool) -> None:
        guards = [e for e in definition.extensions if isinstance(e, PermissionExtension)]
        others = [e for e in definition.extensions if not isinstance(e, PermissionExtension)]
        if others:
            raise NotCompilable(f"{type_name}.{name} has field extensions")
        policies = [p for g in guards for p in g.permissions]
        if governed:
            if len(policies) != 1 or not isinstance(policies[0], FieldPolicy):
                raise NotCompilable(f"{type_name}.{name} is not guarded by FieldPolicy alone")
        elif policies:
            raise NotCompilable(f"{type_name}.{name} has permissions outside the policy table")

    def _arguments(
        self, parent: GraphQLObjectType, graphql_field: Any, definition: Any, node: FieldNode
    ) -> Callable[[Any], dict[str, Any]] | None:
        if not graphql_field.args:
            return None
        python: dict[str, str] = {}
        for argument in definition.arguments:
            graphql_name = self._converter.from_argument(argument)
            argument_type = graphql_field.args[graphql_name].type
            while isinstance(argument_type, GraphQLNonNull | GraphQLList):
                if isinstance(argument_type, GraphQLList):
                    raise NotCompilable(f"{parent.name}.{node.name.value}: a list argument")
                argument_type = argument_type.of_type
            if argument_type.name not in _SCALAR_ARGUMENTS:
                raise NotCompilable(f"{parent.name}.{node.name.value}: argument {graphql_name}")
            python[graphql_name] = argument.python_name

        def arguments(variables: Any) -> dict[str, Any]:
            values = get_argument_values(graphql_field, node, variables)
            return {python[name]: value for name, value in values.items()}

        # Only scalar arguments are compiled, so a value holds a variable only by being one.
        if not any(argument.value.kind == "variable" for argument in node.arguments or ()):
            try:
                fixed = arguments(None)
            except GraphQLError as exc:
                raise NotCompilable(f"{parent.name}.{node.name.value}: {exc.message}") from None
            return lambda _variables: dict(fixed)
        return arguments

    def _value(self, graphql_type: Any, sub: list[SelectionSetNode], describe: str) -> ValuePlan:
        non_null = isinstance(graphql_type, GraphQLNonNull)
        if non_null:
            graphql_type = graphql_type.of_type
        if isinstance(graphql_type, GraphQLList):
            item = self._value(graphql_type.of_type, sub, describe)
            fails = item.non_null and item.fails_async
            return ValuePlan(non_null, "list", item=item, describe=describe, fails_async=fails)
        if is_leaf_type(graphql_type):
            return ValuePlan(
                non_null,
                "leaf",
                coerce=_coercion(graphql_type),
                describe=describe,
                fails_async=False,
                strings=graphql_type.name in {"String", "ID"},
                enum=getattr(graphql_type, "wrapped_cls", None),
                members=_members(graphql_type),
                leaf=graphql_type.name,
            )
        if is_object_type(graphql_type):
            plan = self._object(graphql_type, sub)
            return ValuePlan(
                non_null, "object", object=plan, describe=describe, fails_async=plan.fails_async
            )
        by_class: dict[type, ObjectPlan] = {}
        names = {name: cls for cls, name in self._compiled.resolvers.items()}
        for possible in self._schema.get_possible_types(graphql_type):
            cls = names.get(possible.name)
            if cls is None:
                raise NotCompilable(f"{describe}: no class for {possible.name}")
            by_class[cls] = self._object(possible, sub)
        return ValuePlan(
            non_null, "abstract", by_class=by_class, describe=describe, abstract=graphql_type.name
        )


def _members(leaf: Any) -> dict[int, str] | None:
    """A Strawberry enum's answer for each member, by the member's id (a generated plan looks
    a member up without hashing it)."""
    wrapped = getattr(leaf, "wrapped_cls", None)
    if wrapped is None:
        return None
    return {id(member): leaf.coerce_output_value(member) for member in wrapped}


def _coercion(leaf: Any) -> Callable[[Any], Any]:
    """The leaf type's own coercion; for a Strawberry enum, its answer for each member worked
    out once (Strawberry's compares the member's value with every value, per call)."""
    coerce: Callable[[Any], Any] = leaf.coerce_output_value
    wrapped = getattr(leaf, "wrapped_cls", None)
    if wrapped is None:
        return coerce
    names = {member: coerce(member) for member in wrapped}

    def coerce_member(value: Any) -> Any:
        name = names.get(value) if type(value) is wrapped else None
        return name if name is not None else coerce(value)

    return coerce_member


