"""The leak suite runs on the path production takes.

Every leak, sabotage and layer-alone test collects a case on the compiled executor (a trusted
document sent by hash to a production gateway, ``tests.support.executors``), and the check that a
compiled case was served by its plan can fail: a gateway whose plans silently stopped being
compiled is caught by it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import create_app
from gateway.execution import executor as executor_module
from gateway.execution.compiler import NotCompilable
from tests.support.executors import ExecutorClient, digest, executions, settings_for, trusted
from tests.support.server import serving

ROOT = Path(__file__).resolve().parents[1]
# The leak, sabotage and layer-alone tests (docs/TESTING.md).
ON_BOTH_EXECUTORS = [
    "tests/test_field_check_alone.py",
    "tests/test_layers_alone.py",
    "tests/test_exitcheck.py",
    "tests/test_exitcheck_every_statement.py",
    "tests/test_routes_to_foreign_objects.py",
    "tests/test_locks_alone.py",
    "tests/test_subscription_disclosure.py",
    "tests/security/test_owasp_api_top10.py",
    "tests/security/test_owasp_graphql_cheat_sheet.py",
    "tests/security/test_dvga_scenarios.py",
    "tests/security/test_rate_limits.py",
    "tests/test_access_log_cursors.py",
    "tests/test_patient_consultations.py",
    "tests/test_account_cache.py",
]
# Runs both executors within each example, on one gateway (by hash and by text).
BOTH_IN_EACH_EXAMPLE = {"tests/test_plans_over_http.py"}
# Sabotage of the partner operations, which exist on the compiled path only (trusted documents
# for partners): each request is checked to be served by its plan.
COMPILED_ONLY = {"tests/test_partner_operations.py"}
ME = trusted("{ me { subject role } }")
NAMED_ME = trusted("query WhoAmI { me { subject role } }")


def test_every_leak_sabotage_and_layer_alone_test_collects_a_compiled_case():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *ON_BOTH_EXECUTORS],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    for module in ON_BOTH_EXECUTORS:
        cases = [line for line in collected if line.startswith(module)]
        assert [line for line in cases if "[compiled" in line], module
        assert [line for line in cases if "[interpreted" in line], module
    # Every module that sabotages the database edge is in the list.
    sabotaging = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if re.search(r"^from tests\.sabotage import", path.read_text(), re.MULTILINE)
    }
    assert sabotaging - BOTH_IN_EACH_EXAMPLE - COMPILED_ONLY <= set(ON_BOTH_EXECUTORS)


def test_a_compiled_case_served_by_the_interpreter_fails(env, manifest, monkeypatch):
    """A gateway whose trusted documents silently stopped compiling (every one falls back to
    graphql-core, as bench/interpreted.py makes it) answers correctly, and the compiled side's
    check refuses it all the same."""

    def not_compiled(*args, **kwargs):
        raise NotCompilable("plans switched off for this test")

    monkeypatch.setattr(executor_module, "compile_operation", not_compiled)
    app = create_app(env.settings(**settings_for("compiled", manifest)))
    with serving(app) as server:
        client = ExecutorClient(server.url, "compiled")
        try:
            with pytest.raises(AssertionError, match="served by graphql-core, meant plan"):
                client.post(ME, env.token(env.patients()[0][0]))
        finally:
            client.http.close()


def test_a_compiled_case_is_served_by_its_plan(env, gateway):
    body = gateway.execute(ME, env.token(env.patients()[0][0]))
    assert body == {"data": {"me": {"subject": env.patients()[0][0], "role": "PATIENT"}}}
    expected = "plan" if gateway.executor == "compiled" else "graphql-core"
    assert gateway.served[-1] == expected


def test_a_trusted_document_sent_with_its_operation_name_runs_by_plan_and_another_name_is_refused(
    env, manifest
):
    """Clients may name the operation they send by hash (Apollo's do): its own name runs the
    plan; another name is a bad request (graphql-core finds no such operation)."""
    subject = env.patients()[0][0]
    app = create_app(env.settings(**settings_for("compiled", manifest)))
    with serving(app) as server:
        client = ExecutorClient(server.url, "compiled")
        try:
            headers = {"authorization": f"Bearer {env.token(subject)}"}
            by_hash = {"persistedQuery": {"version": 1, "sha256Hash": digest(NAMED_ME)}}
            outcomes = []
            for name in ("WhoAmI", "Other"):
                before = executions(client.http)
                response = client.http.post(
                    "/graphql",
                    json={"extensions": by_hash, "operationName": name},
                    headers=headers,
                )
                after = executions(client.http)
                served = [executor for executor in after if after[executor] > before[executor]]
                outcomes.append((response.status_code, response.json(), served))
        finally:
            client.http.close()
    assert outcomes == [
        (200, {"data": {"me": {"subject": subject, "role": "PATIENT"}}}, ["plan"]),
        (
            400,
            {
                "errors": [
                    {
                        "message": "The document has no operation named 'Other'",
                        "extensions": {"code": "BAD_REQUEST"},
                    }
                ]
            },
            ["graphql-core"],
        ),
    ]
