"""Layer 2: the per-request loaders, through which every row the schema sees comes.

Each loader's SQL (queries.py -> api.* functions) carries the caller's visibility predicate, taken
from the principal as query parameters, and sets the row-level-security scope for its own
statement. A ``Loaders`` is built for one request and dropped with it: nothing is cached across
requests. Every row handed out is written into the request's ledger with its owner patient.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiodataloader import DataLoader
from asyncpg import Record

from gateway.data import queries
from gateway.data.edge import Fetch
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.policy.table import RowScope, row_scope

if TYPE_CHECKING:
    from gateway.ops.tracing import Tracing

__all__ = ["MISSING", "ConsultationPage", "LoadSpec", "Loaders", "Then", "loaded_by", "then"]

Batch = Callable[[Sequence[Any]], Awaitable[list[Any]]]


class Then:
    """``convert`` of a loader's result, once it is there: an awaitable without a coroutine, whose
    load was already requested (so the loader batches it with its siblings' loads before anyone
    awaits). The compiled plans await ``future`` and call ``convert`` themselves."""

    __slots__ = ("convert", "future")

    def __init__(self, future: Awaitable[Any], convert: Callable[[Any], Any]) -> None:
        self.future = future
        self.convert = convert

    def __await__(self) -> Any:
        result = yield from self.future.__await__()
        return self.convert(result)


def then(pending: Awaitable[Any], convert: Callable[[Any], Any]) -> Any:
    """``convert`` of a loader's result: at once when the loader already holds it (no await, no
    event-loop round for graphql-core), else an awaitable of it (``Then``)."""
    if isinstance(pending, asyncio.Future) and pending.done():
        return convert(pending.result())
    return Then(pending, convert)


MISSING: Any = object()  # a key no loader of this request has loaded yet


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """A field whose value is ``convert`` of one loader's answer for one attribute of its source
    (``Loaders.<loader>.load(source.<key>)``)."""

    loader: str
    key: str
    convert: Callable[[Any], Any]


def loaded_by(loader: str, key: str, convert: Callable[[Any], Any]) -> Callable[..., Any]:
    """A resolver that is one load: ``convert`` of loader ``loader``'s answer for the source's
    ``key``. The decorated function gives the field its signature and type; its body is never
    run. Graphql-core calls the resolver made here; a compiled plan reads ``load_spec`` and loads
    the keys of a whole level in one call (``Loaders.fetch``): the same load, said once."""
    spec = LoadSpec(loader, key, convert)

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def resolve(self: Any, info: Any) -> Any:
            pending = getattr(info.context.loaders, loader).load(getattr(self, key))
            return then(pending, convert)

        resolve.load_spec = spec  # type: ignore[attr-defined]
        return resolve

    return decorate


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a batch's failure as seen: its own caller reports it, whoever else waited too."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class ConsultationPage:
    rows: list[Record]
    has_next_page: bool


class Loaders:
    """Per-request DataLoaders for one principal."""

    def __init__(
        self, fetch: Fetch, principal: Principal, ledger: Ledger, tracing: Tracing | None = None
    ) -> None:
        self._fetch = fetch
        self._principal = principal
        self._ledger = ledger
        self._scope = principal.sql_scope()
        self._tracing = tracing
        # Consultations this request already holds (a page, a patient's list): a load by ID
        # answers from here instead of the database, as DataLoader.prime would, for less.
        self._consultations: dict[UUID, Record] = {}
        # Each loader's answers by key, for this request: what a DataLoader caches, kept where
        # a compiled plan's level loads (``fetch``) and graphql-core's DataLoaders both read it.
        self.answers: dict[str, dict[Any, Any]] = {}
        self._batches: dict[str, Batch] = {}
        # Keys a batch under way is fetching, with that batch's outcome.
        self._loading: dict[str, dict[Any, asyncio.Future[None]]] = {}
        self.consultation = self._loader("consultation", self._consultations_by_id)
        self.recording = self._loader("recording", self._recordings_by_id)
        self.recordings_of = self._loader("recordings_of", self._recordings_by_consultation)
        self.consultations_of = self._loader("consultations_of", self._consultations_by_patient)
        self.patient = self._loader("patient", self._patients_by_id)
        self.clinician = self._loader("clinician", self._clinicians_by_id)
        self.partner = self._loader("partner", self._partners_by_id)

    def _loader(self, name: str, batch: Batch) -> DataLoader[Any, Any]:
        """A DataLoader whose batches go through ``fetch``."""
        self.answers[name] = {}
        self._loading[name] = {}
        self._batches[name] = batch
        return DataLoader(functools.partial(self.fetch, name))

    def answer(self, name: str, key: Any) -> Any:
        """Loader ``name``'s answer for ``key`` if this request has it, else ``MISSING``."""
        return self.answers[name].get(key, MISSING)

    async def fetch(self, name: str, keys: Sequence[Any]) -> list[Any]:
        """Loader ``name``'s answers for ``keys``: the ones this request has, the ones a batch
        under way is fetching (awaited, not fetched twice), the others in one batch (one
        statement)."""
        answers = self.answers[name]
        loading = self._loading[name]
        missing: list[Any] = []
        waits: set[asyncio.Future[None]] = set()
        for key in keys:
            if key in answers:
                continue
            under_way = loading.get(key)
            if under_way is not None:
                waits.add(under_way)
            elif key not in missing:
                missing.append(key)
        if missing:
            await self._batch(name, missing)
        for under_way in waits:
            # Shielded: a waiter cancelled (its request gone) must not cancel the batch's
            # outcome that other waiters of the same request share.
            await asyncio.shield(under_way)
        return [answers[key] for key in keys]

    async def _batch(self, name: str, keys: list[Any]) -> None:
        """One batch of loader ``name``, its answers kept. When tracing, the batch is a span with
        the loader's name and the batch's size (never its keys)."""
        loading = self._loading[name]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)
        for key in keys:
            loading[key] = done
        try:
            tracing = self._tracing
            if tracing is None:
                values = await self._batches[name](keys)
            else:
                attributes = {"gateway.loader": name, "gateway.batch_size": len(keys)}
                with tracing.span(f"loader {name}", attributes):
                    values = await self._batches[name](keys)
            self.answers[name].update(zip(keys, values, strict=True))
            done.set_result(None)
        except Exception as exc:
            done.set_exception(exc)
            raise
        except BaseException:
            # The batch's owner was cancelled: the others waiting for it fail as a load does,
            # not as cancelled (a DataLoader dispatch would die of it, its loads never settled).
            done.set_exception(RuntimeError(f"the {name} batch was cancelled"))
            raise
        finally:
            for key in keys:
                del loading[key]

    def _sees(self, type_name: str) -> bool:
        return row_scope(type_name, self._principal.role) is not RowScope.NONE

    def _hand_out(self, type_name: str, rows: list[Record], owner_column: str) -> None:
        record = self._ledger.record_object
        for row in rows:
            record(type_name, row["id"], row[owner_column], row["break_glass_reason"])

    async def _scoped(self, statement: str, *args: Any) -> list[Record]:
        return await self._fetch(statement, *self._scope, *args)

    async def _consultations_by_id(self, ids: Sequence[UUID]) -> list[Record | None]:
        if not self._sees("Consultation"):
            return [None] * len(ids)
        known = self._consultations
        missing = [key for key in ids if key not in known]
        by_id = {key: known[key] for key in ids if key in known}
        if missing:
            rows = await self._scoped(queries.CONSULTATIONS_BY_ID, missing)
            self._hand_out("Consultation", rows, "patient_id")
            by_id.update((row["id"], row) for row in rows)
        return [by_id.get(key) for key in ids]

    async def _consultations_by_patient(self, ids: Sequence[UUID]) -> list[list[Record]]:
        if not self._sees("Consultation"):
            return [[] for _ in ids]
        rows = await self._scoped(queries.CONSULTATIONS_BY_PATIENT, list(ids))
        self._hand_out("Consultation", rows, "patient_id")
        grouped: dict[UUID, list[Record]] = {key: [] for key in ids}
        for row in rows:
            grouped[row["patient_id"]].append(row)
            self._consultations[row["id"]] = row
        return [grouped[key] for key in ids]

    async def _recordings_by_id(self, ids: Sequence[UUID]) -> list[Record | None]:
        if not self._sees("Recording"):
            return [None] * len(ids)
        rows = await self._scoped(queries.RECORDINGS_BY_ID, list(ids))
        self._hand_out("Recording", rows, "patient_id")
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(key) for key in ids]

    async def _recordings_by_consultation(self, ids: Sequence[UUID]) -> list[list[Record]]:
        if not self._sees("Recording"):
            return [[] for _ in ids]
        rows = await self._scoped(queries.RECORDINGS_BY_CONSULTATION, list(ids))
        self._hand_out("Recording", rows, "patient_id")
        grouped: dict[UUID, list[Record]] = {key: [] for key in ids}
        for row in rows:
            grouped[row["consultation_id"]].append(row)
        return [grouped[key] for key in ids]

    async def _patients_by_id(self, ids: Sequence[UUID]) -> list[Record | None]:
        if not self._sees("Patient"):
            return [None] * len(ids)
        rows = await self._scoped(queries.PATIENTS_BY_ID, list(ids))
        self._hand_out("Patient", rows, "id")
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(key) for key in ids]

    async def _clinicians_by_id(self, ids: Sequence[UUID]) -> list[Record | None]:
        if not self._sees("Clinician"):
            return [None] * len(ids)
        rows = await self._fetch(queries.CLINICIANS_BY_ID, list(ids))
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(key) for key in ids]

    async def _partners_by_id(self, ids: Sequence[UUID]) -> list[Record | None]:
        rows = await self._fetch(queries.PARTNERS_BY_ID, list(ids))
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(key) for key in ids]

    async def all_partners(self) -> list[Record]:
        return await self._fetch(queries.ALL_PARTNERS)

    async def consents(self) -> list[Record]:
        """The caller's own consents (patients), newest first, revoked ones included."""
        if not self._sees("Consent"):
            return []
        rows = await self._fetch(queries.CONSENTS_OF, self._scope.role, self._scope.actor)
        for row in rows:
            self._ledger.record_object("Consent", row["id"], row["patient_id"])
        return rows

    async def consultations_page(
        self, first: int, after: tuple[datetime, UUID] | None
    ) -> ConsultationPage:
        """The caller's own consultations, newest first, ``first`` after the ``after`` position."""
        if not self._sees("Consultation"):
            return ConsultationPage([], False)
        after_at, after_id = after if after else (None, None)
        rows = await self._scoped(queries.CONSULTATIONS_PAGE, first + 1, after_at, after_id)
        page = rows[:first]
        self._hand_out("Consultation", page, "patient_id")
        known = self._consultations
        for row in page:
            known[row["id"]] = row
        return ConsultationPage(page, len(rows) > first)

    async def access_events_page(
        self, first: int, before: int | None, *, by_others: bool = False, emergency: bool = False
    ) -> list[Record]:
        """Events about the caller's own record, newest first, ``first + 1`` rows (the extra
        one tells whether there is a next page); ``by_others``: not the patient's own,
        ``emergency``: break-glass accesses only."""
        if not self._sees("AccessEvent"):
            return []
        rows = await self._scoped(
            queries.ACCESS_EVENTS_PAGE, first + 1, before, by_others, emergency
        )
        record = self._ledger.record_object
        for row in rows[:first]:
            record("AccessEvent", row["seq"], row["patient_id"])
        return rows

    async def archived_periods(self) -> list[Record]:
        """The months of the audit trail moved to the archive (``gateway audit archive``), newest
        first, deleted ones included: what the access log no longer holds. Not patient data;
        only a role that reads the log sees them."""
        if not self._sees("ArchivedPeriod"):
            return []
        return await self._fetch(queries.ARCHIVED_PERIODS)
