"""The access log as the web app reads it, on the production path (the app's MyAccessLog sent
by hash to a gateway that accepts the repository's manifest only, served by its plan).

``byOthers`` leaves out the patient's own reads, ``emergency`` keeps break-glass accesses only;
each accessed consultation or recording names its consultation (reason, date) under the
patient's own policy. Expectations are read from the database as superuser, up to the last
event before each request.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.ids import encode_global_id
from tests.support.actors import REASON, Grants, new_clinician
from tests.support.database import as_admin
from tests.support.executors import app_manifest_gateway, send_operation

SHOWN = ["disclosure", "media", "consent-granted", "consent-revoked", "break-glass-opened"]
PATIENT = 11


@pytest.fixture(scope="module")
def production(env):
    with app_manifest_gateway(env) as client:
        yield client


@pytest.fixture(scope="module")
def story(env, production, client):
    """The patient reads their replays twice; a clinician who never treated them opens
    break-glass and reads one consultation's reason and summary and its recordings."""
    grants = Grants(env)
    subject, patient_id = env.patients()[PATIENT]
    token = env.token(subject)
    for _ in range(2):
        status, body, _ = send_operation(production, "MyReplays", token, {"first": 5})
        assert status == 200 and body["data"]["consultations"]["edges"], body
    clinician_subject, clinician_id = new_clinician(env, "access-log-views")
    grants.open_break_glass(clinician_id, patient_id)
    consultation = next(
        c
        for c in sorted(env.truth.consultations_of_patient[patient_id])
        if env.truth.recordings_of_consultation[c]
    )
    # The clinician's own tool, whatever it is (here a free-form document to another gateway).
    read = client.post(
        "query($id: ID!) { consultation(id: $id) { reason summary recordings { id mode } } }",
        env.token(clinician_subject),
        {"id": encode_global_id("Consultation", consultation)},
    )
    yield {
        "token": token,
        "patient": patient_id,
        "consultation": consultation,
        "clinician_read": read,
    }
    grants.close()


def _last_seq(env) -> int:
    return as_admin(env, lambda c: c.fetchval("select max(seq) from data.access_events"))


def expected(env, patient, *, others: bool, emergency: bool, limit: int) -> list[str]:
    """The roles of the events the page should hold, newest first, read as superuser."""
    last = _last_seq(env)
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select role from data.access_events where patient_id = $1 and kind = any($2) "
            "and seq <= $3 and ($4 = false or role is distinct from 'patient') "
            "and ($5 = false or break_glass_reason is not null) order by seq desc limit $6",
            patient,
            SHOWN,
            last,
            others,
            emergency,
            limit,
        ),
    )
    return [row["role"].upper() for row in rows]


def compared(env, production, token: str, patient, **variables) -> tuple[list, list]:
    """(the roles of the page, the roles the database says it holds), from a moment when no
    other event was written in between (a server another module left may still be writing:
    then the comparison is made again, at most three times)."""
    others, emergency = variables.get("byOthers", False), variables.get("emergency", False)
    for _ in range(3):
        before = _last_seq(env)
        nodes = page(production, token, **variables)
        want = expected(
            env, patient, others=others, emergency=emergency, limit=variables.get("first", 10)
        )
        if _last_seq(env) <= before + 1:  # the request's own event, and nothing else
            break
    return [node["accessorRole"] for node in nodes], want


def page(production, token: str, **variables) -> list[dict]:
    status, body, served = send_operation(production, "MyAccessLog", token, variables)
    assert (status, served, body.get("errors")) == (200, ["plan"], None), body
    return [edge["node"] for edge in body["data"]["accessLog"]["edges"]]


def test_the_clinicians_read_under_break_glass_is_there_as_asked(story):
    """The precondition of the tests below: the emergency read succeeded."""
    body = story["clinician_read"].json()
    assert body.get("errors") is None and body["data"]["consultation"]["reason"], body


def test_by_others_leaves_out_every_own_read_and_keeps_every_other(env, production, story):
    roles, want = compared(
        env, production, story["token"], story["patient"], first=50, byOthers=True
    )
    assert roles == want
    assert "CLINICIAN" in want and "PATIENT" not in want
    everything = page(production, story["token"], first=50)
    assert "PATIENT" in {node["accessorRole"] for node in everything}


