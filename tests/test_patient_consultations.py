"""``Patient.consultations`` for every role, reached through ``patient(id:)``, through
``consultation { patient { consultations } }`` and through ``me { patient { consultations } }``.

What each role should get (README's role table, the policy table's Patient.consultations rule and
``api.consultations_by_patient``, whose rows are those ``api.grant_for`` admits): a patient their
own, a clinician the ones they conducted (all of them under an active break-glass grant, again
only the conducted ones once it expired), support all of them with scheduling fields only, a
partner all of a consenting patient's when token and consent both hold patient/Consultation.rs
(null and FORBIDDEN when either lacks it, no patient at all without consent), an auditor nothing.
Every expected list is read as superuser, in the schema's order (newest first).
"""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from gateway.data import queries
from gateway.policy import scopes
from tests.support.actors import Grants, gid, new_clinician, new_partner, new_patient, partner_token
from tests.support.database import as_admin
from tests.support.executors import trusted
from tests.support.json_values import all_strings
from tests.support.sabotage import sabotaged_gateway

PATIENT = "query($id: ID!) { patient(id: $id) { id consultations { id } } }"
VIA_CONSULTATION = (
    "query($id: ID!) { consultation(id: $id) { id patient { id consultations { id } } } }"
)
ME = "{ me { patient { id consultations { id } } } }"


async def _pick(connection, seeded: list[UUID]):
    """A seeded patient T with consultations by two clinicians C1 and C2, where C1 conducted some
    but not all of them; X1 one of C1's, Y one of C2's."""
    return await connection.fetchrow(
        "select a.subject, c1.patient_id, c1.clinician_id as c1, c1.id as x1, "
        "c2.clinician_id as c2, c2.id as y "
        "from data.consultations c1 join data.consultations c2 "
        "on c2.patient_id = c1.patient_id and c2.clinician_id <> c1.clinician_id "
        "join data.accounts a on a.patient_id = c1.patient_id "
        "where c1.patient_id = any($1::uuid[]) and not exists "
        "(select 1 from data.consents k where k.patient_id = c1.patient_id) "
        "order by a.subject, c1.id, c2.id limit 1",
        seeded,
    )


def _ordered(env, patient: UUID, clinician: UUID | None = None) -> list[str]:
    """Global IDs of the patient's consultations (those of ``clinician`` only, when given),
    newest first, read as superuser."""
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select id from data.consultations where patient_id = $1 "
            "and ($2::uuid is null or clinician_id = $2) order by scheduled_at desc, id desc",
            patient,
            clinician,
        ),
    )
    return [gid("Consultation", row["id"]) for row in rows]


def _subject_of(env, kind: str, pk: UUID) -> str:
    return as_admin(
        env,
        lambda c: c.fetchval(f"select subject from data.accounts where {kind}_id = $1", pk),
    )


@pytest.fixture(scope="module")
def world(env):
    row = as_admin(env, lambda c: _pick(c, [p for _, p in env.patients()]))
    target = row["patient_id"]
    grants = Grants(env)
    other_subject, other = next((s, p) for s, p in env.patients() if p != target)
    bg_subject, bg = new_clinician(env, "pc")
    grants.open_break_glass(bg, target)
    # C1 also holds a break-glass grant on T that has expired: it must add nothing.
    grants.expire_break_glass(grants.open_break_glass(row["c1"], target))
    consented, consented_pk = new_partner(env, "pc")
    grants.consent(target, consented_pk, scopes.ALL)
    narrow, narrow_pk = new_partner(env, "pc")
    grants.consent(target, narrow_pk, [scopes.PATIENT, scopes.RECORDING])
    stranger, _ = new_partner(env, "pc")
    yield {
        "T": target,
        "T_subject": row["subject"],
        "U": other,
        "U_subject": other_subject,
        "C1": row["c1"],
        "C1_subject": _subject_of(env, "clinician", row["c1"]),
        "C2": row["c2"],
        "C2_subject": _subject_of(env, "clinician", row["c2"]),
        "X1": gid("Consultation", row["x1"]),
        "Y": gid("Consultation", row["y"]),
        "bg_subject": bg_subject,
        "consented": consented,
        "narrow": narrow,
        "stranger": stranger,
    }
    grants.close()


