"""Logs: one JSON line per request, with who and what happened, and never a clinical value, a
query's text or variables, or a token."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import uvicorn

from gateway import create_app
from gateway.cli.serve import uvicorn_logging
from gateway.ids import encode_global_id
from gateway.ops.logs import configure_logging
from tests.support.json_values import all_strings
from tests.support.server import GraphQLClient, ServerThread

READ = (
    "{ consultations(first: 3) { edges { node { id reason summary clinicianNotes "
    "clinician { displayName } patient { displayName } } } } }"
)
SECRET_NAME = "JaneDoeHivResult"


class LockedStream(io.StringIO):
    """A stream the server thread writes and the test reads."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return super().write(text)

    def lines(self) -> list[dict]:
        with self._lock:
            return [json.loads(line) for line in self.getvalue().splitlines()]


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"]
    saved = {
        name: (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
        for name in names
        for logger in [logging.getLogger(name)]
    }
    try:
        yield
    finally:
        for name, (handlers, level, propagate, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


@contextlib.contextmanager
def logged_server(settings, **app_options) -> Iterator[tuple[GraphQLClient, LockedStream]]:
    stream = LockedStream()
    with logging_restored():
        server = ServerThread(create_app(settings, **app_options))
        # After uvicorn.Config, which applies uvicorn's own logging setup.
        configure_logging(settings, stream)
        server.start()
        try:
            yield GraphQLClient(server.url), stream
        finally:
            server.stop()


def _request_lines(stream: LockedStream) -> dict[str, dict]:
    return {
        line["request_id"]: line for line in stream.lines() if line["logger"] == "gateway.request"
    }


def test_each_request_is_one_json_line_with_no_clinical_value_query_or_token(env):
    patient, _ = env.patients()[0]
    token = env.token(patient)
    bad_token = token[:-6] + "AAAAAA"
    with logged_server(env.settings()) as (client, stream):
        read = client.post(READ, token, **{"x-request-id": "read-1"})
        named = client.http.post(
            "/graphql",
            json={
                "query": f"query {SECRET_NAME}($first: Int) {{ consultations(first: $first) "
                "{ edges { node { reason } } } }",
                "operationName": SECRET_NAME,
                "variables": {"first": 2},
            },
            headers={"authorization": f"Bearer {token}", "x-request-id": "named-1"},
        )
        refused = client.post("{ me { role } }", bad_token, **{"x-request-id": "bad-token-1"})
        invalid = client.post("{ consultations { nope } }", token, **{"x-request-id": "doc-1"})
        assert invalid.status_code == 200  # application/json: 200 with errors
        unparsable = client.post("{ consultations {", token)
        probe = client.http.get("/healthz")

    assert read.status_code == 200 and named.status_code == 200
    assert read.headers["x-request-id"] == "read-1"
    nodes = [edge["node"] for edge in read.json()["data"]["consultations"]["edges"]]
    clinical = {
        value
        for node in nodes
        for value in all_strings(
            [node["reason"], node["summary"], node["clinician"], node["patient"]]
        )
        if value not in {"displayName"}
    }
    assert len(clinical) >= 5 and all(nodes[0][f] for f in ("reason", "summary"))
    assert {e["extensions"]["code"] for e in read.json()["errors"]} == {"FORBIDDEN"}
    assert refused.status_code == 401

    text = stream.getvalue()
    for value in [*clinical, token, bad_token, token.split(".")[1], SECRET_NAME, "nope"]:
        assert value not in text
    assert "consultations" not in text  # no query text, not even a field name from it

    lines = stream.lines()  # every line is one JSON object
    assert all({"timestamp", "level", "event", "logger"} <= line.keys() for line in lines)
    requests = _request_lines(stream)
    assert len(requests) == 5  # the probe is logged at debug level, below the default
    assert probe.headers["x-request-id"] not in requests

    line = requests["read-1"]
    assert line["event"] == "request" and line["level"] == "info"
    assert (line["method"], line["route"], line["status"]) == ("POST", "/graphql", 200)
    assert (line["subject"], line["role"]) == (patient, "patient")
    assert line["error_codes"] == ["FORBIDDEN"]
    assert line["document"] == hashlib.sha256(READ.encode()).hexdigest()
    assert line["operation"] is None
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0

    assert requests["named-1"]["operation"] is None  # a free-form name is the client's text
    assert requests["named-1"]["error_codes"] == []
    assert requests["bad-token-1"]["status"] == 401
    assert requests["bad-token-1"]["subject"] is None
    assert requests["bad-token-1"]["error_codes"] == ["UNAUTHENTICATED"]
    assert requests["doc-1"]["error_codes"] == ["GRAPHQL_VALIDATION_FAILED"]
    assert requests["doc-1"]["subject"] == patient
    assert requests[unparsable.headers["x-request-id"]]["error_codes"] == ["GRAPHQL_PARSE_FAILED"]


def test_a_trusted_documents_name_is_logged_from_the_manifest(env, tmp_path):
    patient, _ = env.patients()[1]
    body = "query MyVisits { consultations(first: 1) { edges { node { id } } } }"
    digest = hashlib.sha256(body.encode()).hexdigest()
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": digest, "name": "MyVisits", "type": "query", "body": body}],
            }
        )
    )
    settings = env.settings(trusted_documents=manifest, free_form_documents="nobody")
    with logged_server(settings) as (client, stream):
        response = client.http.post(
            "/graphql",
            json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}},
            headers={"authorization": f"Bearer {env.token(patient)}", "x-request-id": "pq-1"},
        )
    assert response.status_code == 200 and "errors" not in response.json()
    line = _request_lines(stream)["pq-1"]
    assert (line["operation"], line["document"]) == ("MyVisits", digest)


