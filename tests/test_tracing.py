"""Tracing: spans reach a real OTLP/HTTP receiver, nested request > execution > loader batch > SQL
statement, named and attributed with names and counts only, never an id or a value."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from gateway import create_app
from gateway.ids import encode_global_id
from gateway.ops.tracing import Tracing
from tests.support.server import GraphQLClient, serving
from tests.support.subscriber import Subscriber, touch

READ = (
    "{ consultations(first: 3) { edges { node { id reason summary clinicianNotes "
    "clinician { displayName } patient { displayName } recordings { id } } } } }"
)


class Receiver:
    """An OTLP/HTTP trace receiver on a loopback port: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    receiver.resources.append(_attributes(resource_spans.resource.attributes))
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


def _leaf_strings(value: Any) -> Iterator[str]:
    """The string values (not the keys) in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaf_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaf_strings(item)


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def test_spans_nest_from_request_to_sql_and_hold_no_id_or_value(env):
    patient_subject, patient = env.patients()[5]
    token = env.token(patient_subject)
    with Receiver().running() as receiver:
        settings = env.settings(
            otlp_endpoint=receiver.url + "/", otel_service_name="gateway-under-test"
        )
        with serving(create_app(settings)) as server:
            client = GraphQLClient(server.url)
            response = client.post(READ, token, **{"x-request-id": "trace-1"})
            refused = client.post("{ me { role } }", "not-a-token", **{"x-request-id": "trace-2"})
        # Nothing is exported before the app shuts down (the batch waits): shutdown flushed.

    assert response.status_code == 200 and refused.status_code == 401
    assert set(receiver.paths) == {"/v1/traces"}
    assert {r["service.name"] for r in receiver.resources} == {"gateway-under-test"}
    spans = receiver.spans
    by_id = {span.span_id: span for span in spans}
    servers = {
        _attributes(s.attributes)["gateway.request_id"]: s
        for s in spans
        if s.kind == s.SPAN_KIND_SERVER
    }
    assert set(servers) == {"trace-1", "trace-2"}

    root = servers["trace-1"]
    assert root.name == "POST /graphql" and root.parent_span_id == b""
    assert _attributes(root.attributes) == {
        "http.request.method": "POST",
        "http.route": "/graphql",
        "http.response.status_code": 200,
        "gateway.request_id": "trace-1",
    }
    mine = [s for s in spans if s.trace_id == root.trace_id]

    def parent(span: Any) -> str:
        return by_id[span.parent_span_id].name

    shape = sorted((s.name, parent(s)) for s in mine if s is not root)
    nodes = [e["node"] for e in response.json()["data"]["consultations"]["edges"]]
    assert shape == sorted(
        [
            ("ACCOUNT_FOR", "POST /graphql"),
            ("graphql", "POST /graphql"),
            ("CONSULTATIONS_PAGE", "graphql"),
            ("loader clinician", "graphql"),
            ("CLINICIANS_BY_ID", "loader clinician"),
            ("loader patient", "graphql"),
            ("PATIENTS_BY_ID", "loader patient"),
            ("loader recordings_of", "graphql"),
            ("RECORDINGS_BY_CONSULTATION", "loader recordings_of"),
            ("exit_check", "POST /graphql"),
            ("audit_write", "POST /graphql"),
            ("RECORD_ACCESS_EVENTS", "audit_write"),
        ]
    )
    named = {s.name: _attributes(s.attributes) for s in mine}
    assert named["CONSULTATIONS_PAGE"] == {
        "db.system": "postgresql",
        "db.operation.name": "CONSULTATIONS_PAGE",
    }
    assert named["loader recordings_of"] == {
        "gateway.loader": "recordings_of",
        "gateway.batch_size": len(nodes),
    }
    assert named["loader patient"] == {"gateway.loader": "patient", "gateway.batch_size": 1}
    assert named["loader clinician"]["gateway.batch_size"] == len(
        {n["clinician"]["displayName"] for n in nodes}
    )
    assert set(named["graphql"]) == {"graphql.document"}  # free-form: no client-chosen name
    assert named["audit_write"]["gateway.events"] >= 1
    # The exit check's span counts the objects it judged (the page's rows at least), no more.
    assert set(named["exit_check"]) == {"gateway.objects"}
    assert named["exit_check"]["gateway.objects"] >= len(nodes)

    refused_root = servers["trace-2"]
    assert _attributes(refused_root.attributes)["http.response.status_code"] == 401
    assert [s.name for s in spans if s.trace_id == refused_root.trace_id] == ["POST /graphql"]

    # No value, id, query text or token in any attribute or name.
    secrets = set(_leaf_strings(response.json()["data"]))
    secrets |= {str(pk) for pk in env.truth.consultations_of_patient[patient]} | {str(patient)}
    secrets |= {encode_global_id("Patient", patient), patient_subject, token, READ}
    assert len(secrets) > 10
    exported = [s.name for s in spans] + [
        str(v) for s in spans for v in _attributes(s.attributes).values()
    ]
    assert not [text for text in exported for secret in secrets if secret in text]


FIND = "{ partners { id } consultations(first: 50) { edges { node { recordings { id } } } } }"
BY_ID = (
    "query ($recording: ID!, $partner: ID!) { recording(id: $recording) { consultation { id "
    "patient { consultations { id } } } } node(id: $partner) { id } }"
)


def test_each_loader_batch_is_a_span_named_for_its_loader_above_its_own_statement(env):
    """A trace says which loader ran each statement: one span per batch, named for the loader,
    with the statement it ran under it (the by-ID loaders, a patient's list, partners)."""
    patient_subject, _ = env.patients()[5]
    token = env.token(patient_subject)
    with Receiver().running() as receiver:
        settings = env.settings(otlp_endpoint=receiver.url + "/")
        with serving(create_app(settings)) as server:
            client = GraphQLClient(server.url)
            found = client.execute(FIND, token)["data"]
            recording = next(
                r["id"]
                for edge in found["consultations"]["edges"]
                for r in edge["node"]["recordings"]
            )
            variables = {"recording": recording, "partner": found["partners"][0]["id"]}
            client.post(BY_ID, token, variables, **{"x-request-id": "by-id"})
    spans = receiver.spans
    root = next(s for s in spans if _attributes(s.attributes).get("gateway.request_id") == "by-id")
    mine = [s for s in spans if s.trace_id == root.trace_id]
    loaders = {
        s.name: (
            _attributes(s.attributes),
            sorted(c.name for c in mine if c.parent_span_id == s.span_id),
        )
        for s in mine
        if s.name.startswith("loader ")
    }
    statements = {
        "recording": "RECORDINGS_BY_ID",
        "consultation": "CONSULTATIONS_BY_ID",
        "patient": "PATIENTS_BY_ID",
        "consultations_of": "CONSULTATIONS_BY_PATIENT",
        "partner": "PARTNERS_BY_ID",
    }
    assert loaders == {
        f"loader {name}": ({"gateway.loader": name, "gateway.batch_size": 1}, [statement])
        for name, statement in statements.items()
    }


EVENTS = (
    "subscription ($id: ID!) { consultationEvents(consultationId: $id) { kind consultation { "
    "id patient { displayName } recordings { id } } } }"
)


def test_each_event_of_a_subscription_is_traced_as_a_request_is(env):
    """Over WebSocket too, each event's loader batches are spans named for their loaders, each
    above the statement it ran: the event's loaders are traced as an HTTP request's are."""
    patient_subject, patient = env.patients()[5]
    token = env.token(patient_subject)
    consultation = sorted(env.truth.consultations_of_patient[patient])[0]

    async def two_events(url: str) -> None:
        socket = await Subscriber.connect(url, token)
        try:
            await socket.subscribe("1", EVENTS, consultation)
            await socket.event("1")
            await touch(env, consultation)
            await socket.event("1")
        finally:
            await socket.close()

    with Receiver().running() as receiver:
        settings = env.settings(otlp_endpoint=receiver.url + "/")
        with serving(create_app(settings)) as server:
            asyncio.run(two_events(server.url))
    spans = receiver.spans
    loaders = [s for s in spans if s.name.startswith("loader ")]
    statements = {
        "loader consultation": ["CONSULTATIONS_BY_ID"],
        "loader patient": ["PATIENTS_BY_ID"],
        "loader recordings_of": ["RECORDINGS_BY_CONSULTATION"],
    }
    assert sorted(s.name for s in loaders) == sorted(list(statements) * 2)
    for loader in loaders:
        under = [c.name for c in spans if c.parent_span_id == loader.span_id]
        assert under == statements[loader.name]


def test_tracing_is_off_without_an_endpoint_and_opentelemetry_is_not_even_imported(env):
    assert env.settings().traces_endpoint is None
    assert Tracing.from_settings(env.settings()) is None
    program = (
        "import sys\n"
        "from gateway import create_app, load_settings\n"
        f"create_app(load_settings({{}}, **{_plain(env.settings())!r}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


def _plain(settings: Any) -> dict[str, Any]:
    values = settings.model_dump(exclude_defaults=True)
    return {
        key: str(value) if not isinstance(value, int | float) else value
        for key, value in values.items()
    }
