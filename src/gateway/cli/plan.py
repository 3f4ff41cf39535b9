"""``gateway plan print``: the code a trusted document's compiled plan runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.running import fail
from gateway.identity import Role

__all__ = ["plan"]


@click.group()
def plan() -> None:
    """Compiled plans: what a trusted document runs in production."""


@plan.command("print")
@click.argument("operation")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="GATEWAY_TRUSTED_DOCUMENTS",
    required=True,
    help="The trusted documents manifest (default: GATEWAY_TRUSTED_DOCUMENTS).",
)
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    help="Also show what the policy table decides for this role, field by field.",
)
def plan_print(operation: str, manifest_path: Path, role: str | None) -> None:
    """Print the generated Python of OPERATION (its name or id in the manifest), or why it is
    not compiled and runs through graphql-core."""
    from gateway.execution.compiler import NotCompilable, compile_operation
    from gateway.execution.plan import ObjectPlan
    from gateway.policy.table import ALWAYS, row_scope, rule_for
    from resolvers import build_schema

    try:
        data = json.loads(manifest_path.read_text())
        operations = data["operations"]
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"{manifest_path}: not a trusted documents manifest")
    found = [o for o in operations if operation in (o.get("name"), o.get("id"))]
    if not found:
        fail(f"{operation!r}: no such operation in {manifest_path}")
    schema = build_schema()
    try:
        compiled = compile_operation(
            schema, found[0]["body"], rules=schema.validation_rules, max_tokens=schema.max_tokens
        )
    except NotCompilable as exc:
        fail(f"{operation!r} is not compiled (it runs through graphql-core): {exc}")
    tree = compiled.tree(compiled.variables({}))
    if role is not None:
        chosen = Role(role)
        click.echo(f"# What the policy table decides for {chosen}, per governed object:")
        pending: list[ObjectPlan] = [tree]
        while pending:
            current = pending.pop(0)
            if current.governed:
                scope = row_scope(current.type_name, chosen)
                click.echo(f"#   {current.type_name} (rows: {scope.value}):")
                for name in current.governed_names:
                    rule = rule_for(current.type_name, name, chosen)
                    if rule is None:
                        decision = "denied (default deny)"
                    elif rule.condition is ALWAYS:
                        decision = f"allowed by {rule.name}"
                    else:
                        decision = f"allowed by {rule.name} if {rule.condition.describe()}"
                    click.echo(f"#     {name}: {decision}")
            for field_plan in current.fields:
                value = field_plan.value
                while value is not None and value.kind == "list":
                    value = value.item
                if value is not None and value.kind == "object":
                    assert value.object is not None  # an object's plan has its object plan
                    pending.append(value.object)
                elif value is not None and value.kind == "abstract":
                    assert value.by_class is not None  # an abstract one, its runtime types'
                    pending.extend(value.by_class.values())
    click.echo(next(iter(compiled.sources.values())))
