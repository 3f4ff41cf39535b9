"""Load on running gateways: the test database on a server of its own, patients (reads,
playbacks, consent grants and revocations), a partner and a clinician calling the gateways in
turn, every response checked as it arrives, and the audit events each 200 obliges, to be looked
for where the trail ends up."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx

from gateway.ids import decode_global_id, encode_global_id
from tests.conftest import Environment, _prepare
from tests.support.json_values import all_strings
from tests.support.postgres_servers import Cluster
from tests.support.production import production_identity

PARTNER_SCOPES = "patient/Consultation.rs patient/Recording.rs patient/Patient.rs"

PATIENT_READ = (
    "{ consultations(first: 100) { edges { node { id patient { id } "
    "recordings { id playbackUrl } } } } }"
)
OTHERS_READ = "{ consultations(first: 100) { edges { node { id patient { id } } } } }"
GRANT = (
    "mutation($p: ID!, $e: DateTime!) { grantConsent(partnerId: $p, "
    'scopes: ["patient/Consultation.rs"], expiresAt: $e) { id } }'
)
REVOKE = "mutation($id: ID!) { revokeConsent(id: $id) { id } }"
# The only bodies a 503 from /graphql may carry: the gateway's own words.
UNAVAILABLE_ERRORS = {
    ("Service temporarily unavailable", "UNAVAILABLE"),
    ("Request timed out", "UNAVAILABLE"),
    ("Server busy", "UNAVAILABLE"),
    ("Response withheld: the audit trail could not be written", "AUDIT_UNAVAILABLE"),
}
# A caller refused waits this long before its next request (less than the Retry-After it is
# told, to see the service come back sooner than a patient client would).
RETRY_PAUSE = 0.2
KINDS = ("patient-read", "playback", "grant", "revoke", "clinician-read", "partner-read")


def prepared_database(server: Cluster, root: Path, issuer: str) -> tuple[Environment, str]:
    """The test database on a started ``server``, made, migrated and seeded as conftest makes
    it, with an identity ``gateway serve`` accepts and a media folder under ``root``:
    (environment, database name)."""
    identity = production_identity(root / "identity", issuer)
    media = root / "media"
    media.mkdir()
    env = asyncio.run(_prepare(server.url(), identity, media))
    return env, env.admin_url.rsplit("/", 1)[1]


@dataclasses.dataclass
class Outcome:
    """One request: what it was, how it ended, and the audit events a 200 obliges."""

    kind: str  # patient-read, playback, grant, revoke, clinician-read, partner-read
    subject: str
    gateway: int
    request_id: str
    started: float
    ended: float = 0.0
    status: int = 0  # 0: no HTTP response at all
    problem: str = ""  # a check of the response that failed
    events: set[tuple[str, UUID]] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Timeline:
    held: float = 0.0
    killed: float = 0.0
    promoted: float = 0.0
    moved: float = 0.0


def _check_unavailable(response: httpx.Response, graphql: bool) -> str:
    if not response.headers.get("retry-after", "").isdigit():
        return f"503 without Retry-After: {dict(response.headers)}"
    if graphql:
        errors = response.json().get("errors", [])
        said = {(e["message"], e["extensions"]["code"]) for e in errors}
        if len(errors) != 1 or not said <= UNAVAILABLE_ERRORS:
            return f"503 body not the gateway's own: {response.text[:200]}"
    return ""


class Load:
    """Patients (reads, playbacks, consent grants and revocations), a partner and a clinician
    calling two gateways in turn until ``stop``; every response is checked as it arrives for
    rows of anyone else."""

    def __init__(self, env: Environment, gateways: list[str]) -> None:
        self.env = env
        self.gateways = gateways
        self.outcomes: list[Outcome] = []
        self.timeline = Timeline()
        self.stopping = asyncio.Event()
        truth = env.truth
        self._foreign = {patient: truth.global_ids_not_of(patient) for _, patient in env.patients()}
        self._partner_ok = next(p for p in env.principals if p["subject"] == "partner-0002")["id"]

    async def run(self, http: httpx.AsyncClient) -> list[asyncio.Task]:
        patients = self.env.patients()
        clinician_subject, clinician = self.env.clinicians()[0]
        # patient-00001 consented to partner-0001 in the seed; the patients that grant and
        # revoke do so to partner-0002, who never reads.
        tasks = [
            asyncio.create_task(self._patient(http, subject, patient, index))
            for index, (subject, patient) in enumerate(patients[1:5])
        ]
        tasks.append(asyncio.create_task(self._clinician(http, clinician_subject, clinician)))
        tasks.append(asyncio.create_task(self._partner(http, patients[0][1])))
        return tasks

    async def _call(
        self, http: httpx.AsyncClient, kind: str, subject: str, token: str, number: int, **request
    ) -> tuple[Outcome, httpx.Response | None]:
        gateway = number % len(self.gateways)
        outcome = Outcome(kind, subject, gateway, uuid.uuid4().hex, time.monotonic())
        headers = {"authorization": f"Bearer {token}", "x-request-id": outcome.request_id}
        response = None
        try:
            if "path" in request:
                response = await http.get(self.gateways[gateway] + request["path"], headers=headers)
            else:
                response = await http.post(
                    self.gateways[gateway] + "/graphql", json=request, headers=headers
                )
            outcome.status = response.status_code
            if response.status_code == 503:
                outcome.problem = _check_unavailable(response, "path" not in request)
            elif response.status_code not in (200,):
                outcome.problem = f"{response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            outcome.problem = f"no response: {exc!r}"
        outcome.ended = time.monotonic()
        self.outcomes.append(outcome)
        if outcome.status != 200:
            await asyncio.sleep(RETRY_PAUSE)
        ok = response is not None and response.status_code == 200 and not outcome.problem
        return outcome, response if ok else None

    async def _patient(
        self, http: httpx.AsyncClient, subject: str, patient: UUID, index: int
    ) -> None:
        token = self.env.token(subject)
        own = self.env.truth
        urls: list[str] = []
        consent: str | None = None
        number = index
        while not self.stopping.is_set():
            number += 1
            outcome, response = await self._call(
                http, "patient-read", subject, token, number, query=PATIENT_READ
            )
            if response is not None:
                body = response.json()
                edges = body.get("data", {}).get("consultations", {}).get("edges", [])
                sent = {decode_global_id(e["node"]["id"])[1] for e in edges}
                recordings = {
                    decode_global_id(r["id"])[1] for e in edges for r in e["node"]["recordings"]
                }
                foreign = set(all_strings(body)) & self._foreign[patient]
                if "errors" in body or sent != own.consultations_of_patient[patient]:
                    outcome.problem = f"not exactly their consultations: {body}"[:300]
                elif not recordings <= own.recordings_of_patient[patient] or foreign:
                    outcome.problem = f"foreign rows: {foreign or recordings}"
                else:
                    outcome.events = {("disclosure", patient)}
                urls = [r["playbackUrl"] for e in edges for r in e["node"]["recordings"]] or urls
            if urls:
                url = urlsplit(urls[number % len(urls)])
                outcome, response = await self._call(
                    http, "playback", subject, token, number, path=f"{url.path}?{url.query}"
                )
                if response is not None:
                    outcome.events = {("media", patient)}
            if number % 3 == 0:
                consent = await self._change_consent(http, subject, token, patient, number, consent)
            await asyncio.sleep(0.02)

    async def _change_consent(
        self,
        http: httpx.AsyncClient,
        subject: str,
        token: str,
        patient: UUID,
        number: int,
        consent: str | None,
    ) -> str | None:
        if consent is None:
            expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
            variables = {"p": self._partner_ok, "e": expires}
            outcome, response = await self._call(
                http, "grant", subject, token, number, query=GRANT, variables=variables
            )
            if response is None:
                return None
            outcome.events = {("consent-granted", patient)}
            return response.json()["data"]["grantConsent"]["id"]
        outcome, response = await self._call(
            http, "revoke", subject, token, number, query=REVOKE, variables={"id": consent}
        )
        if response is not None and response.json()["data"]["revokeConsent"] is not None:
            outcome.events = {("consent-revoked", patient)}
        return None if response is not None else consent

    async def _clinician(self, http: httpx.AsyncClient, subject: str, clinician: UUID) -> None:
        token = self.env.token(subject)
        truth = self.env.truth
        number = 0
        while not self.stopping.is_set():
            number += 1
            outcome, response = await self._call(
                http, "clinician-read", subject, token, number, query=OTHERS_READ
            )
            if response is not None:
                body = response.json()
                edges = body.get("data", {}).get("consultations", {}).get("edges", [])
                sent = {decode_global_id(e["node"]["id"])[1] for e in edges}
                owners = {decode_global_id(e["node"]["patient"]["id"])[1] for e in edges}
                if "errors" in body or sent != truth.consultations_of_clinician[clinician]:
                    outcome.problem = f"not exactly their consultations: {body}"[:300]
                elif not owners <= truth.patients_of_clinician[clinician]:
                    outcome.problem = f"foreign patients: {owners}"
                else:
                    outcome.events = {("disclosure", owner) for owner in owners}
            await asyncio.sleep(0.02)

    async def _partner(self, http: httpx.AsyncClient, consenting: UUID) -> None:
        token = self.env.token("partner-0001", scope=PARTNER_SCOPES)
        expected = self.env.truth.consultations_of_patient[consenting]
        number = 0
        while not self.stopping.is_set():
            number += 1
            outcome, response = await self._call(
                http, "partner-read", "partner-0001", token, number, query=OTHERS_READ
            )
            if response is not None:
                body = response.json()
                edges = body.get("data", {}).get("consultations", {}).get("edges", [])
                sent = {decode_global_id(e["node"]["id"])[1] for e in edges}
                owners = {e["node"]["patient"]["id"] for e in edges}
                if "errors" in body or sent != expected:
                    outcome.problem = f"not exactly the consenting patient's: {body}"[:300]
                elif owners != {encode_global_id("Patient", consenting)}:
                    outcome.problem = f"foreign patients: {owners}"
                else:
                    outcome.events = {("disclosure", consenting)}
            await asyncio.sleep(0.02)

    def answered(self, kind: str | None = None, after: float = 0.0, gateway: int = -1) -> int:
        return sum(
            1
            for o in self.outcomes
            if o.status == 200
            and o.started > after
            and (kind is None or o.kind == kind)
            and gateway in (-1, o.gateway)
        )


async def recorded_events(url: str, request_ids: list[str]) -> dict[str, set[tuple[str, UUID]]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "select request_id, kind, patient_id from data.access_events "
            "where request_id = any($1::text[])",
            request_ids,
        )
    finally:
        await connection.close()
    recorded: dict[str, set[tuple[str, UUID]]] = {}
    for row in rows:
        recorded.setdefault(row["request_id"], set()).add((row["kind"], row["patient_id"]))
    return recorded
