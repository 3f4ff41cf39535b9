"""The access log says which months it no longer holds (issue 26).

Each month moved to the audit archive is one of ``accessLog.archivedPeriods``, newest first, with
a plain sentence of where its records are: to a patient, that they are kept in the audit archive
and whom to ask, never where the file is (``location`` is refused them); to an auditor, the file
itself; a month deleted past retention says when. Over real HTTP on both executors (the compiled
side by hash, served by its plan), and as the web app asks on the production path (MyAccessLog by
hash to a gateway that accepts the repository's manifest only). The months are rows of the
catalog recorded by the superuser (``tests.support.archives``); expectations are read from the
catalog as superuser or written out here.
"""

from __future__ import annotations

import json

import pytest

from tests.support.archives import DELETED, KEPT, ArchivedMonth, archived
from tests.support.database import as_admin
from tests.support.executors import app_manifest_gateway, send_operation, trusted

PATIENT = 4
AUDITOR = "auditor-0001"
KEPT_IN_ARCHIVE = (
    "the records of this month are kept in the audit archive; ask the privacy office to see them."
)
LOG = trusted(
    "{ accessLog(first: 1) { edges { cursor } "
    "archivedPeriods { from until archivedAt deletedAt where } } }"
)
WITH_LOCATION = trusted("{ accessLog(first: 0) { archivedPeriods { from where location } } }")


@pytest.fixture(scope="module")
def months(env):
    with archived(env, KEPT, DELETED):
        yield


def _at(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _index(body: dict, month: ArchivedMonth) -> int:
    periods = body["data"]["accessLog"]["archivedPeriods"]
    [index] = [i for i, period in enumerate(periods) if period["from"] == _at(month.start)]
    return index


def _period(body: dict, month: ArchivedMonth) -> dict:
    return body["data"]["accessLog"]["archivedPeriods"][_index(body, month)]


def _patient_token(env) -> str:
    return env.token(env.patients()[PATIENT][0])


def test_a_patient_is_told_an_archived_month_is_kept_in_the_archive_and_whom_to_ask(
    env, gateway, months
):
    body = gateway.execute(LOG, _patient_token(env))
    assert "errors" not in body, body
    assert _period(body, KEPT) == {
        "from": "2001-02-01T00:00:00+00:00",
        "until": "2001-03-01T00:00:00+00:00",
        "archivedAt": "2001-03-02T03:00:00+00:00",
        "deletedAt": None,
        "where": f"Archived: {KEPT_IN_ARCHIVE}",
    }
    assert "s3://" not in json.dumps(body) and "audit-archive/" not in json.dumps(body)


def test_a_patient_asking_where_the_archive_is_is_refused_the_location(env, gateway, months):
    body = gateway.execute(WITH_LOCATION, _patient_token(env))
    index = _index(body, KEPT)
    assert _period(body, KEPT) == {
        "from": "2001-02-01T00:00:00+00:00",
        "where": f"Archived: {KEPT_IN_ARCHIVE}",
        "location": None,
    }
    at = ["accessLog", "archivedPeriods", index]
    refused = [e for e in body["errors"] if e["path"][:3] == at]
    assert [(e["path"][3], e["extensions"]["code"]) for e in refused] == [("location", "FORBIDDEN")]
    assert KEPT.location not in json.dumps(body) and DELETED.location not in json.dumps(body)


def test_an_auditor_is_told_where_the_archive_is(env, gateway, months):
    body = gateway.execute(WITH_LOCATION, env.token(AUDITOR))
    assert "errors" not in body, body
    assert _period(body, KEPT) == {
        "from": "2001-02-01T00:00:00+00:00",
        "where": f"Archived at {KEPT.location}: {KEPT_IN_ARCHIVE}",
        "location": KEPT.location,
    }


def test_a_month_deleted_past_retention_says_when_and_to_the_auditor_where_it_was(
    env, gateway, months
):
    patient = gateway.execute(LOG, _patient_token(env))
    assert _period(patient, DELETED) == {
        "from": "2001-01-01T00:00:00+00:00",
        "until": "2001-02-01T00:00:00+00:00",
        "archivedAt": "2001-02-02T03:00:00+00:00",
        "deletedAt": "2007-03-01T04:00:00+00:00",
        "where": "Deleted on 2007-03-01 after the retention period.",
    }
    auditor = gateway.execute(WITH_LOCATION, env.token(AUDITOR))
    assert _period(auditor, DELETED) == {
        "from": "2001-01-01T00:00:00+00:00",
        "where": "Deleted on 2007-03-01 after the retention period "
        f"(it was at {DELETED.location}).",
        "location": DELETED.location,
    }


def test_every_archived_month_is_listed_newest_first_for_patients_and_auditors(
    env, gateway, months
):
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select period_start, period_end from data.audit_archives order by period_start desc"
        ),
    )
    expected = [{"from": _at(row["period_start"]), "until": _at(row["period_end"])} for row in rows]
    assert len(expected) >= 2
    for token in (_patient_token(env), env.token(AUDITOR)):
        periods = gateway.execute(LOG, token)["data"]["accessLog"]["archivedPeriods"]
        assert [{"from": p["from"], "until": p["until"]} for p in periods] == expected


@pytest.mark.parametrize("subject", ["support-0001", "clinician"])
def test_a_role_that_does_not_read_the_log_is_told_of_no_month(env, gateway, months, subject):
    if subject == "clinician":
        subject = env.clinicians()[0][0]
    body = gateway.execute(LOG, env.token(subject))
    assert body == {"data": {"accessLog": {"edges": [], "archivedPeriods": []}}}


def test_the_web_apps_access_log_asks_for_the_months_on_the_production_path(env, months):
    token = _patient_token(env)
    with app_manifest_gateway(env) as production:
        status, body, served = send_operation(
            production,
            "MyAccessLog",
            token,
            {"first": 5, "emergency": True, "withArchivedPeriods": True},
        )
        assert (status, served) == (200, ["plan"]), body
        periods = body["data"]["accessLog"]["archivedPeriods"]
        assert periods[_index(body, KEPT)] == {"from": _at(KEPT.start), "deletedAt": None}
        assert periods[_index(body, DELETED)] == {
            "from": _at(DELETED.start),
            "deletedAt": _at(DELETED.deleted_at),
        }
        # A further page leaves them out: the app reads them once, when the log opens.
        status, body, served = send_operation(
            production, "MyAccessLog", token, {"first": 5, "byOthers": True}
        )
        assert (status, served) == (200, ["plan"]), body
        assert "archivedPeriods" not in body["data"]["accessLog"]
