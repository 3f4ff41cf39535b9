"""docs/OPERATIONS.md matches the code: its settings table is generated from ``Settings`` (every
setting described), every alert names a runbook that exists there, and every metric an alert
reads is one a running gateway exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway import create_app
from gateway.cli.settings_doc import missing_descriptions, settings_markdown
from tests.support.gateway_process import run_gateway
from tests.support.server import GraphQLClient, serving

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
RULES = ROOT / "k8s" / "monitoring" / "prometheusrule.yaml"


def _alerts() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def test_every_setting_is_described():
    assert missing_descriptions() == []


def test_the_settings_table_in_operations_md_is_generated_from_the_code():
    text = OPERATIONS.read_text()
    table = text.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert table == settings_markdown(), (
        "docs/OPERATIONS.md's settings table is stale: paste the output of `gateway settings`"
    )


def test_gateway_settings_prints_the_table():
    result = run_gateway("settings")
    assert result.returncode == 0, result.stderr
    assert result.stdout == settings_markdown()


def test_every_alert_names_a_runbook_that_exists():
    headings = {
        line.removeprefix("### ").strip().lower()
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("### ")
    }
    alerts = _alerts()
    assert len(alerts) >= 8
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url == f"docs/OPERATIONS.md#{alert['alert'].lower()}", alert["alert"]
        assert alert["alert"].lower() in headings, f"no runbook for {alert['alert']}"
        assert alert["labels"]["severity"] in {"page", "ticket", "notify"}


def test_every_metric_an_alert_reads_is_exported_by_the_gateway(env):
    patient, _ = env.patients()[0]
    with serving(create_app(env.settings())) as server:
        client = GraphQLClient(server.url)
        # A read with a denied field: a disclosure, a denial and an audit write.
        read = "{ consultations(first: 2) { edges { node { id reason clinicianNotes } } } }"
        assert client.post(read, env.token(patient)).status_code == 200
        exported = {
            sample.name
            for family in text_string_to_metric_families(client.http.get("/metrics").text)
            for sample in family.samples
        }
    named = {
        name for alert in _alerts() for name in re.findall(r"\b(gateway_[a-z_]+)", alert["expr"])
    }
    assert named, "the alerts read no gateway metric"
    assert named <= exported, f"alerts read metrics the gateway does not export: {named - exported}"
