"""Explaining a response: which rule of the policy table allowed or denied each field.

For each field checked and object loaded: allowed or denied, and by which rule, as the request's
ledger recorded it. Development mode only (``X-Gateway-Explain: 1``), and the ``gateway explain``
command."""

from __future__ import annotations

from typing import Any

from gateway.ledger import Ledger

__all__ = ["explanation", "render_explanation"]


def explanation(ledger: Ledger) -> list[dict[str, Any]]:
    return [
        {"path": path, "type": type_name, "field": field, "decision": decision, "rule": rule}
        for path, type_name, field, decision, rule in ledger.explanations or []
    ]


def render_explanation(entries: list[dict[str, Any]], objects: list[tuple[str, str]]) -> str:
    """A plain-text table for the terminal."""
    rows = [("path", "decision", "rule")]
    rows += [(e["path"], e["decision"], e["rule"]) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if objects:
        lines.append("")
        lines.append("objects loaded (row scope of the caller's role):")
        lines += [f"  {type_name} {object_id}" for type_name, object_id in objects]
    return "\n".join(lines)
