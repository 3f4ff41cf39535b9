"""The hand-made mutants of scripts/mutants.py stay aimed at what runs.

A mutant of SQL is an exact text in one migration. When a later migration creates the same
function or policy again (0010 rewrote every row-level security policy, 0011 the pages), a mutant
still aimed at the old text changes nothing the database holds and survives for nothing: the
mutation score would then overstate the tests. This fails as soon as that happens.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mutants():
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutants", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_hand_made_mutant_changes_a_definition_the_database_holds():
    mutants = _mutants()
    assert len(mutants.MUTANTS) >= 100
    errors = [error for item in mutants.MUTANTS for error in mutants.declaration_errors(item)]
    assert errors == []


def test_a_mutant_of_a_superseded_policy_is_named(tmp_path):
    mutants = _mutants()
    stale = mutants.Mutant(
        "stale",
        "sql",
        f"{mutants.MIGRATIONS}/0003_every_role.sql",
        "create policy consultation_rows",
        "create policy consultation_rows",
        "aimed at 0003's policy, which 0010 replaced",
        (),
    )
    assert mutants.declaration_errors(stale) == [
        "stale: policy consultation_rows is created again by 0010_rls_once_per_statement.sql"
    ]
