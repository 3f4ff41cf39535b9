"""Rate limits per principal and per operation field, counted before any resolver runs.

They are counted after validation. Every alias of a root field counts as one attempt, so an alias
brute force against ``consultation(id:)`` (or any future login-like field) stalls at the field's
limit.

Token buckets in this replica's memory (bounded): with N replicas behind a Service the effective
limit is up to N times this; for a global limit, put the buckets in a shared store (a Redis
``INCR`` with expiry per key, or PostgreSQL) behind the same ``RateLimiter`` interface, or limit
at the ingress by the token's subject.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
)
from strawberry.extensions import SchemaExtension

from gateway.errors import Code
from gateway.guards.selections import fragments_of, selected_fields

__all__ = ["RateLimitExtension", "RateLimiter", "rate_limited", "root_fields"]


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: int,
        field_calls_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._requests = requests_per_minute
        self._fields = field_calls_per_minute
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def _take(self, key: tuple[str, str], per_minute: int, amount: int, now: float) -> float:
        """Take ``amount`` tokens; 0 when allowed, else seconds until they would be."""
        tokens, stamp = self._buckets.get(key, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - stamp) * per_minute / 60.0)
        if amount > tokens:
            self._buckets[key] = (tokens, now)
            return (amount - tokens) * 60.0 / per_minute
        self._buckets[key] = (tokens - amount, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return 0.0

    def check(self, subject: str, fields: Counter[str]) -> float:
        """0 if the request may run, else the seconds to wait. Nothing is taken on refusal
        of a field (the request is refused whole)."""
        now = self._clock()
        wait = self._take((subject, ""), self._requests, 1, now)
        if wait:
            return wait
        for field, count in fields.items():
            wait = self._take((subject, field), self._fields, count, now)
            if wait:
                return wait
        return 0.0


def root_fields(document: object, operation_name: str | None) -> Counter[str]:
    """How many times each root field appears in the operation (aliases and fragments
    included)."""
    definitions = getattr(document, "definitions", ())
    operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    operation = next(
        (
            o
            for o in operations
            if operation_name is None or (o.name and o.name.value == operation_name)
        ),
        None,
    )
    counts: Counter[str] = Counter()
    if operation is not None:
        fragments = fragments_of(definitions)
        for field, _, _ in selected_fields(operation.selection_set, fragments):
            if not field.name.value.startswith("__"):
                counts[f"{operation.operation.value}.{field.name.value}"] += 1
    return counts


class RateLimitExtension(SchemaExtension):
    """Refuses the operation before execution when the caller is over a limit."""

    def __init__(self, *, limiter: RateLimiter, execution_context: Any = None) -> None:
        super().__init__(execution_context=execution_context)
        self.limiter = limiter

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        limiter = self.limiter
        if context.graphql_document is not None:
            fields = root_fields(context.graphql_document, context.operation_name)
            wait = limiter.check(context.context.principal.subject, fields)
            if wait:
                context.result = ExecutionResult(data=None, errors=[rate_limited(wait)])
        yield


def rate_limited(wait: float) -> GraphQLError:
    """The error of an operation refused for its rate, with the seconds to wait."""
    return GraphQLError(
        "Rate limit exceeded",
        extensions={"code": Code.RATE_LIMITED, "retryAfter": max(1, round(wait))},
    )
