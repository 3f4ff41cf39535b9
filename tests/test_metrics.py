"""Prometheus metrics: each family is exposed and moves with real requests; the pool gauges
describe the real pool; /metrics can move to a port of its own."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import create_app
from gateway.ids import encode_global_id
from tests.support.server import GraphQLClient, serving
from tests.test_roles import _open, _stranger

READ = "{ consultations(first: 2) { edges { node { id reason clinicianNotes } } } }"


@pytest.fixture
def token(env):
    return env.token(env.patients()[4][0])


def scrape(http: httpx.Client) -> dict[tuple[str, frozenset], float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_request_error_denial_audit_and_statement_counters_move_with_real_requests(env):
    patient, _ = env.patients()[3]
    token = env.token(patient)
    with serving(create_app(env.settings())) as server:
        client = GraphQLClient(server.url)
        before = scrape(client.http)
        read = client.post(READ, token)
        client.post("{ me { role } }", "not-a-token")
        client.post("{ consultations { nope } }", token)
        client.http.get("/no-such-route")
        after = scrape(client.http)

    denied = len(read.json()["data"]["consultations"]["edges"])
    assert denied == 2

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gateway_requests_total", route="/graphql", status="200") == 2
    assert moved("gateway_requests_total", route="/graphql", status="401") == 1
    assert moved("gateway_requests_total", route="unmatched", status="404") == 1
    assert moved("gateway_requests_total", route="/metrics", status="200") == 1
    assert moved("gateway_request_seconds_count", route="/graphql") == 3
    assert moved("gateway_request_seconds_bucket", route="/graphql", le="+Inf") == 3
    assert moved("gateway_request_seconds_sum", route="/graphql") > 0
    assert moved("gateway_graphql_errors_total", code="FORBIDDEN") == denied
    assert moved("gateway_graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
    denial = {"type": "Consultation", "field": "clinicianNotes", "role": "patient"}
    assert moved("gateway_field_denials_total", **denial, rule="default-deny") == denied
    assert moved("gateway_audit_writes_total", outcome="ok") == 1
    # The account (read once, then remembered for the next request if the accounts' listener is
    # up by then), the page, the exit check's questions with the audit write.
    assert moved("gateway_db_statements_total") >= 3
    assert value(after, "gateway_exit_check_trips_total") == 0  # test_exitcheck trips it


def test_denials_name_the_policy_rule_whose_condition_failed(env):
    """A clinician under break-glass reads a consultation they did not conduct: its notes are
    refused by the rule Consultation.clinicianNotes@clinician (granted only if conducted)."""
    subject, _, patient = _stranger(env)
    token = env.token(subject)
    consultation = sorted(env.truth.consultations_of_patient[patient])[0]
    read = "query($id: ID!) { consultation(id: $id) { id reason clinicianNotes } }"
    with serving(create_app(env.settings())) as server:
        client = GraphQLClient(server.url)
        _open(client, token, patient)
        body = client.execute(read, token, {"id": encode_global_id("Consultation", consultation)})
        samples = scrape(client.http)
    assert body["errors"][0]["path"] == ["consultation", "clinicianNotes"]
    labels = {"type": "Consultation", "field": "clinicianNotes", "role": "clinician"}
    rule = "Consultation.clinicianNotes@clinician"
    assert value(samples, "gateway_field_denials_total", **labels, rule=rule) == 1
    assert value(samples, "gateway_field_denials_total", **labels, rule="default-deny") == 0
    # Two disclosures under the grant: the mutation's patient { displayName }, then the read.
    assert value(samples, "gateway_break_glass_reads_total") == 2


def test_pool_gauges_describe_the_real_pool_and_process_metrics_are_exposed(env, token):
    settings = env.settings(db_pool_min_size=2, db_pool_max_size=4)
    with serving(create_app(settings)) as server:
        client = GraphQLClient(server.url)
        client.execute(READ, token)
        samples = scrape(client.http)
    size = value(samples, "gateway_db_pool_size")
    idle = value(samples, "gateway_db_pool_idle")
    in_use = value(samples, "gateway_db_pool_in_use")
    assert value(samples, "gateway_db_pool_max") == 4
    assert 2 <= size <= 4
    assert in_use + idle == size
    assert value(samples, "process_resident_memory_bytes") > 0
    assert any(name == "python_info" for name, _ in samples)


def test_metrics_can_be_served_on_a_port_of_their_own(env, token):
    with serving(create_app(env.settings(metrics_port=0))) as server:
        client = GraphQLClient(server.url)
        assert client.http.get("/metrics").status_code == 404
        client.execute("{ me { role } }", token)
        port = server.server.config.app.state.metrics_server.server_port
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as metrics:
            samples = scrape(metrics)
    assert value(samples, "gateway_requests_total", route="/graphql", status="200") == 1
    assert value(samples, "gateway_requests_total", route="unmatched", status="404") == 1
