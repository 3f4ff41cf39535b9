"""Prometheus metrics, in a registry of the app's own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests_total",
            "GraphQL HTTP requests by status code.",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_seconds",
            "GraphQL HTTP request latency.",
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.errors = Counter(
            "gateway_graphql_errors_total",
            "GraphQL errors in responses by extensions.code.",
            ["code"],
            registry=self.registry,
        )
        self.denials = Counter(
            "gateway_field_denials_total",
            "Field reads denied by the policy table.",
            ["type", "field"],
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
