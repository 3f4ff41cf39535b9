"""docs/POLICY.md is the policy table, and `gateway explain` / the development extension say which
rule decided each field."""

from __future__ import annotations

from pathlib import Path

from gateway import create_app
from gateway.config import Mode
from gateway.policy.doc import policy_markdown
from tests.support import GraphQLClient, run_gateway, serving

ROOT = Path(__file__).resolve().parents[1]
QUERY = "{ consultations(first: 1) { edges { node { id reason clinicianNotes } } } }"


def test_docs_policy_md_is_generated_from_the_table():
    assert (ROOT / "docs" / "POLICY.md").read_text() == policy_markdown(), (
        "docs/POLICY.md is stale: run `gateway policy --format markdown > docs/POLICY.md`"
    )


def test_gateway_explain_names_the_rule_for_every_field(env, tmp_path):
    query = tmp_path / "q.graphql"
    query.write_text(QUERY)
    result = run_gateway(
        "explain",
        "--database-url",
        env.app_url,
        "--subject",
        env.patients()[0][0],
        "--query",
        str(query),
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [
        "consultations.edges.0.node.reason",
        "allowed",
        "Consultation.reason@patient",
        "(yes)",
    ] in lines
    assert [
        "consultations.edges.0.node.clinicianNotes",
        "denied",
        "not",
        "granted",
        "to",
        "patient",
        "(default",
        "deny)",
    ] in lines
    assert any(line[:1] == ["Consultation"] for line in lines)


def test_gateway_explain_refuses_mutations(env, tmp_path):
    query = tmp_path / "m.graphql"
    query.write_text('mutation { revokeConsent(id: "x") { id } }')
    result = run_gateway(
        "explain",
        "--database-url",
        env.app_url,
        "--subject",
        env.patients()[0][0],
        "--query",
        str(query),
    )
    assert result.returncode == 2
    assert result.stderr == "gateway: --query: only queries can be explained\n"


def test_development_mode_explains_on_request_and_production_never(env, client):
    token = env.token(env.clinicians()[0][0])
    headers = {"authorization": f"Bearer {token}", "x-gateway-explain": "1"}
    production = client.http.post("/graphql", json={"query": QUERY}, headers=headers).json()
    assert "extensions" not in production
    with serving(create_app(env.settings(mode=Mode.DEVELOPMENT))) as server:
        body = (
            GraphQLClient(server.url)
            .http.post("/graphql", json={"query": QUERY}, headers=headers)
            .json()
        )
    explained = {(e["path"], e["decision"], e["rule"]) for e in body["extensions"]["explain"]}
    assert (
        "consultations.edges.0.node.clinicianNotes",
        "allowed",
        "Consultation.clinicianNotes@clinician (if conducted)",
    ) in explained


def test_development_mode_explains_resolver_fields_and_strawberry_path_fields_by_their_path(env):
    subject, _ = env.patients()[2]
    headers = {"authorization": f"Bearer {env.token(subject)}", "x-gateway-explain": "1"}
    query = "{ me { role } consultations(first: 1) { edges { node { patient { id } } } } }"
    with serving(create_app(env.settings(mode=Mode.DEVELOPMENT))) as server:
        body = (
            GraphQLClient(server.url)
            .http.post("/graphql", json={"query": query}, headers=headers)
            .json()
        )
    explained = {(e["path"], e["decision"], e["rule"]) for e in body["extensions"]["explain"]}
    assert ("me.role", "allowed", "Viewer.role@patient (yes)") in explained
    assert (
        "consultations.edges.0.node.patient",
        "allowed",
        "Consultation.patient@patient (yes)",
    ) in explained
