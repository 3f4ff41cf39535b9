"""No acknowledged disclosure is lost when the primary dies (issue #14).

The scenario (tests/support/failover.py) runs a primary with a synchronous standby, PgBouncer in
transaction mode and two ``gateway serve`` processes under load from patients, a partner and a
clinician; holds the standby's link to the primary for two seconds, kills the primary with
``kill -9``, promotes the standby and moves PgBouncer to it. The same scenario with asynchronous
replication (``python -m tests.support.failover --replication async``) acknowledges hundreds of
requests whose audit events the new primary never got: these checks fail on it.
"""

from __future__ import annotations

from tests.support.failover import run_scenario


def test_with_a_synchronous_standby_every_acknowledged_request_keeps_its_audit_events():
    report = run_scenario("sync")
    print("\n" + report.summary())

    # No 500, no dropped connection, no row of anyone else; every refusal a 503 with
    # Retry-After in the gateway's own words.
    assert report.problems == [], report.summary()
    assert {o.status for o in report.outcomes} == {200, 503}, report.summary()
    # While the standby could confirm nothing, nothing was acknowledged ...
    assert report.acknowledged_during_hold == [], report.summary()
    # ... and every 200, before and after the failover, has its events on the new primary.
    assert report.missing == [], report.summary()
    assert report.verify.returncode == 0, report.verify.stderr
    # The same two gateway processes serve again (the scenario waits for 200s of every kind
    # from both after PgBouncer moved), with no restart.
    assert not report.gateways_restarted
    first_failure, first_back = report.outage
    assert 0 < first_failure < first_back
    # Subscriptions on both gateways ended with UNAVAILABLE when the primary (and with it their
    # LISTEN connections) died; /readyz reopened those connections on the new primary, where a
    # new subscription on each gateway receives an update made there.
    live = report.live
    assert live.interrupted == [["UNAVAILABLE"], ["UNAVAILABLE"]], report.summary()
    assert live.completed == [True, True], report.summary()
    assert live.ready == [{"status": "ready"}, {"status": "ready"}], report.summary()
    assert live.resumed == [["current", "updated"], ["current", "updated"]], report.summary()
