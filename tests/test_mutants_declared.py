"""The hand-made mutants (scripts/mutant_catalog.py) stay aimed at what runs.

A mutant of SQL is an exact text in one definition file (src/gateway/data/sql), where each
function and policy the database holds is defined once. A mutant aimed at a numbered migration
would change history, which a migrated database never runs again, and survive for nothing: the
mutation score would then overstate the tests. This fails as soon as that happens.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mutants():
    path = ROOT / "scripts" / "mutant_catalog.py"
    spec = importlib.util.spec_from_file_location("mutant_catalog", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutant_catalog", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_hand_made_mutant_changes_a_definition_the_database_holds():
    mutants = _mutants()
    assert len(mutants.MUTANTS) >= 100
    errors = [error for item in mutants.MUTANTS for error in mutants.declaration_errors(item)]
    assert errors == []


def test_a_mutant_aimed_at_a_migration_is_named():
    mutants = _mutants()
    stale = mutants.Mutant(
        "stale",
        "sql",
        "src/gateway/data/migrations/0001_domain.sql",
        "create table data.patients",
        "create table data.patients",
        "aimed at history, which a migrated database never runs again",
        (),
    )
    assert mutants.declaration_errors(stale) == [
        "stale: src/gateway/data/migrations/0001_domain.sql is not a definition file "
        "(src/gateway/data/sql)"
    ]
