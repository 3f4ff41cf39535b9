"""A gateway whose database edge can be sabotaged one statement at a time, to prove layer 4.

``SabotagedDatabase`` is the real application-role database (row-level security, the api.*
functions), except for the statements in ``broken``: each is replaced by SQL the test chose, run as
a superuser (no row-level security, no caller predicate), the way a careless new query, a wrong
join or a shared cache would return rows. Only the exit check then stands between those rows and
the caller. A statement also in ``scoped`` runs its replacement as the application role instead,
inside the caller's row-level-security scope (``api.enter_scope``): a query that lost its
predicate, with layer 3 still on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg

from gateway.data.pool import Database
from tests.support.executors import ExecutorClient, serve_executor

# Statements of gateway.data.queries that return no patient's rows, and why: nothing there for
# layers 2 and 4 to keep from anyone. Every other statement returns patient rows, and the tests
# of those layers take their list from here (a new statement is under test until named here).
NOT_PATIENT_ROWS = {
    "ACCOUNT_FOR": "identity binding of the caller's own token, before any request runs",
    "CLINICIANS_BY_ID": "the clinician directory, not patient data",
    "PARTNERS_BY_ID": "the partner directory, not patient data",
    "ALL_PARTNERS": "the partner directory, not patient data",
    "ARCHIVED_PERIODS": "the audit archive's catalog of months, not patient data",
    "RECORD_ACCESS_EVENTS": "writes the audit trail; returns nothing",
    "RECORD_ACCESS_EVENTS_IF_AUTHORIZED": "the exit check's questions and the audit write; "
    "returns the patient IDs it found foreign",
    "PING": "readiness",
    "REDEEM_CONSENT_CODE": "returns the ID of the patient who approved, to the partner the code "
    "was issued to; every row it leads to is loaded through PATIENTS_BY_ID under the partner's "
    "consent (its own guards alone: test_layers_alone's redeem tests)",
}


def patient_row_statements() -> dict[str, str]:
    """Name -> text of every statement of the data layer that returns patient rows."""
    from gateway.data import queries

    return {name: text for name, text in queries.STATEMENTS.items() if name not in NOT_PATIENT_ROWS}


# The statement's arguments -> (superuser SQL, its arguments).
Replacement = Callable[..., tuple[str, list[Any]]]

# What a loader statement returns beside each row: the grant it was seen under (none here).
NO_GRANT = "null::text[] as consent_scopes, null::text as break_glass_reason"


class SabotagedDatabase:
    def __init__(self, env: Any) -> None:
        self._env = env
        self.broken: dict[str, Replacement] = {}
        self.scoped: set[str] = set()  # broken statements run as the application role, in scope
        # Statements sent as written, on the real edge, with their arguments changed first.
        self.arguments: dict[str, Callable[..., list[Any]]] = {}
        self.calls: dict[str, int] = {}  # how often each broken statement was used
        self._real: Database | None = None
        self._admin: asyncpg.Pool | None = None
        self._app: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _open(self) -> None:
        if self._real is None:
            self._loop = asyncio.get_running_loop()
            self._real = await Database.connect(self._env.settings())
            self._admin = await asyncpg.create_pool(self._env.admin_url, min_size=1, max_size=2)
            self._app = await asyncpg.create_pool(self._env.app_url, min_size=1, max_size=2)

    async def fetch(self, statement: str, *args: Any) -> list[Any]:
        await self._open()
        replacement = self.broken.get(statement)
        if replacement is not None:
            self.calls[statement] = self.calls.get(statement, 0) + 1
            sql, values = replacement(*args)
            if statement in self.scoped:
                async with self._app.acquire() as connection, connection.transaction():
                    role, actor, *rest = args  # (role, actor[, token scopes, ...])
                    scopes = rest[0] if rest and isinstance(rest[0], list) else []
                    await connection.execute(
                        "select api.enter_scope($1, $2, $3)", role, actor, scopes
                    )
                    return await connection.fetch(sql, *values)
            return await self._admin.fetch(sql, *values)
        rewrite = self.arguments.get(statement)
        if rewrite is not None:
            args = tuple(rewrite(*args))
        return await self._real.fetch(statement, *args)

    async def execute(self, statement: str, *args: Any) -> None:
        await self._open()
        await self._real.execute(statement, *args)

    async def _close(self) -> None:
        await self._real.close()
        await self._admin.close()
        await self._app.close()

    def close(self) -> None:
        """Close both pools on the server's own event loop (they belong to it)."""
        if self._loop is not None and self._real is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(15)


