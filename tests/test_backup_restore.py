"""Backups and point-in-time recovery (tests/support/backup_restore.py): Barman Cloud's tools
archive every WAL segment and take a base backup under load; the primary is destroyed; a new server
made from the object store alone, to a time between the backup and the end of the load, holds the
audit events of every request answered before that time and nothing sent after it, and its trail
verifies."""

from __future__ import annotations

import pytest

from tests.support.backup_restore import Report, run_scenario


@pytest.fixture(scope="module")
def restored() -> Report:
    report = run_scenario()
    print(report)
    return report


def test_the_load_spans_the_backup_and_the_target_time(restored):
    # Requests answered after the base backup ended and before the target: only the archived
    # WAL can bring them back. Requests sent after the target: recovery must stop before them.
    assert restored.after_backup_before_target > 0
    assert restored.sent_after > 0
    assert restored.wal_segments > 0


def test_every_request_answered_before_the_target_has_its_events_after_the_restore(restored):
    assert restored.answered_before > restored.after_backup_before_target
    assert restored.missing == []


def test_nothing_sent_after_the_target_is_in_the_restored_trail(restored):
    assert restored.present_after == []
    assert restored.events_after_target == 0


def test_the_restored_trail_verifies(restored):
    assert restored.verify.returncode == 0, restored.verify.stderr
    assert restored.verify.stdout.startswith("audit chain intact: ")
    assert int(restored.verify.stdout.split()[3]) >= restored.answered_before


def test_no_response_under_load_held_anyone_elses_rows(restored):
    assert restored.foreign == []
