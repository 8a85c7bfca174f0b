"""The store's database connection: the engine for SQLite or PostgreSQL, one transaction per operation without
blocking the event loop, the database's clock, and the driver's errors mapped to the project's own.

SQLite's calls run in worker threads; PostgreSQL's run on the event loop through psycopg's asyncio connections, so a
store serves one loop. `Database` is the base of `Store` and of its parts (`migration`, `grant_records`, `outbound`):
each runs its statements through `_run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from approval_server.errors import DatabaseFull, DatabaseLost, StoreError
from approval_server.store.db_watch import DatabaseFile

logger = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_FULL = 13  # sqlite3's error code for "database or disk is full"
POSTGRESQL_DISK_FULL = "53100"
# How long a statement waits for a lock another connection holds before it fails (SQLite's busy timeout, PostgreSQL's
# lock_timeout): a locked database fails a request after this, once, instead of holding it without end.
LOCK_WAIT_MS = 10_000
PING_SECONDS = 2.0  # how long `/healthz` waits for the database before it says it does not answer
# PostgreSQL's clock, as the naive UTC its timestamps are stored in: the one clock of every replica sharing it, for
# leases, takeover and grants (a replica's own wall clock may be off; see `replicas`).
DB_NOW = sa.func.timezone("UTC", sa.func.now())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _disk_full(exc: SQLAlchemyError) -> bool:
    cause = getattr(exc, "orig", None)
    code = getattr(cause, "sqlite_errorcode", None)  # may be an extended code: its low byte is the primary one
    return (isinstance(code, int) and code & 0xFF == SQLITE_FULL) or getattr(cause, "sqlstate", None) == (
        POSTGRESQL_DISK_FULL
    )


def _driver_says(exc: SQLAlchemyError) -> str:
    """The first line of the database driver's own message (`database is locked`): never the statement or its
    parameters, which SQLAlchemy's message holds."""
    said = str(getattr(exc, "orig", None) or "").strip().splitlines()
    return f" ({said[0][:200]})" if said else ""


class Database:
    """A database at `url`: SQLite (WAL) by default, or PostgreSQL; the schema and every statement are portable."""

    def __init__(self, url: str) -> None:
        url_obj = sa.make_url(url)
        # SQLite's file, watched once the store is prepared (see `db_watch`).
        self.path: Path | None = None
        self.file: DatabaseFile | None = None
        if url_obj.get_backend_name() == "sqlite" and url_obj.database not in (None, "", ":memory:"):
            self.path = Path(url_obj.database).absolute()
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._engine: Engine = sa.create_engine(url_obj, pool_pre_ping=True)
        # PostgreSQL is served from the event loop itself, through psycopg's asyncio connections: no hop to a worker
        # thread and back, each a wait for the GIL behind the loop's own work (milliseconds at p99 under load).
        # SQLite has no such driver; its calls run in worker threads. The blocking engine stays for migrations.
        self._async_engine: AsyncEngine | None = None
        self._in_flight: set[asyncio.Future[Any]] = set()
        if url_obj.get_backend_name() == "sqlite":
            sa.event.listen(self._engine, "connect", self._refuse_another_file)  # before the pragmas write to it
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
        else:
            options = f"{url_obj.query.get('options', '')} -c lock_timeout={LOCK_WAIT_MS}".strip()
            self._async_engine = create_async_engine(url_obj, pool_pre_ping=True, connect_args={"options": options})

    @property
    def migrates_itself(self) -> bool:
        """SQLite is migrated at start-up. A PostgreSQL database may be shared by several servers, so it is migrated
        on purpose (`approval-server db upgrade`), never by a server starting."""
        return self._engine.dialect.name == "sqlite"

    def lost(self) -> str | None:
        """Why nothing can be recorded any more (the database file was deleted or replaced), or None."""
        return self.file.check() if self.file is not None else None

    def _ensure_file(self) -> None:
        why = self.lost()
        if why is not None:
            raise DatabaseLost(why)

    def _refuse_another_file(self, dbapi_connection: Any, _record: Any) -> None:
        """A connection opened once the file at the path is another: it is closed before anything is written."""
        if self.file is not None and self.file.check() is not None:
            dbapi_connection.close()
            self._ensure_file()

    @property
    def shared(self) -> bool:
        """Whether other servers may use this database at the same time (PostgreSQL)."""
        return self._engine.dialect.name == "postgresql"

    @property
    def libpq_url(self) -> str:
        """The database's URL as libpq (psycopg) reads it, for the connection that listens to announcements."""
        return self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def describe(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release the connections of the blocking calls (`migrate`, `revision`); `aclose` releases them all."""
        self._engine.dispose()
        if self.file is not None:
            self.file.close()

    async def aclose(self) -> None:
        if self._in_flight:  # let transactions under way end (a database that hangs cannot hold up a shutdown)
            await asyncio.wait(self._in_flight, timeout=10)
        if self._async_engine is not None:
            await self._async_engine.dispose()
        self.close()

    async def _run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction. Once begun it runs to its end, as in a worker thread: a caller cancelled
        meanwhile (an agent that went away) stops waiting for it, but never leaves it half done."""

        def in_transaction() -> T:
            self._ensure_file()
            with self._engine.begin() as connection:
                result = work(connection)
            self._ensure_file()  # committed into a file that is gone: nothing was recorded
            return result

        async def in_async_transaction(engine: AsyncEngine) -> T:
            async with engine.begin() as connection:
                return await connection.run_sync(work)

        try:
            if self._async_engine is None:
                return await anyio.to_thread.run_sync(in_transaction)
            task = asyncio.ensure_future(in_async_transaction(self._async_engine))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            return await asyncio.shield(task)
        except SQLAlchemyError as exc:
            # The driver's words are for the operator; the error, which may reach an agent, names only the class. (A
            # constraint's refusal is an answer its caller may expect: `first_sighting`.)
            if not isinstance(exc, sa.exc.IntegrityError):
                logger.warning("database error: %s%s", exc.__class__.__name__, _driver_says(exc))
            if _disk_full(exc):
                raise DatabaseFull("the disk that holds its database is full") from exc
            raise StoreError(f"database error: {exc.__class__.__name__}") from exc

    async def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction, as every operation here does: for the store's companion modules that keep
        their own statements next to the logic they serve (`outbox`)."""
        return await self._run(work)

    async def ping(self) -> str | None:
        """Why the database does not answer now, or None when it does (within `PING_SECONDS`)."""
        try:
            async with asyncio.timeout(PING_SECONDS):
                await self._run(lambda c: c.execute(sa.select(1)))
        except TimeoutError:
            return f"the database did not answer within {PING_SECONDS:g} s"
        except StoreError as exc:
            return f"the database fails ({exc})"
        return None

    def clock(self, c: Connection, at: datetime) -> datetime:
        """The time of what `c` records: PostgreSQL's (see `DB_NOW`), or `at`, this process's (SQLite has one
        server)."""
        if not self.shared:
            return at
        now: datetime = c.execute(sa.select(DB_NOW)).scalar_one()
        return now.replace(tzinfo=UTC)

    async def now(self) -> datetime:
        """The store's clock (see `clock`)."""
        return await self._run(lambda c: self.clock(c, datetime.now(UTC)))
