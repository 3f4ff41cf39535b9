"""The audit writer: stores a request's access events in one round trip."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import orjson

from gateway import queries
from gateway.identity import Principal

__all__ = ["AccessEventWriter"]

Execute = Callable[..., Awaitable[Any]]


class AccessEventWriter:
    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    @staticmethod
    def event(
        principal: Principal,
        request_id: str,
        kind: str,
        *,
        patient_id: UUID | None = None,
        object_type: str | None = None,
        object_id: UUID | None = None,
        fields: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "kind": kind,
            "issuer": principal.issuer,
            "subject": principal.subject,
            "role": principal.role.value,
            "actor_id": principal.actor_id,
            "patient_id": patient_id,
            "object_type": object_type,
            "object_id": object_id,
            "fields": fields or [],
            "detail": detail or {},
        }

    async def write(self, events: list[dict[str, Any]]) -> None:
        if events:
            payload = orjson.dumps(events, default=str).decode()
            await self._execute(queries.RECORD_ACCESS_EVENTS, payload)
