"""The generated code of compiled plans (``gateway.execution.codegen``): what it may hold, what it
shows, and that a level's loads are one fetch per loader, with no DataLoader future per object.

What a plan answers (data, errors, ledger, audit) is compared with graphql-core's by
tests/test_plans.py and tests/test_plans_over_http.py, for every trusted document and role; those
run the generated code, since every object of those documents that can have it has it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.execution.codegen import generate
from gateway.execution.compiler import compile_operation
from gateway.execution.plan import ObjectPlan
from gateway.guards.trusted_documents import build_manifest
from resolvers import build_schema
from tests.support.production import offline_production_settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = offline_production_settings("codegen")
SCHEMA = build_schema(SETTINGS)
MANIFEST = build_manifest(
    [ROOT / "tests" / "plan_operations.graphql", ROOT / "bench" / "operations.graphql"],
    SCHEMA._schema,
)
BODIES = {o["name"]: o["body"] for o in MANIFEST["operations"]}


def _compiled(name: str):
    compiled = compile_operation(SCHEMA, BODIES[name], rules=SCHEMA.validation_rules)
    tree = compiled.tree(compiled.variables({}))
    return compiled, tree, next(iter(compiled.sources.values()))


def _objects(plan: ObjectPlan) -> list[ObjectPlan]:
    found = [plan]
    for field_plan in plan.fields:
        value = field_plan.value
        while value is not None and value.kind == "list":
            value = value.item
        if value is not None and value.kind == "object":
            found += _objects(value.object)
    return found


def test_the_documents_text_is_never_code():
    """Attack: a trusted document whose aliases are the generated code's own variable names,
    Python keywords and builtins (``results``, ``source``, ``run``, ``value``, ``None``,
    ``class``, ``__import__``), whose operation is named ``exec``, and whose string argument
    holds Python that would end the process. Expected: every alias is a constant of the
    namespace and appears in the source only as a comment; the argument's text appears nowhere;
    the source compiles and runs (the differential in tests/test_plans.py runs ``exec`` for
    every role against graphql-core)."""
    _, tree, source = _compiled("exec")
    assert "os._exit" not in source and "import os" not in source
    code = [line.split("#", 1)[0] for line in source.splitlines()]
    # The root's fields (results, verdicts, __import__) are walked by PlanRun (an awaited
    # resolver each); the objects under them are generated.
    for alias in ("source", "run", "value", "None", "class", "raw", "path", "record"):
        assert f"# {alias}" in source  # named in a comment, for the reader
    keys = {f.key for plan in _objects(tree) for f in plan.fields}
    assert {"results", "source", "run", "value", "None", "class", "raw", "path"} <= keys
    for line in code:  # outside comments, a key is only ever read from a constant
        assert not re.search(r"results\[['\"]", line)
        assert "'None'" not in line and '"None"' not in line
    assert "exec(" not in "".join(code)


def test_a_name_that_is_not_a_graphql_name_is_refused_before_any_code_is_written():
    """Defence in depth: were a response key ever something the parser would not produce (a
    newline and a statement), generation refuses it rather than write it, even in a comment."""
    _, tree, _ = _compiled("Q1")
    consultation = next(p for p in _objects(tree) if p.type_name == "Consultation")
    consultation.fields[0].key = "id\nimport os"
    with pytest.raises(ValueError, match="not a GraphQL name"):
        generate(tree, "Q1")


def test_every_object_of_the_benchmark_queries_runs_generated_code():
    """Q1-Q3's objects below the root all have generated code (none has a non-null field
    awaited), so none is walked field by field; the consultation's three loads are queued as
    keys."""
    for name in ("Q1", "Q2", "Q3"):
        _, tree, source = _compiled(name)
        walked = [p.type_name for p in _objects(tree) if p.complete is None]
        # Q1 and Q2's root field is an awaited resolver, non-null: PlanRun walks the root;
        # Q3's is nullable.
        assert walked == ([] if name == "Q3" else ["Query"])
    _, _, source = _compiled("Q2")
    # clinician, patient and recordings, in the function for an object whose fields are all
    # allowed and in the one that records each decision
    assert source.count("Deferred(") == 3 * 2


def test_plan_print_shows_the_code_and_the_roles_decisions(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST))
    runner = CliRunner()
    shown = runner.invoke(
        cli, ["plan", "print", "Q2", "--manifest", str(manifest), "--role", "partner"]
    )
    assert shown.exit_code == 0, shown.output
    assert "def complete_Consultation_0(run, source, path):" in shown.output
    assert "#     reason: denied (default deny)" in shown.output
    assert "#     id: allowed by Consultation.id@partner if scope " in shown.output
    missing = runner.invoke(cli, ["plan", "print", "Q9", "--manifest", str(manifest)])
    assert missing.exit_code != 0
    assert "'Q9': no such operation" in missing.output


def test_a_waiter_cancelled_leaves_a_shared_batch_to_the_others(env):
    """Three fetches of one key in one request (a level's fetch and two DataLoader batches): the
    first fetches it, the others wait for that batch. The request's client goes away and one
    waiter is cancelled: the batch still answers the first and the other waiter (nothing
    cancelled that they share), and the cancelled one ends cancelled. Real PostgreSQL."""
    import asyncio
    import time

    import asyncpg

    from gateway.data.loaders import Loaders
    from gateway.identity import Principal, Role
    from gateway.ledger import Ledger

    async def scenario() -> None:
        pool = await asyncpg.create_pool(env.app_url, min_size=1, max_size=2)
        try:
            subject, clinician = env.clinicians()[0]
            principal = Principal(
                env.identity.issuer, subject, Role.CLINICIAN, clinician, time.time() + 60
            )
            loaders = Loaders(pool.fetch, principal, Ledger())
            first = asyncio.create_task(loaders.fetch("clinician", [clinician]))
            await asyncio.sleep(0)  # its batch is under way
            cancelled = asyncio.create_task(loaders.fetch("clinician", [clinician]))
            other = asyncio.create_task(loaders.fetch("clinician", [clinician]))
            await asyncio.sleep(0)
            cancelled.cancel()
            rows = await first
            assert rows[0]["id"] == clinician
            assert await other == rows
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        finally:
            await pool.close()

    asyncio.run(scenario())
