"""The one walk of a selection set that every reader of a document shares.

A selection set holds fields, inline fragments and spreads of named fragments; the document
limits, the rate limits and the plan compiler all want its fields, with the fragments expanded.
``selected_fields`` does that once: a named fragment is entered at most once along a path (so a
circular fragment, which graphql-core's NoFragmentCyclesRule refuses, is never followed round),
a spread of an unknown fragment is passed over, and each field comes with what its reader may
still need: the named fragments entered on its path and the type conditions it sits under.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    NamedTypeNode,
    SelectionNode,
    SelectionSetNode,
)

__all__ = ["Selected", "fragments_of", "selected_fields"]


class Selected(NamedTuple):
    """A field reached by the walk, with the named fragments entered on its path and the type
    conditions of the fragments around it, outermost first."""

    field: FieldNode
    entered: frozenset[str]
    conditions: tuple[NamedTypeNode, ...]


def fragments_of(definitions: Iterable[object]) -> dict[str, FragmentDefinitionNode]:
    """The named fragments among a document's ``definitions``, by name."""
    return {
        definition.name.value: definition
        for definition in definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


def selected_fields(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    entered: frozenset[str] = frozenset(),
    *,
    include: Callable[[SelectionNode], bool] | None = None,
    conditions: tuple[NamedTypeNode, ...] = (),
) -> Iterator[Selected]:
    """The fields of ``selection_set`` in document order, inline fragments and spreads
    expanded. ``entered`` names the fragments already entered on the path here; ``include``,
    when given, leaves out a selection (and all it holds) for which it is false."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if include is not None and not include(selection):
            continue
        if isinstance(selection, FieldNode):
            yield Selected(selection, entered, conditions)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            yield from selected_fields(
                selection.selection_set,
                fragments,
                entered,
                include=include,
                conditions=conditions if condition is None else (*conditions, condition),
            )
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if name in entered or fragment is None:
                continue
            yield from selected_fields(
                fragment.selection_set,
                fragments,
                entered | {name},
                include=include,
                conditions=(*conditions, fragment.type_condition),
            )