def _ids(items) -> list[str]:
    return [item["id"] for item in items]


def _assert_nothing_foreign(env, body, owner: UUID, also: set[str] = frozenset()) -> None:
    """No consultation, recording or patient of anyone but ``owner`` (nor any ID in ``also``)
    appears anywhere in the body."""
    foreign = env.truth.global_ids_not_of(owner) | set(also)
    assert [s for s in all_strings(body) if any(f in s for f in foreign)] == []


def _by_patient(client, token, world):
    return client.execute(PATIENT, token, {"id": gid("Patient", world["T"])})


def _via(client, token, consultation):
    return client.execute(VIA_CONSULTATION, token, {"id": consultation})


def test_a_patient_sees_exactly_their_own_consultations_through_every_route(env, client, world):
    token = env.token(world["T_subject"])
    own = _ordered(env, world["T"])
    assert len(own) >= 2
    patient = {"id": gid("Patient", world["T"]), "consultations": [{"id": c} for c in own]}
    for body, expected in (
        (_by_patient(client, token, world), {"patient": patient}),
        (
            _via(client, token, world["X1"]),
            {"consultation": {"id": world["X1"], "patient": patient}},
        ),
        (client.execute(ME, token), {"me": {"patient": patient}}),
    ):
        assert body == {"data": expected}
        _assert_nothing_foreign(env, body, world["T"])


def test_another_patient_reaches_none_of_them_and_sees_only_their_own(env, client, world):
    token = env.token(world["U_subject"])
    assert _by_patient(client, token, world) == {"data": {"patient": None}}
    assert _via(client, token, world["X1"]) == {"data": {"consultation": None}}
    me = client.execute(ME, token)
    assert me == {
        "data": {
            "me": {
                "patient": {
                    "id": gid("Patient", world["U"]),
                    "consultations": [{"id": c} for c in _ordered(env, world["U"])],
                }
            }
        }
    }
    _assert_nothing_foreign(env, me, world["U"])


@pytest.mark.parametrize(
    ("clinician", "conducted"),
    [("C2", "Y"), ("C1", "X1")],
    ids=["without-any-grant", "whose-break-glass-expired"],
)
def test_a_clinician_sees_only_the_consultations_they_conducted_of_a_patient(
    env, client, world, clinician, conducted
):
    token = env.token(world[f"{clinician}_subject"])
    theirs = _ordered(env, world["T"], world[clinician])
    others = set(_ordered(env, world["T"])) - set(theirs)
    assert theirs and others
    patient = {"id": gid("Patient", world["T"]), "consultations": [{"id": c} for c in theirs]}
    by_patient = _by_patient(client, token, world)
    assert by_patient == {"data": {"patient": patient}}
    via = _via(client, token, world[conducted])
    assert via == {"data": {"consultation": {"id": world[conducted], "patient": patient}}}
    for body in (by_patient, via):
        _assert_nothing_foreign(env, body, world["T"], also=others)
    # Through a consultation of T they did not conduct: nothing.
    assert _via(client, token, sorted(others)[0]) == {"data": {"consultation": None}}
    assert client.execute(ME, token) == {"data": {"me": {"patient": None}}}


def test_a_clinician_under_active_break_glass_sees_every_consultation_of_that_patient(
    env, client, world
):
    token = env.token(world["bg_subject"])
    every = _ordered(env, world["T"])
    patient = {"id": gid("Patient", world["T"]), "consultations": [{"id": c} for c in every]}
    by_patient = _by_patient(client, token, world)
    assert by_patient == {"data": {"patient": patient}}
    via = _via(client, token, world["Y"])
    assert via == {"data": {"consultation": {"id": world["Y"], "patient": patient}}}
    for body in (by_patient, via):
        _assert_nothing_foreign(env, body, world["T"])
    # The grant is for T only.
    body = client.execute(PATIENT, token, {"id": gid("Patient", world["U"])})
    assert body == {"data": {"patient": None}}


