"""Running an operation by its compiled plan when it has one, else by Strawberry and graphql-core.

Every trusted document of the manifest is compiled at start (``execution.compiler``); the
start-up log names each one that is not, and why. A request runs by plan when it names a compiled
document (by hash, or by a text whose hash is one) and asks for nothing the plan does not do
(another operation name, explain); otherwise, and for every free-form document, Strawberry runs
it. Both return the same ``ExecutionResult``, checked equal by a differential test, and both are
followed by the same disclosure step. Which one served a request is counted
(``gateway_graphql_executions_total{executor}``) and named in the request's log line, so that a
trusted document that silently stopped being compiled shows.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from graphql import parse
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway.authz.context import Context
from gateway.execution.compiler import CompiledOperation, NotCompilable, compile_operation
from gateway.guards.rate_limits import RateLimiter, rate_limited, root_fields
from gateway.ops.metrics import Metrics

__all__ = ["INTERPRETER", "PLAN", "Executor"]

# What served an operation: its compiled plan, or Strawberry and graphql-core.
PLAN = "plan"
INTERPRETER = "graphql-core"

log = logging.getLogger("gateway.execution")

_ALLOWED_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


class Executor:
    def __init__(
        self,
        schema: Any,
        operations: dict[str, str],
        *,
        limiter: RateLimiter | None = None,
        rules: tuple[Any, ...] = (),
        max_tokens: int | None = None,
        names: dict[str, str] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._schema = schema
        self._served = (
            {
                PLAN: metrics.executions.labels(PLAN),
                INTERPRETER: metrics.executions.labels(INTERPRETER),
            }
            if metrics is not None
            else None
        )
        self._limiter = limiter
        self._plans: dict[str, tuple[CompiledOperation, Counter[str]]] = {}
        self.not_compiled: dict[str, str] = {}
        for document, body in operations.items():
            label = (names or {}).get(document, document[:12])
            try:
                compiled = compile_operation(schema, body, rules=rules, max_tokens=max_tokens)
            except NotCompilable as exc:
                self.not_compiled[label] = str(exc)
                log.info(
                    "trusted document runs through graphql-core",
                    extra={"operation": label, "reason": str(exc)},
                )
                continue
            self._plans[document] = (compiled, root_fields(parse(body), compiled.name))
        if operations:
            log.info(
                "trusted documents compiled",
                extra={"compiled": len(self._plans), "not_compiled": len(self.not_compiled)},
            )

    def compiled(self, document: str) -> bool:
        return document in self._plans

    async def execute(
        self,
        query: str,
        document: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Context,
    ) -> tuple[ExecutionResult, str]:
        """The result, and which executor served it (``PLAN`` or ``INTERPRETER``)."""
        planned = self._plans.get(document)
        if (
            planned is None
            or context.ledger.explanations is not None
            or (operation_name is not None and operation_name != planned[0].name)
        ):
            self._count(INTERPRETER)
            result = await self._schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=_ALLOWED_OPERATIONS,
            )
            return result, INTERPRETER
        self._count(PLAN)
        return await self._run(planned, variables, context), PLAN

    def _count(self, executor: str) -> None:
        if self._served is not None:
            self._served[executor].inc()

    async def _run(
        self, planned: tuple[CompiledOperation, Counter[str]], variables: Any, context: Context
    ) -> ExecutionResult:
        compiled, fields = planned
        if self._limiter is not None:
            wait = self._limiter.check(context.principal.subject, fields)
            if wait:
                return ExecutionResult(data=None, errors=[rate_limited(wait)])
        coerced = compiled.variables(variables)
        if isinstance(coerced, list):
            return ExecutionResult(data=None, errors=coerced)
        data, errors = await compiled.run(context, coerced)
        return ExecutionResult(data=data, errors=errors or None)