def test_a_masked_internal_error_is_logged_without_its_message(env):
    from tests.test_http import ExplodingDatabase

    patient, _ = env.patients()[2]
    with logged_server(env.settings(), database=ExplodingDatabase(env)) as (client, stream):
        response = client.post(
            "{ consultations(first: 1) { edges { node { id } } } }",
            env.token(patient),
            **{"x-request-id": "boom-1"},
        )
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    errors = [line for line in stream.lines() if line["logger"] == "gateway.http"]
    assert [(line["event"], line["request_id"]) for line in errors] == [
        ("masked internal error", "boom-1")
    ]
    # Frames (code) stay; the message (possibly a row's values) does not.
    assert errors[0]["exc_info"].endswith("builtins.RuntimeError (message withheld)")
    assert "RuntimeError: relation" not in stream.getvalue()
    assert _request_lines(stream)["boom-1"]["error_codes"] == ["INTERNAL_SERVER_ERROR"]


def test_serve_and_dev_route_uvicorns_loggers_through_the_one_setup(env):
    stream = LockedStream()
    settings = env.settings(log_level="debug")
    with logging_restored():
        options = uvicorn_logging(settings)
        options["log_config"]["handlers"]["gateway"]["stream"] = stream
        config = uvicorn.Config(create_app(settings), **options)
        assert config.access_log is False
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
        logging.getLogger("uvicorn.access").info("GET / 200")
    assert [(line["logger"], line["event"], line["level"]) for line in stream.lines()] == [
        ("uvicorn.error", "Started server process [7]", "info")
    ]


def test_a_playback_is_logged_by_route_template_under_the_id_the_audit_trail_holds(env):
    from tests.support.database import as_admin
    from tests.test_media import PLAY

    subject, patient = env.patients()[6]
    recording = sorted(env.truth.recordings_of_patient[patient])[0]
    global_id = encode_global_id("Recording", recording)
    token = env.token(subject)
    with logged_server(env.settings()) as (client, stream):
        body = client.execute(PLAY, token, {"id": global_id})
        parts = urlsplit(body["data"]["recording"]["playbackUrl"])
        played = client.http.get(
            f"{parts.path}?{parts.query}",
            headers={"authorization": f"Bearer {token}", "x-request-id": "play-1"},
        )
    assert played.status_code == 200 and played.headers["x-request-id"] == "play-1"
    line = _request_lines(stream)["play-1"]
    assert (line["route"], line["status"], line["subject"]) == (
        "/media/recordings/{id}",
        200,
        subject,
    )
    assert global_id not in stream.getvalue() and str(recording) not in stream.getvalue()
    kinds = as_admin(
        env,
        lambda c: c.fetch("select kind from data.access_events where request_id = 'play-1'"),
    )
    assert [row["kind"] for row in kinds] == ["media"]
