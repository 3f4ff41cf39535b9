"""Layer 1 without Strawberry's per-field machinery, for the fields where that is safe.

For guarded fields without arguments, graphql-core calls the same ``check_field`` directly,
skipping Strawberry's argument conversion and extension chain: the same decision for a fraction of
the cost. An attribute field reads the attribute; a resolver taking ``(self, info)`` is called with
the Info Strawberry would build. Fields with arguments, or any other extension, keep Strawberry's
path.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import PermissionExtension

from gateway.authz.field_check import FORBIDDEN_MESSAGE, FieldPolicy, check_field
from gateway.errors import Forbidden

__all__ = ["install_fast_path"]


def install_fast_path(schema: Any) -> int:
    """Switch every eligible guarded field of ``schema`` to the direct check; returns how many
    were switched."""
    switched = 0
    for graphql_type in schema._schema.type_map.values():
        for field_name, field in getattr(graphql_type, "fields", {}).items():
            definition = (field.extensions or {}).get("strawberry-definition")
            if definition is None or field.args:
                continue
            resolver = definition.base_resolver
            if resolver is not None and not _self_and_info_only(resolver):
                continue
            guards = [
                extension
                for extension in definition.extensions
                if isinstance(extension, PermissionExtension)
            ]
            if (
                len(guards) != 1
                or len(definition.extensions) != 1
                or guards[0].fail_silently
                or not all(isinstance(p, FieldPolicy) for p in guards[0].permissions)
            ):
                continue
            if resolver is None:
                field.resolve = _fast_attribute(definition.python_name, field_name)
            else:
                info_class = schema.config.info_class
                field.resolve = _fast_resolver(
                    definition, resolver.wrapped_func, field_name, info_class
                )
            switched += 1
    return switched


def _self_and_info_only(resolver: Any) -> bool:
    parameters = resolver.signature.parameters
    return (
        len(parameters) == 2
        and resolver.self_parameter is not None
        and resolver.info_parameter is not None
        and not isinstance(resolver.wrapped_func, (staticmethod, classmethod))
    )


def _fast_attribute(attribute: str, field_name: str) -> Any:
    message = FORBIDDEN_MESSAGE

    def resolve(source: Any, info: Any, **_: Any) -> Any:
        if check_field(info.context, source, info.parent_type.name, field_name, info.path):
            return getattr(source, attribute)
        raise Forbidden(message)

    return resolve


def _fast_resolver(definition: Any, function: Any, field_name: str, info_class: Any) -> Any:
    message = FORBIDDEN_MESSAGE

    def resolve(source: Any, info: Any, **_: Any) -> Any:
        if check_field(info.context, source, info.parent_type.name, field_name, info.path):
            return function(source, info_class(_raw_info=info, _field=definition))
        raise Forbidden(message)

    return resolve
