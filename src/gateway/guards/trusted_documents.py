"""Trusted documents: operations known ahead in a manifest, which first-party apps send by hash.

First-party apps send the SHA-256 of an operation from the manifest
(``extensions.persistedQuery.sha256Hash``, the convention Apollo's clients and others use)
instead of its text. Free-form documents are accepted from everyone, from accounts with the
developer capability only (production default), or from nobody.

The manifest is Apollo's persisted query manifest format:
``{"format": "apollo-persisted-query-manifest", "version": 1,
   "operations": [{"id": "<sha256 of body>", "name": ..., "type": ..., "body": ...,
                   "roles": ["patient"]}]}``;
``gateway manifest build`` makes one from the apps' ``.graphql`` files, each of which says
which roles its operations are for (a ``# roles: partner`` line): the web app's operations are
for patients, the partner operations for partners. A trusted document sent by a caller of
another role is refused (403 ``FORBIDDEN``) before anything runs. An operation without
``roles`` (a manifest made by another tool) is open to every role. Either way the field gate
decides every field: ``roles`` keeps each operation to the callers it was reviewed for, so that
neither a patient nor a partner comes to depend on the other's operations.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from graphql import (
    DefinitionNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    print_ast,
    validate,
    visit,
)
from graphql.language import Visitor

from gateway.errors import BadRequest, Code, ConfigurationError
from gateway.identity import Principal, Role

__all__ = ["FreeForm", "TrustedDocuments", "build_manifest"]

MANIFEST_FORMAT = "apollo-persisted-query-manifest"


class FreeForm(StrEnum):
    EVERYONE = "everyone"
    DEVELOPERS = "developers"
    NOBODY = "nobody"


def document_id(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TrustedDocuments:
    operations: dict[str, str]
    free_form: FreeForm
    # id -> operation name, from the manifest (names the request log and spans may show).
    names: dict[str, str] = field(default_factory=dict)
    # id -> the roles that may send it (an id without an entry: every role).
    roles: dict[str, frozenset[Role]] = field(default_factory=dict)

    @classmethod
    def load(cls, manifest: Path | None, free_form: FreeForm) -> TrustedDocuments:
        if manifest is None:
            return cls({}, free_form)
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"GATEWAY_TRUSTED_DOCUMENTS: cannot read ({exc})") from None
        if data.get("format") != MANIFEST_FORMAT or data.get("version") != 1:
            raise ConfigurationError(f"GATEWAY_TRUSTED_DOCUMENTS: not an {MANIFEST_FORMAT} v1")
        operations, names, roles = {}, {}, {}
        for operation in data.get("operations", []):
            body = operation["body"]
            if operation["id"] != document_id(body):
                raise ConfigurationError(
                    f"GATEWAY_TRUSTED_DOCUMENTS: operation {operation.get('name')!r} has an id "
                    "that is not the SHA-256 of its body"
                )
            operations[operation["id"]] = body
            if isinstance(operation.get("name"), str):
                names[operation["id"]] = operation["name"]
            if "roles" in operation:
                roles[operation["id"]] = _roles(operation["roles"], operation.get("name"))
        return cls(operations, free_form, names, roles)

    def resolve(self, query: str | None, sha256: str | None, principal: Principal) -> str:
        """The document to execute; BadRequest when it may not be."""
        if sha256 is not None:
            if query is not None and document_id(query) != sha256:
                raise BadRequest("The query does not match its sha256Hash")
            trusted = self.operations.get(sha256)
            if trusted is not None:
                allowed = self.roles.get(sha256)
                if allowed is not None and principal.role not in allowed:
                    raise BadRequest(
                        f"The operation {self.names.get(sha256, sha256)!r} is for "
                        f"{' and '.join(sorted(allowed))} accounts",
                        status=403,
                        code=Code.FORBIDDEN,
                    )
                return trusted
            if query is None:
                raise BadRequest("Persisted query not found", code=Code.PERSISTED_QUERY_NOT_FOUND)
        if query is None:
            raise BadRequest("The 'query' parameter must be a non-empty string")
        if self.free_form is FreeForm.EVERYONE or (
            self.free_form is FreeForm.DEVELOPERS and principal.developer
        ):
            return query
        raise BadRequest(
            "Only trusted documents are accepted", status=403, code=Code.TRUSTED_DOCUMENTS_ONLY
        )


def _roles(value: Any, name: Any) -> frozenset[Role]:
    known = {role.value for role in Role}
    if not isinstance(value, list) or not value or not set(value) <= known:
        raise ConfigurationError(
            f"GATEWAY_TRUSTED_DOCUMENTS: operation {name!r}: 'roles' must be a non-empty list "
            f"of {', '.join(sorted(known))}"
        )
    return frozenset(Role(role) for role in value)


_ROLES_LINE = re.compile(r"^#\s*roles:\s*(.*)$", re.MULTILINE)


def file_roles(text: str, file: str) -> list[str]:
    """The roles a ``.graphql`` file's ``# roles: a, b`` line names (exactly one such line)."""
    lines = _ROLES_LINE.findall(text)
    if len(lines) != 1:
        raise ConfigurationError(
            f"manifest: {file} must say once which roles its operations are for "
            "(a line '# roles: patient' or '# roles: partner, clinician')"
        )
    named = [role.strip() for role in lines[0].split(",") if role.strip()]
    return sorted(_roles(named, file))


class _Spreads(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.names.add(node.name.value)


def _operation_body(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> str:
    needed: list[FragmentDefinitionNode] = []
    pending: list[OperationDefinitionNode | FragmentDefinitionNode] = [operation]
    seen: set[str] = set()
    while pending:
        spreads = _Spreads()
        visit(pending.pop(), spreads)
        for name in sorted(spreads.names - seen):
            seen.add(name)
            needed.append(fragments[name])
            pending.append(fragments[name])
    return "\n\n".join(print_ast(node) for node in [operation, *needed])


def build_manifest(files: list[Path], schema: GraphQLSchema) -> dict[str, Any]:
    """A manifest of every named operation in ``files``, each validated against ``schema``."""
    definitions: list[DefinitionNode] = []
    roles_of: dict[int, list[str]] = {}
    for file in files:
        text = file.read_text()
        roles = file_roles(text, str(file))
        for definition in parse(text).definitions:
            definitions.append(definition)
            roles_of[id(definition)] = roles
    fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
    operations = []
    for definition in definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if definition.name is None:
            raise ConfigurationError("manifest: every operation needs a name")
        body = _operation_body(definition, fragments)
        errors = validate(schema, parse(body))
        if errors:
            raise ConfigurationError(
                f"manifest: operation {definition.name.value}: {errors[0].message}"
            )
        operations.append(
            {
                "id": document_id(body),
                "name": definition.name.value,
                "type": definition.operation.value,
                "body": body,
                "roles": roles_of[id(definition)],
            }
        )
    return {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "operations": sorted(operations, key=lambda o: o["name"]),
    }