def test_emergency_keeps_the_break_glass_accesses_with_their_reason_in_plain_words(
    env, production, story
):
    nodes = page(production, story["token"], first=10, emergency=True)
    want = expected(env, story["patient"], others=False, emergency=True, limit=10)
    assert [node["accessorRole"] for node in nodes] == want and want
    assert all(node["breakGlassReason"] for node in nodes)
    read = next(
        node
        for node in nodes
        if node["kind"] == "DISCLOSURE" and node["breakGlassReason"] == REASON
    )
    assert read["accessorName"] == "Dr Fresh" and read["accessorRole"] == "CLINICIAN"
    row = as_admin(
        env,
        lambda c: c.fetchrow(
            "select reason, scheduled_at from data.consultations where id = $1",
            story["consultation"],
        ),
    )
    gid = encode_global_id("Consultation", story["consultation"])
    named = {
        (o["type"], o["consultation"]["id"], o["consultation"]["reason"])
        for o in read["objects"]
        if o["consultation"]
    }
    assert ("Consultation", gid, row["reason"]) in named
    assert {t for t, _, _ in named} == {"Consultation", "Recording"}
    assert all(consultation == gid for _, consultation, _ in named)
    [scheduled] = {o["consultation"]["scheduledAt"] for o in read["objects"] if o["consultation"]}
    assert datetime.fromisoformat(scheduled) == row["scheduled_at"]


def test_a_patient_passing_the_filters_sees_nothing_of_another_patients_log(env, production, story):
    """The attack: another patient asks for the emergency and others' views, hoping a filter
    path skips the owner's predicate. They get their own events only, as many as the database
    holds of theirs under the same filters."""
    other_subject, other = env.patients()[PATIENT - 1]
    token = env.token(other_subject)
    for variables in (
        {"byOthers": True},
        {"emergency": True},
        {"byOthers": True, "emergency": True},
    ):
        roles, want = compared(env, production, token, other, first=50, **variables)
        assert roles == want, (variables, roles, want)


ORDERED = ("access_events_by_seq", "access_events_by_others", "access_events_emergency")


@pytest.mark.parametrize(
    ("view", "index"),
    [
        ({"p_by_others": True}, "access_events_by_others"),
        ({"p_emergency": True}, "access_events_emergency"),
        ({"p_by_others": True, "p_emergency": True}, "access_events_emergency"),
        ({}, "access_events_by_seq"),
    ],
)
def test_each_view_of_a_patients_log_is_served_by_its_own_index(env, story, view, index):
    """A page of others' accesses, or of emergency ones, walks that view's partial index, not
    the patient's whole log. So that the small test table (and the data other tests leave in
    it) cannot hide which index the statement can use, the other indexes that could serve it are
    dropped in a transaction rolled back afterwards, and sequential scans and sorts are off:
    a statement whose filter the index's predicate does not imply cannot use the index at all,
    and falls back to a sequential scan."""
    by_others, emergency = view.get("p_by_others", False), view.get("p_emergency", False)

    async def scans(connection) -> dict[str, int]:
        await connection.execute("select pg_stat_clear_snapshot()")
        # The trail is partitioned by month (0021): each index is one per partition, and its
        # scans are the sum of theirs.
        rows = await connection.fetch(
            "select p.relname as index, sum(s.idx_scan)::bigint as scans "
            "from pg_stat_user_indexes s "
            "join pg_inherits i on i.inhrelid = s.indexrelid "
            "join pg_class p on p.oid = i.inhparent "
            "where s.schemaname = 'audit_partitions' group by p.relname"
        )
        return {row["index"]: row["scans"] for row in rows}

    async def work(connection) -> dict[str, int]:
        await connection.execute("set enable_seqscan = off")
        await connection.execute("set enable_sort = off")
        before = await scans(connection)
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(
                "alter table data.access_events drop constraint access_events_seq_key"
            )
            for other in (*ORDERED, "access_events_by_patient"):
                if other != index:
                    await connection.execute(f"drop index data.{other}")
            await connection.fetch(
                "select seq from api.access_events_page('patient', $1, '{}', 10, null, $2, $3)",
                story["patient"],
                by_others,
                emergency,
            )
        finally:
            await transaction.rollback()
        # This backend's counts reach the shared statistics when it next goes idle.
        await connection.execute("select pg_stat_force_next_flush()")
        after = await scans(connection)
        return {name: after.get(name, 0) - before.get(name, 0) for name in after}

    used = as_admin(env, work)
    assert used[index] >= 1, used
