"""The SQL floor: the same data for the same caller, from hand-written asyncpg queries (one per
level), serialized with orjson, on a bare Starlette endpoint. No authentication, no policy, no
audit, and no row-level security (it connects as the owner): what the work costs with nothing
around it."""

from __future__ import annotations

import contextlib
import os

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PAGE = """select id, scheduled_at, status, mode, reason, summary, clinician_id, patient_id
from data.consultations where patient_id = $1 order by scheduled_at desc, id desc limit $2"""
ALL_PAGE = """select id, scheduled_at, status, mode, clinician_id
from data.consultations order by scheduled_at desc, id desc limit $1"""
ONE = """select id, scheduled_at, status, mode, reason, summary, clinician_id, patient_id
from data.consultations where id = $1 and patient_id = $2"""
CLINICIANS = "select id, display_name from data.clinicians where id = any($1::uuid[])"
PATIENTS = "select id, display_name from data.patients where id = any($1::uuid[])"
RECORDINGS = """select id, consultation_id, segment_index, mode, duration_seconds
from data.recordings where consultation_id = any($1::uuid[]) order by consultation_id,
segment_index"""

statements = {"count": 0}


def _iso(value):
    return value.isoformat()


async def _fetch(pool, sql, *args):
    statements["count"] += 1
    return await pool.fetch(sql, *args)


async def _consultations(request: Request, rows, nested: bool, with_recordings: bool):
    pool = request.app.state.pool
    out = []
    clinicians, patients, recordings = {}, {}, {}
    if nested and rows:
        for row in await _fetch(pool, CLINICIANS, list({r["clinician_id"] for r in rows})):
            clinicians[row["id"]] = row["display_name"]
        for row in await _fetch(pool, PATIENTS, list({r["patient_id"] for r in rows})):
            patients[row["id"]] = row["display_name"]
    if with_recordings and rows:
        for row in await _fetch(pool, RECORDINGS, [r["id"] for r in rows]):
            recordings.setdefault(row["consultation_id"], []).append(
                {
                    "id": str(row["id"]),
                    "segmentIndex": row["segment_index"],
                    "mode": row["mode"],
                    "durationSeconds": row["duration_seconds"],
                    "playbackUrl": f"/media/recordings/{row['id']}",
                }
            )
    for row in rows:
        node = {
            "id": str(row["id"]),
            "scheduledAt": _iso(row["scheduled_at"]),
            "status": row["status"],
            "mode": row["mode"],
        }
        if "reason" in row:
            node["reason"], node["summary"] = row["reason"], row["summary"]
        if nested:
            node["clinician"] = {"displayName": clinicians.get(row["clinician_id"])}
            node["patient"] = {"displayName": patients.get(row["patient_id"])}
        else:
            node["clinician"] = {"id": str(row["clinician_id"])}
        if with_recordings:
            node["recordings"] = recordings.get(row["id"], [])
        out.append({"node": node})
    return out


async def query(request: Request) -> Response:
    name = request.path_params["name"]
    body = orjson.loads(await request.body())
    patient = body.get("patient")
    pool = request.app.state.pool
    if name in ("q1", "q2", "q5"):
        rows = await _fetch(pool, PAGE, patient, 50)
        edges = await _consultations(request, rows, True, name == "q2")
        data = {"consultations": {"edges": edges}}
    elif name == "q3":
        rows = await _fetch(pool, ONE, body["consultation"], patient)
        edges = await _consultations(request, rows, True, True)
        data = {"consultation": edges[0]["node"] if edges else None}
    else:
        rows = await _fetch(pool, ALL_PAGE, 500)
        data = {"consultations": {"edges": await _consultations(request, rows, False, False)}}
    return Response(orjson.dumps({"data": data}), media_type="application/json")


async def stats(request: Request) -> Response:
    return Response(orjson.dumps(statements), media_type="application/json")


def create_app() -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.pool = await asyncpg.create_pool(
            os.environ["FLOOR_DATABASE_URL"], min_size=2, max_size=10
        )
        yield
        await app.state.pool.close()

    return Starlette(
        routes=[Route("/q/{name}", query, methods=["POST"]), Route("/stats", stats)],
        lifespan=lifespan,
    )
