"""docs/POLICY.md is the policy table, and `gateway explain` / the development extension say which
rule decided each field."""

from __future__ import annotations

from pathlib import Path

from gateway import create_app
from gateway.config import Mode
from gateway.policy.doc import policy_markdown
from tests.support.gateway_process import run_gateway
from tests.support.server import GraphQLClient, serving

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


def test_an_explanation_is_one_entry_per_field_check_and_renders_as_an_aligned_table():
    from gateway.authz.explain import explanation, render_explanation
    from gateway.ledger import Ledger

    ledger = Ledger(explaining=True)
    ledger.explain(
        "consultation.reason", "Consultation", "reason", True, "Consultation.reason@patient (yes)"
    )
    ledger.explain("consultation.clinicianNotes", "Consultation", "clinicianNotes", False,
                   "not granted to patient (default deny)")  # fmt: skip
    entries = explanation(ledger)
    assert entries == [
        {
            "path": "consultation.reason",
            "type": "Consultation",
            "field": "reason",
            "decision": "allowed",
            "rule": "Consultation.reason@patient (yes)",
        },
        {
            "path": "consultation.clinicianNotes",
            "type": "Consultation",
            "field": "clinicianNotes",
            "decision": "denied",
            "rule": "not granted to patient (default deny)",
        },
    ]
    assert explanation(Ledger()) == []
    assert render_explanation(entries, [("Consultation", "c1"), ("Patient", "p1")]) == (
        "path                         decision  rule\n"
        "---------------------------  --------  -------------------------------------\n"
        "consultation.reason          allowed   Consultation.reason@patient (yes)\n"
        "consultation.clinicianNotes  denied    not granted to patient (default deny)\n"
        "\n"
        "objects loaded (row scope of the caller's role):\n"
        "  Consultation c1\n"
        "  Patient p1"
    )
    assert render_explanation(entries[:1], []) == (
        "path                 decision  rule\n"
        "-------------------  --------  ---------------------------------\n"
        "consultation.reason  allowed   Consultation.reason@patient (yes)"
    )
