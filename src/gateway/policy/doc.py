"""The policy table as people read it: a terminal matrix and Markdown.

The matrix is ``gateway policy``; the Markdown is docs/POLICY.md, kept current by a test."""

from __future__ import annotations

from gateway.identity import Role
from gateway.policy.table import MUTATIONS, POLICY

__all__ = ["policy_markdown", "policy_matrix"]


def _rows() -> list[list[str]]:
    roles = list(Role)
    rows = []
    for entry in POLICY:
        fields = sorted(set().union(*(g.fields for g in entry.grants.values())))
        rows.append(
            [
                f"{entry.type_name} rows",
                *[entry.grants[role].rows.value if role in entry.grants else "-" for role in roles],
            ]
        )
        for field in fields:
            cells = []
            for role in roles:
                granted = entry.grants.get(role)
                condition = granted.fields.get(field) if granted else None
                cells.append(condition.describe() if condition else "-")
            rows.append([f"{entry.type_name}.{field}", *cells])
    for right in MUTATIONS:
        cells = ["may call" if role in right.roles else "-" for role in roles]
        rows.append([f"Mutation.{right.mutation}", *cells])
    return rows


def policy_matrix() -> str:
    header = ["type.field", *[role.value for role in Role]]
    rows = _rows()
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def policy_markdown() -> str:
    header = ["type.field", *[role.value for role in Role]]
    lines = [
        "# Policy",
        "",
        "Generated from `src/gateway/policy/table.py` by `gateway policy --format markdown`; a",
        "test fails when this file and the table differ. Every layer reads that table: field",
        "permissions, the loaders' row scopes, row-level security settings, the exit check, and",
        "the mutation rights (who may make each change of access).",
        "",
        "Row scopes: `own` the caller's own patient record; `conducted` consultations the",
        "clinician conducted, or any of a patient's under an active break-glass grant; `consented`",
        "patients with an active consent to the partner covering the type's SMART scope;",
        "`everyone` all rows; `self` the caller. `-`: nothing (denied by default).",
        "",
        "Field conditions: `yes` always; `scope S` the partner's token and the patient's consent",
        "both hold S; `if conducted` the clinician conducted this consultation (not break-glass).",
        "Mutations: `may call` the role may make the change (the field permission, the data layer",
        "and the `api` function each check it); `-` refused with `FORBIDDEN`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows()]
    return "\n".join(lines) + "\n"
