"""Validate CloudNativePG objects against the CRDs kept in k8s/crds, without a cluster.

``python scripts/crd_check.py RENDERED.yaml...`` checks every object whose API group is one of
the CRDs' (``postgresql.cnpg.io``, ``barmancloud.cnpg.io``) against that CRD's OpenAPI schema
as the API server would prune and validate it: a field the schema does not name is an error
(the API server would drop it silently, so a misspelled ``failoverQuorum`` would quietly turn
the feature off), and so are wrong types, values outside an enum and missing required fields.
An object of such a group whose kind or version has no CRD here is an error too. The
operator's CEL rules and its admission webhook are not run. Exit status 1 on any problem, each
printed as ``kind/name: path: message``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).resolve().parent.parent / "k8s" / "crds"
# libyaml's loader where PyYAML has it: the CRDs are 1.2 MB of YAML.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _strict(schema: Any) -> Any:
    """The CRD's structural schema as JSON Schema, closed where the API server prunes: an
    object schema with ``properties`` and neither ``additionalProperties`` nor
    ``x-kubernetes-preserve-unknown-fields`` accepts no other field."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
    return out


def load_schemas(folder: Path = CRDS) -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> the closed JSON Schema of that version of the CRD."""
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=_LOADER):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                # metadata is the API server's own; apiVersion and kind are checked by lookup.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = schema
    return schemas


def problems(documents: Iterable[dict], schemas: dict[tuple[str, str, str], dict]) -> Iterator[str]:
    groups = {group for group, _, _ in schemas}
    for document in documents:
        if not document:
            continue
        group, _, version = document.get("apiVersion", "").rpartition("/")
        if group not in groups:
            continue
        kind = document.get("kind", "")
        name = f"{kind}/{document.get('metadata', {}).get('name', '?')}"
        schema = schemas.get((group, version, kind))
        if schema is None:
            yield f"{name}: no CRD for {group}/{version} {kind} in k8s/crds"
            continue
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path)):
            path = ".".join(str(part) for part in error.path) or "(top)"
            yield f"{name}: {path}: {error.message}"


def main(paths: list[str]) -> int:
    schemas = load_schemas()
    documents = [d for p in paths for d in yaml.safe_load_all(Path(p).read_text())]
    found = list(problems(documents, schemas))
    for problem in found:
        print(problem, file=sys.stderr)
    checked = sum(
        1
        for d in documents
        if d and d.get("apiVersion", "").rpartition("/")[0] in {g for g, _, _ in schemas}
    )
    if found:
        print(f"{len(found)} problems in {checked} CloudNativePG objects", file=sys.stderr)
        return 1
    print(f"{checked} CloudNativePG objects valid against k8s/crds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
