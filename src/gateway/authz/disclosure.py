"""The disclosure step: the one way patient data leaves the gateway.

Every path that sends patient data (a GraphQL response over HTTP, each event of a subscription, a
media playback, and any path added later) resolves everything it is about to send into a ledger,
then calls ``DisclosureStep.clear`` and sends only if it returns. The step

1. exit-checks every owner in the ledger against the caller's authorized patients (layer 4); a
   foreign owner withholds the whole send, counts a metric, logs and writes an alert;
2. writes the ledger to the audit trail (disclosures with their break-glass reasons, denials),
   failing closed: no audit, no send. The exit check's questions to the database (care and
   consent) travel with this write, one statement that stores the events only if the answers
   hold: one round trip for both;
3. counts denials by rule, and break-glass reads once they are recorded.

When tracing, every exit check is a span ``exit_check`` and every write to the audit trail a
span ``audit_write``, whichever way out called the step.

What was checked, what was audited and what is sent are the same ledger by construction. No other
module calls the exit check or the audit writer for a disclosure.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gateway.audit.events import access_event, events_from_ledger
from gateway.audit.writer import AccessEventWriter
from gateway.authz.exit_check import ExitCheck, ExitQuestions
from gateway.data.edge import Fetch
from gateway.errors import ResponseWithheld
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import traced
from gateway.policy.table import rule_for

if TYPE_CHECKING:
    from gateway.ops.tracing import Tracing

__all__ = ["DisclosureStep"]

log = logging.getLogger("gateway.exitcheck")

# Access-event kinds under which patient data is sent (the rest are denials, alerts, changes).
DISCLOSURE_KINDS = frozenset({"disclosure", "media"})


class DisclosureStep:
    """The exit check and the audit writer are made here and used nowhere else (an import
    contract in pyproject.toml keeps it so)."""

    def __init__(self, fetch: Fetch, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self._exit_check = ExitCheck()
        self._audit = AccessEventWriter(fetch, metrics)
        self._metrics = metrics
        self._tracing = tracing

    async def clear(
        self,
        principal: Principal,
        ledger: Ledger,
        request_id: str,
        *,
        kind: str = "disclosure",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Return when what ``ledger`` records may be sent; raise ResponseWithheld (a foreign
        patient's data) or AuditUnavailable (the trail could not be written) when it may not."""
        if kind not in DISCLOSURE_KINDS:
            raise ValueError(f"not a disclosure kind: {kind}")
        ledger.seal()  # the check, the audit and any alert read the same lines
        if ledger.denials:
            self._count_denials(principal, ledger)
        questions = self._questions(principal, ledger)
        if questions.foreign:  # decided without the database: nothing is stored but the alert
            await self._withhold(principal, ledger, request_id, questions)
        events = events_from_ledger(principal, request_id, ledger, kind=kind, detail=detail)
        # The exit check's questions to the database and the audit write: one round trip.
        foreign = await self._write(events, principal=principal, asks=questions.as_json())
        if foreign:
            await self._withhold(principal, ledger, request_id, questions, foreign)
        for event in events:
            if event["break_glass_reason"] and event["kind"] in DISCLOSURE_KINDS:
                self._metrics.break_glass_reads.inc()

    async def continue_playback(
        self, principal: Principal, ledger: Ledger, request_id: str, playback: str
    ) -> None:
        """Return when a further request of a browser playback (a Range request of a viewing
        whose start ``clear(kind="media")`` audited, ``playback`` naming it) may be served:
        the same exit check, its questions asked of the database now, and no new event (one
        viewing is one audited event). Raises ResponseWithheld or AuditUnavailable like
        ``clear``; a tripped check is recorded as an alert naming the viewing it cut."""
        ledger.seal()
        questions = self._questions(principal, ledger)
        cut = {"playback": playback}
        if questions.foreign:
            await self._withhold(principal, ledger, request_id, questions, detail=cut)
        foreign = await self._write([], principal=principal, asks=questions.as_json())
        if foreign:
            await self._withhold(principal, ledger, request_id, questions, foreign, detail=cut)

    async def _withhold(
        self,
        principal: Principal,
        ledger: Ledger,
        request_id: str,
        questions: ExitQuestions,
        answered: set[UUID] | None = None,
        *,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Withhold the send: count, log, and write one alert per foreign patient (``detail``
        added to each). When the check tripped before the database was asked (``answered``
        None), its questions are asked now, so that the alerts name every foreign patient, not
        only the first found."""
        foreign = set(questions.foreign)
        if answered is None and questions.asks:
            try:
                answered = await self._write([], principal=principal, asks=questions.as_json())
            except Exception:
                log.exception(
                    "could not ask the exit check's questions", extra={"request_id": request_id}
                )
        foreign |= answered or set()
        self._metrics.exit_check_trips.inc()
        log.critical(
            "exit check tripped: response withheld",
            extra={
                "request_id": request_id,
                "subject": principal.subject,
                "role": principal.role.value,
                "foreign_patients": len(foreign),
            },
        )
        alerts = [
            access_event(
                principal,
                request_id,
                "alert",
                patient_id=owner,
                objects=[
                    {"type": type_name, "id": object_id, "fields": []}
                    for type_name, object_id in sorted(
                        {(t, str(pk)) for t, pk, of in ledger.objects if of == owner}
                    )
                ],
                detail={"reason": "exit-check", "layer": 4, **(detail or {})},
            )
            for owner in sorted(foreign)
        ]
        try:
            await self._write(alerts)
        except Exception:
            log.exception("could not record exit-check alert", extra={"request_id": request_id})
        raise ResponseWithheld("Response withheld")

    def _count_denials(self, principal: Principal, ledger: Ledger) -> None:
        role = principal.role
        for denial in ledger.denials:
            rule = rule_for(denial.type_name, denial.field, role)
            self._metrics.denials.labels(
                denial.type_name, denial.field, role.value, rule.name if rule else "default-deny"
            ).inc()

    def _questions(self, principal: Principal, ledger: Ledger) -> ExitQuestions:
        """The exit check's questions about ``ledger`` (layer 4), as a span ``exit_check``."""
        with traced(self._tracing, "exit_check", {"gateway.objects": len(ledger.objects)}):
            return self._exit_check.questions(principal, ledger)

    async def _write(
        self,
        events: list[dict[str, Any]],
        *,
        principal: Principal | None = None,
        asks: list[dict[str, Any]] | None = None,
    ) -> set[UUID]:
        """The audit writer's ``write``, as a span ``audit_write``."""
        with traced(self._tracing, "audit_write", {"gateway.events": len(events)}):
            return await self._audit.write(events, principal=principal, asks=asks)
