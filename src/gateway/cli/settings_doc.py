"""The settings as people read them: one Markdown table generated from ``Settings``.

Its columns are the variable, the default and the meaning; ``gateway settings`` prints it, and a
test keeps it in docs/OPERATIONS.md."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import AliasChoices
from pydantic_core import PydanticUndefined

from gateway.config import Settings, env_name

__all__ = ["missing_descriptions", "settings_markdown"]

# Not a field of Settings: it says where the fields' values may come from.
SECRETS_DIR_ROW = (
    "`GATEWAY_SECRETS_DIR`",
    "none",
    "a folder of files named like these variables (a mounted Secret); read only from the "
    "process environment; environment variables win over files",
)


def _default(value: Any) -> str:
    if value is None or value == () or value == "":
        return "none"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, frozenset | set | tuple | list):
        return f"`{','.join(sorted(str(v) for v in value))}`"
    return f"`{value}`"


def missing_descriptions() -> list[str]:
    """Settings fields without a description (a test keeps this empty)."""
    return [name for name, field in Settings.model_fields.items() if not field.description]


def settings_markdown() -> str:
    rows = [("variable", "default", "meaning"), ("---", "---", "---")]
    for name, field in Settings.model_fields.items():
        default = "required" if field.default is PydanticUndefined else _default(field.default)
        names = [env_name(name)]
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names += [str(c) for c in alias.choices if str(c) not in names]
        variable = " or ".join(f"`{n}`" for n in names)
        rows.append((variable, default, " ".join((field.description or "").split())))
    rows.append(SECRETS_DIR_ROW)
    return "".join(f"| {' | '.join(row)} |\n" for row in rows)
