"""Every error code a client can see is declared once (gateway.errors.Code) and documented in
README's list; no code is written as a string literal elsewhere in the engine."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import Code

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_exactly_the_codes_a_client_can_see():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("Error codes in `extensions.code`") :]
    table = table[: table.index("\n\n", table.index("| code |"))]
    listed = re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE)
    assert sorted(listed) == sorted(code.value for code in Code if code is not Code.CONFIGURATION)


def test_no_engine_module_spells_a_code_as_a_string_literal():
    offenders = []
    for path in (ROOT / "src" / "gateway").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for code in Code:
            if re.search(rf"[\"']{code.value}[\"']", path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}: {code.value}")
    assert offenders == []