def test_support_sees_every_consultation_of_a_patient_with_scheduling_fields_only(
    env, client, world
):
    rows = as_admin(
        env,
        lambda c: c.fetch(
            "select id, scheduled_at, status from data.consultations where patient_id = $1 "
            "order by scheduled_at desc, id desc",
            world["T"],
        ),
    )
    body = client.execute(
        "query($id: ID!) { patient(id: $id) { id "
        "consultations { id scheduledAt status reason } } }",
        env.token("support-0001"),
        {"id": gid("Patient", world["T"])},
    )
    assert body["data"] == {
        "patient": {
            "id": gid("Patient", world["T"]),
            "consultations": [
                {
                    "id": gid("Consultation", row["id"]),
                    "scheduledAt": row["scheduled_at"].isoformat(),
                    "status": row["status"],
                    "reason": None,
                }
                for row in rows
            ],
        }
    }
    assert sorted((tuple(e["path"]), e["extensions"]["code"]) for e in body["errors"]) == [
        (("patient", "consultations", i, "reason"), "FORBIDDEN") for i in range(len(rows))
    ]
    _assert_nothing_foreign(env, body, world["T"])
    via = _via(client, env.token("support-0001"), world["X1"])
    assert via["data"]["consultation"]["patient"]["consultations"] == [
        {"id": gid("Consultation", row["id"])} for row in rows
    ]
    _assert_nothing_foreign(env, via, world["T"])


def test_a_partner_with_consent_and_scope_sees_every_consultation_of_the_consenting_patient(
    env, client, world
):
    token = partner_token(env, world["consented"])
    every = _ordered(env, world["T"])
    patient = {"id": gid("Patient", world["T"]), "consultations": [{"id": c} for c in every]}
    by_patient = _by_patient(client, token, world)
    assert by_patient == {"data": {"patient": patient}}
    via = _via(client, token, world["Y"])
    assert via == {"data": {"consultation": {"id": world["Y"], "patient": patient}}}
    for body in (by_patient, via):
        _assert_nothing_foreign(env, body, world["T"])
    assert client.execute(ME, token) == {"data": {"me": {"patient": None}}}


@pytest.mark.parametrize(
    ("partner", "token_scopes"),
    [
        ("consented", [scopes.PATIENT, scopes.RECORDING]),
        ("narrow", list(scopes.ALL)),
    ],
    ids=["token-lacks-consultation-scope", "consent-lacks-consultation-scope"],
)
def test_a_partner_without_the_consultation_scope_gets_null_consultations_and_forbidden(
    env, client, world, partner, token_scopes
):
    token = partner_token(env, world[partner], token_scopes)
    body = _by_patient(client, token, world)
    assert body["data"] == {"patient": {"id": gid("Patient", world["T"]), "consultations": None}}
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["patient", "consultations"], "FORBIDDEN")
    ]
    _assert_nothing_foreign(env, body, world["T"], also=set(_ordered(env, world["T"])))
    # Consultations themselves are not the partner's to see either.
    assert _via(client, token, world["X1"]) == {"data": {"consultation": None}}


def test_a_partner_without_consent_gets_no_patient_and_no_consultation(env, client, world):
    token = partner_token(env, world["stranger"])
    assert _by_patient(client, token, world) == {"data": {"patient": None}}
    assert _via(client, token, world["X1"]) == {"data": {"consultation": None}}


def test_an_auditor_reaches_no_patient_and_no_consultation(env, client, world):
    token = env.token("auditor-0001")
    assert _by_patient(client, token, world) == {"data": {"patient": None}}
    assert _via(client, token, world["X1"]) == {"data": {"consultation": None}}
    assert client.execute(ME, token) == {"data": {"me": {"patient": None}}}