@contextlib.contextmanager
def sabotaged_gateway(
    env: Any, executor: str = "interpreted", manifest: Any = None, **settings: Any
) -> Iterator[tuple[ExecutorClient, SabotagedDatabase]]:
    """A gateway of ``executor`` (``tests.support.executors``) over the sabotaged database."""
    database = SabotagedDatabase(env)
    with serve_executor(
        env, executor, manifest, database=database, on_stop=database.close, **settings
    ) as client:
        yield client, database


def keeping(sql: str, *indexes: int) -> Replacement:
    """A replacement running ``sql`` with the statement's arguments at ``indexes``."""
    return lambda *args: (sql, [args[i] for i in indexes])


def unfiltered() -> dict[str, Replacement]:
    """Every consultation, recording and patient statement without its WHERE: the loaders of a
    gateway that forgot every predicate, as a superuser."""
    from gateway.data import queries

    return {
        queries.CONSULTATIONS_PAGE: keeping(
            f"select *, {NO_GRANT} from data.consultations "
            "order by scheduled_at desc, id desc limit $1",
            3,
        ),
        queries.CONSULTATIONS_BY_ID: keeping(
            f"select *, {NO_GRANT} from data.consultations where id = any($1::uuid[])", 3
        ),
        queries.CONSULTATIONS_BY_PATIENT: keeping(
            f"select *, {NO_GRANT} from data.consultations where patient_id = any($1::uuid[])",
            3,
        ),
        queries.RECORDINGS_BY_CONSULTATION: keeping(
            f"select *, {NO_GRANT} from data.recordings where consultation_id = any($1::uuid[])",
            3,
        ),
        queries.RECORDINGS_BY_ID: keeping(
            f"select *, {NO_GRANT} from data.recordings where id = any($1::uuid[])", 3
        ),
        queries.PATIENTS_BY_ID: keeping(
            f"select *, {NO_GRANT} from data.patients where id = any($1::uuid[])", 3
        ),
    }


def unfiltered_logs() -> dict[str, Replacement]:
    """The access log and the consents without their predicates."""
    from gateway.data import queries

    return {
        queries.ACCESS_EVENTS_PAGE: keeping(
            "select e.seq, e.occurred_at, e.kind, e.subject, e.role, e.actor_id, "
            "null::text as actor_name, e.patient_id, e.client_id, e.break_glass_reason, "
            "data.event_objects(e) as objects from data.access_events e where e.seq is not null "
            "and e.patient_id is not null order by e.seq desc limit $1",
            3,
        ),
        queries.CONSENTS_OF: keeping(
            "select k.*, p.name as partner_name from data.consents k "
            "join data.partners p on p.id = k.partner_id order by k.granted_at desc",
        ),
    }


def as_written(statements: list[str]) -> dict[str, Replacement]:
    """Each statement as the gateway wrote it, with its arguments: run by the superuser, only
    its own predicate filters (no row-level security)."""
    return {
        statement: (lambda s: lambda *args: (s, list(args)))(statement) for statement in statements
    }


@contextlib.contextmanager
def broken(database: SabotagedDatabase, statement: str, replacement: Replacement) -> Iterator[None]:
    database.broken[statement] = replacement
    try:
        yield
    finally:
        database.broken.pop(statement, None)
