"""Prometheus metrics, in a registry of the app's own (no process-global state).

Every label takes values from a bounded set: route templates, status codes, error codes, the
policy table's types, fields and roles, and rule names. Never a subject, an id or a document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics", "PoolCollector", "PoolUsage"]

# (connections open, idle, maximum), or None while the pool is not open.
PoolUsage = Callable[[], "tuple[int, int, int] | None"]


class PoolCollector(Collector):
    """Gauges of the database pool, read at scrape time (nothing on the request path)."""

    def __init__(self, usage: PoolUsage) -> None:
        self._usage = usage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        usage = self._usage()
        if usage is None:
            return
        size, idle, maximum = usage
        yield GaugeMetricFamily(
            "gateway_db_pool_size", "Connections the pool holds open.", value=size
        )
        yield GaugeMetricFamily(
            "gateway_db_pool_idle", "Open connections waiting in the pool.", value=idle
        )
        yield GaugeMetricFamily(
            "gateway_db_pool_in_use", "Connections lent to a statement.", value=size - idle
        )
        yield GaugeMetricFamily(
            "gateway_db_pool_max", "Most connections the pool may open.", value=maximum
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Cheap: /proc and the interpreter are read when scraped, not per request.
        ProcessCollector(registry=self.registry)
        self.registry.register(PLATFORM_COLLECTOR)
        self.registry.register(GC_COLLECTOR)
        self.requests = Counter(
            "gateway_requests_total",
            "HTTP requests by route template and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_seconds",
            "HTTP request latency by route template.",
            ["route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.errors = Counter(
            "gateway_graphql_errors_total",
            "GraphQL errors in responses by extensions.code.",
            ["code"],
            registry=self.registry,
        )
        self.executions = Counter(
            "gateway_graphql_executions_total",
            "GraphQL operations executed, by executor: plan (a trusted document's compiled "
            "plan) or graphql-core (free-form documents, trusted documents the compiler does not "
            "take, explained requests).",
            ["executor"],
            registry=self.registry,
        )
        self.denials = Counter(
            "gateway_field_denials_total",
            "Field reads denied, by type, field, the caller's role and the policy rule whose "
            "condition failed (Type.field@role), or default-deny when no rule grants the field.",
            ["type", "field", "role", "rule"],
            registry=self.registry,
        )
        self.exit_check_trips = Counter(
            "gateway_exit_check_trips_total",
            "Responses withheld because they held an object of a patient the caller may not see.",
            registry=self.registry,
        )
        self.break_glass_reads = Counter(
            "gateway_break_glass_reads_total",
            "Disclosures of a patient's data to a clinician under break-glass (alert on any).",
            registry=self.registry,
        )
        self.db_statements = Counter(
            "gateway_db_statements_total",
            "SQL statements sent (each one round trip: the api functions set scope and query).",
            registry=self.registry,
        )
        self.audit_writes = Counter(
            "gateway_audit_writes_total",
            "Access-event batches written, by outcome.",
            ["outcome"],
            registry=self.registry,
        )

    def watch_pool(self, usage: PoolUsage) -> None:
        """Report the database pool through ``usage``, read at each scrape."""
        self.registry.register(PoolCollector(usage))