def test_a_consultation_reached_again_through_its_recordings_is_the_one_already_loaded(
    env, client, world
):
    """The patient's list keeps each consultation it loaded: a recording's consultation, asked
    for after it, is answered from there (the same row, one statement fewer), not null."""
    token = env.token(world["T_subject"])
    body = client.execute(
        "query($id: ID!) { patient(id: $id) { consultations { id reason "
        "recordings { consultation { id reason } } } } }",
        token,
        {"id": gid("Patient", world["T"])},
    )
    listed = body["data"]["patient"]["consultations"]
    assert [c["id"] for c in listed] == _ordered(env, world["T"])
    reached = [(c["id"], c["reason"], r["consultation"]) for c in listed for r in c["recordings"]]
    assert reached
    assert all(again == {"id": pk, "reason": reason} for pk, reason, again in reached)


PAGE = trusted(
    "query($first: Int, $after: String) { consultations(first: $first, after: $after) {"
    " edges { cursor node { id } } pageInfo { hasNextPage } } }"
)


@pytest.fixture(scope="module")
def paged(env):
    """A new patient with four consultations, two of them at the same time (the cursor's
    tie-break on the id decides their order), newest first as read by superuser."""
    subject, patient = new_patient(env, "pages")
    _, clinician = new_clinician(env, "pages")  # of their own: no other test counts these

    async def make(connection):
        now = await connection.fetchval("select now()")  # one instant: two rows share it
        for days in (1, 2, 2, 3):
            await connection.execute(
                "insert into data.consultations (id, patient_id, clinician_id, scheduled_at, "
                "status, mode, reason) values "
                "($1, $2, $3, $4::timestamptz - make_interval(days => $5), 'COMPLETED', "
                "'VIDEO', 'paged')",
                uuid4(),
                patient,
                clinician,
                now,
                days,
            )

    as_admin(env, make)
    ordered = _ordered(env, patient)
    tied = as_admin(
        env,
        lambda c: c.fetchval(
            "select count(distinct scheduled_at) from data.consultations where patient_id = $1",
            patient,
        ),
    )
    assert (len(ordered), tied) == (4, 3)
    return env.token(subject), ordered


@pytest.mark.parametrize("first", [1, 2, 3, 4, 5])
def test_a_patient_pages_through_every_consultation_once_in_order(gateway, paged, first):
    """Walking the cursors, page by page: every consultation once, newest first (the two at the
    same time in id order, whichever page boundary falls between them), ``hasNextPage`` true
    exactly until the last page, including a last page that is exactly full."""
    token, expected = paged
    seen, after, pages = [], None, []
    for _ in range(len(expected) + 2):  # a page that never ends fails here, not by hanging
        body = gateway.execute(PAGE, token, {"first": first, "after": after})
        page = body["data"]["consultations"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        pages.append(page["pageInfo"]["hasNextPage"])
        if not page["pageInfo"]["hasNextPage"] or not page["edges"]:
            break
        after = page["edges"][-1]["cursor"]
    assert seen == expected
    assert len(pages) == max(1, -(-len(expected) // first))
    assert pages == [True] * (len(pages) - 1) + [False]


@pytest.mark.parametrize("first", [1, 3])
def test_a_consultations_page_reads_one_row_more_than_it_shows_and_no_more(
    env, executor, manifest, paged, first
):
    """The extra row says whether there is a next page; reading more (every consultation of a
    patient with years of them) would cost the page and show nothing more."""
    asked = []

    def record(role, actor, scopes, limit, after_at, after_id):
        asked.append(limit)
        return [role, actor, scopes, limit, after_at, after_id]

    token, expected = paged
    with sabotaged_gateway(env, executor, manifest) as (client, database):
        database.arguments[queries.CONSULTATIONS_PAGE] = record
        body = client.execute(PAGE, token, {"first": first})
    assert [e["node"]["id"] for e in body["data"]["consultations"]["edges"]] == expected[:first]
    assert asked == [first + 1]


def test_a_role_that_sees_no_consultation_gets_an_empty_last_page(env, gateway):
    """An auditor's own consultations: none, and no next page (not an error, not a promise of
    more)."""
    body = gateway.execute(PAGE, env.token("auditor-0001"), {"first": 2})
    assert body == {"data": {"consultations": {"edges": [], "pageInfo": {"hasNextPage": False}}}}
