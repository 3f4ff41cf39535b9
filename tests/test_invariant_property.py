"""Property: for generated tenants, data and queries, a caller receives exactly the objects the
policy grants them and never another patient's.

Each example inserts a fresh small world (patients, clinicians, consultations with 0-3 recording
segments, accounts), then runs generated queries over real HTTP as generated callers and compares
every ID in every response with an oracle computed from the generated data alone.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ids import encode_global_id
from tests.support.json_values import all_strings


@dataclass
class World:
    patients: list[uuid.UUID]
    clinicians: list[uuid.UUID]
    # consultation id -> (patient index, clinician index, recording ids)
    consultations: dict[uuid.UUID, tuple[int, int, list[uuid.UUID]]]
    subjects: dict[tuple[str, int], str] = field(default_factory=dict)

    def visible_to(self, role: str, index: int) -> set[str]:
        seen = set()
        for pk, (patient, clinician, recordings) in self.consultations.items():
            if (role == "patient" and patient == index) or (
                role == "clinician" and clinician == index
            ):
                seen.add(encode_global_id("Consultation", pk))
                seen |= {encode_global_id("Recording", r) for r in recordings}
                seen.add(encode_global_id("Patient", self.patients[patient]))
        if role == "patient":
            seen.add(encode_global_id("Patient", self.patients[index]))
        return seen

    def every_id(self) -> list[str]:
        ids = [encode_global_id("Patient", p) for p in self.patients]
        for pk, (_, _, recordings) in self.consultations.items():
            ids.append(encode_global_id("Consultation", pk))
            ids += [encode_global_id("Recording", r) for r in recordings]
        return ids


worlds = st.tuples(
    st.integers(1, 4),
    st.integers(1, 3),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 3)), max_size=10),
)

FIELDS = [
    "id",
    "reason",
    "summary",
    "status",
    "mode",
    "scheduledAt",
    "patient { id }",
    "clinician { id }",
    "recordings { id mode playbackUrl consultation { id } }",
]


async def _insert(admin_url: str, issuer: str, shape) -> World:
    n_patients, n_clinicians, rows = shape
    world = World(
        [uuid.uuid4() for _ in range(n_patients)], [uuid.uuid4() for _ in range(n_clinicians)], {}
    )
    connection = await asyncpg.connect(admin_url)
    try:
        async with connection.transaction():
            for index, pk in enumerate(world.patients):
                await connection.execute(
                    "insert into data.patients values ($1, $2, '1990-01-01')", pk, f"P{index}"
                )
                subject = f"prop-{pk}"
                world.subjects[("patient", index)] = subject
                await connection.execute(
                    "insert into data.accounts (issuer, subject, role, patient_id) "
                    "values ($1, $2, 'patient', $3)",
                    issuer,
                    subject,
                    pk,
                )
            for index, pk in enumerate(world.clinicians):
                await connection.execute(
                    "insert into data.clinicians values ($1, $2, 'GP')", pk, f"C{index}"
                )
                subject = f"prop-{pk}"
                world.subjects[("clinician", index)] = subject
                await connection.execute(
                    "insert into data.accounts (issuer, subject, role, clinician_id) "
                    "values ($1, $2, 'clinician', $3)",
                    issuer,
                    subject,
                    pk,
                )
            at = datetime(2026, 3, 1, tzinfo=UTC)
            for number, (patient, clinician, segments) in enumerate(rows):
                patient %= n_patients
                clinician %= n_clinicians
                pk = uuid.uuid4()
                await connection.execute(
                    "insert into data.consultations (id, patient_id, clinician_id, scheduled_at,"
                    " status, mode, reason) values ($1, $2, $3, $4, 'COMPLETED', 'VIDEO', 'r')",
                    pk,
                    world.patients[patient],
                    world.clinicians[clinician],
                    at + timedelta(hours=number),
                )
                recordings = []
                for index in range(segments):
                    recording = uuid.uuid4()
                    recordings.append(recording)
                    await connection.execute(
                        "insert into data.recordings values ($1, $2, $3, $4, $5, $6, 60,"
                        " 'audio/ogg', 1000, $7)",
                        recording,
                        pk,
                        world.patients[patient],
                        index,
                        "AUDIO" if index == 0 else "VIDEO",
                        at,
                        f"recordings/{world.patients[patient]}/{recording}.ogg",
                    )
                world.consultations[pk] = (patient, clinician, recordings)
    finally:
        await connection.close()
    return world


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=worlds, data=st.data())
def test_generated_callers_receive_exactly_what_the_policy_grants(env, client, shape, data):
    world = asyncio.run(_insert(env.admin_url, env.identity.issuer, shape))
    callers = sorted(world.subjects)
    for _ in range(3):
        role, index = data.draw(st.sampled_from(callers), label="caller")
        token = env.token(world.subjects[(role, index)])
        visible = world.visible_to(role, index)
        fields = data.draw(
            st.lists(st.sampled_from(FIELDS), min_size=1, unique=True), label="fields"
        )
        targets = data.draw(
            st.lists(st.sampled_from(world.every_id() + env_ids(env)), max_size=6), label="targets"
        )
        selection = " ".join(fields)
        aliases = " ".join(
            f'n{i}: node(id: "{t}") {{ id ... on Consultation {{ {selection} }} }}'
            for i, t in enumerate(targets)
        )
        query = (
            f"{{ consultations(first: 100) {{ edges {{ node {{ {selection} }} }} }} {aliases} }}"
        )
        body = client.execute(query, token)
        assert "errors" not in body, body
        ids = {s for s in all_strings(body) if s[:8] in {"Q29uc3Vs", "UGF0aWVu", "UmVjb3Jk"}}
        assert ids <= visible
        listed = {e["node"].get("id") for e in body["data"]["consultations"]["edges"]}
        expected = {v for v in visible if v.startswith("Q29uc3Vs")}
        assert len(body["data"]["consultations"]["edges"]) == len(expected)
        if "id" in fields:
            assert listed == expected
        for i, target in enumerate(targets):
            assert (body["data"][f"n{i}"] is not None) == (target in visible)


def env_ids(env) -> list[str]:
    """IDs from the session's seeded world: always foreign to a generated caller."""
    first_patient = env.patients()[0][1]
    some = sorted(env.truth.consultations_of_patient[first_patient])[:2]
    return [encode_global_id("Consultation", pk) for pk in some]
