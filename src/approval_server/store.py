"""The audit trail: a small set of named operations on the database, none of which blocks the event loop.

SQLite (WAL) by default, or PostgreSQL; the schema and every statement are portable. SQLite's calls run in worker
threads; PostgreSQL's run on the event loop through psycopg's asyncio connections, so a store serves one loop.

A request leaves `pending` exactly once: `resolve` updates the row `WHERE status = 'pending'` and checks that one
row changed, so two answers racing, in one process or in several, can never both win.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from approval_server.db_watch import DatabaseFile
from approval_server.errors import ConfigError, DatabaseFull, DatabaseLost, NotDelivered, StoreError
from approval_server.fair_share import Limits, Share
from approval_server.grants import Grant
from approval_server.models import Answer, ApprovalRequest, Remember, Status
from approval_server.notices import NOTICE_CHANNEL, OUTCOME_FIELDS, Notice, outcome_detail
from approval_server.tables import answers, grants, outbound_messages, requests, seen_webhooks

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What became of an answer (the `outcome` of its row in `answers`).
APPLIED = "applied"
TOO_LATE = "too_late"
NOT_DELIVERED = "not_delivered"  # its agent was no longer waiting: it changed nothing (see `handover`)
HANDED_OVER = "handed_over"  # given on one replica for an agent waiting on another, which has not taken it yet
UPGRADE_COMMAND = "approval-server db upgrade"
SQLITE_FULL = 13  # sqlite3's error code for "database or disk is full"
POSTGRESQL_DISK_FULL = "53100"
# How long a statement waits for a lock another connection holds before it fails (SQLite's busy timeout, PostgreSQL's
# lock_timeout): a locked database fails a request after this, once, instead of holding it without end.
LOCK_WAIT_MS = 10_000
PING_SECONDS = 2.0  # how long `/healthz` waits for the database before it says it does not answer


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@dataclass(frozen=True)
class Revision:
    """Where a database's schema stands: its migration (None when it has none), the newest this version knows, and
    whether this version knows the database's migration at all (it does not when a newer version migrated it)."""

    current: str | None
    newest: str
    known: bool = True

    @property
    def is_newest(self) -> bool:
        return self.current == self.newest

    def describe(self) -> str:
        if self.is_newest:
            return f"at revision {self.current}, the newest"
        if self.current is None:
            return f"not migrated (no schema): run  {UPGRADE_COMMAND}"
        if not self.known:
            return f"at revision {self.current}, which this version does not know: upgrade approval-server"
        return f"at revision {self.current}, not the newest ({self.newest}): run  {UPGRADE_COMMAND}"


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


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "approval_server:migrations")
    return config


@dataclass(frozen=True)
class OutboundMessage:
    sid: str
    request_id: str
    recipient: str
    status: str
    error_code: str | None = None


def _row_to_request(row: sa.Row[Any]) -> ApprovalRequest:
    return ApprovalRequest(
        id=row.id,
        tool_name=row.tool_name,
        input=row.input,
        tool_use_id=row.tool_use_id,
        extra=row.extra,
        client=row.client,
        agent=row.agent,
        session=row.session,
        cwd=row.cwd,
        agent_kind=row.agent_kind,
        agent_version=row.agent_version,
        editable=row.editable,
        rendered=row.rendered,
        created_at=row.created_at,
        expires_at=row.expires_at,
        status=Status(row.status),
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decided_via=row.decided_via,
        reason=row.reason,
        updated_input=row.updated_input,
        remembered=row.remembered,
    )


def answer_row(request_id: str, answer: Answer, at: datetime, outcome: str) -> dict[str, Any]:
    """An answer as its row in `answers`."""
    return {
        "request_id": request_id,
        "at": at,
        "status": answer.status.value,
        "actor": answer.actor,
        "channel": answer.channel,
        "message": answer.message,
        "updated_input": answer.updated_input,
        "outcome": outcome,
        "remember": answer.remember.text if answer.remember else None,
    }


def row_to_answer(row: sa.Row[Any]) -> Answer:
    """An answer as its row in `answers` recorded it."""
    remember = Remember.parse(row.remember) if row.remember else None
    return Answer(Status(row.status), row.actor, row.channel, row.message, row.updated_input, remember)


def _row_to_outbound(row: sa.Row[Any]) -> OutboundMessage:
    return OutboundMessage(row.sid, row.request_id, row.recipient, row.status, row.error_code)


def _row_to_grant(row: sa.Row[Any]) -> Grant:
    return Grant(**row._asdict())


# The statements of the busiest path (a request recorded, then decided), built once: then SQLAlchemy neither builds
# them nor works out their cache keys again on every call, which costs more than the database's own work.
_GET = requests.select().where(requests.c.id == sa.bindparam("request_id"))
_INSERT = requests.insert()
_INSERT_AND_ANNOUNCE = _INSERT.returning(sa.func.pg_notify(NOTICE_CHANNEL, sa.bindparam("notice", type_=sa.Text)))
# Closes a pending request; the winner gets the row back, and on PostgreSQL the announcement goes out with it.
_DECIDE = (
    requests.update()
    .where(requests.c.id == sa.bindparam("request_id"), requests.c.status == Status.PENDING.value)
    .values({name: sa.bindparam(f"new_{name}", type_=requests.c[name].type) for name in OUTCOME_FIELDS})
    .returning(*requests.c)
)
_DECIDE_AND_ANNOUNCE = _DECIDE.returning(sa.func.pg_notify(NOTICE_CHANNEL, sa.bindparam("notice", type_=sa.Text)))
_RECORD_ANSWER = answers.insert()
# An offered answer (see `handover`), locked by the replica that applies it, so that its withdrawal waits, then finds
# it taken; or found withdrawn, and left alone.
_CLAIM_OFFER = (
    sa.select(answers.c.id)
    .where(answers.c.id == sa.bindparam("answer_id"), answers.c.outcome == HANDED_OVER)
    .with_for_update()
)
# PostgreSQL's clock, as the naive UTC its timestamps are stored in: the one clock of every replica sharing it, for
# leases, takeover and grants (a replica's own wall clock may be off; see `replicas`).
DB_NOW = sa.func.timezone("UTC", sa.func.now())


def _matching_grant(now: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """Asked for every call the policy leaves to a human: the oldest grant in force at `now` that allows it again."""
    return (
        grants.select()
        .where(
            grants.c.scope.in_(sa.bindparam("scopes", expanding=True)),
            grants.c.tool_name == sa.bindparam("tool_name"),
            grants.c.key == sa.bindparam("key"),
            grants.c.revoked_at.is_(None),
            grants.c.expires_at > now,
        )
        .order_by(grants.c.created_at, grants.c.id)
        .limit(1)
    )


_MATCHING_GRANT = _matching_grant(sa.bindparam("at"))
_MATCHING_GRANT_ON_DB_CLOCK = _matching_grant(DB_NOW)

# Fair share (see `fair_share`): a pending request is let wait for a human, taking a place in its share, only while
# its share and its token are under their limits. One statement checks and takes, so no two racing requests both
# take the last place: SQLite runs it under its write lock, PostgreSQL after the lock below.
_waiting = requests.alias("waiting")
_WAITING = (_waiting.c.status == Status.PENDING.value, _waiting.c.share.is_not(None))
_IN_SHARE = _waiting.c.share == sa.bindparam("the_share")
_FOR_TOKEN = _waiting.c.credential == sa.bindparam("the_credential")
_ADMIT = (
    requests.update()
    .where(
        requests.c.id == sa.bindparam("request_id"),
        requests.c.status == Status.PENDING.value,
        sa.select(sa.func.count()).where(*_WAITING, _IN_SHARE).scalar_subquery() < sa.bindparam("per_agent"),
        sa.select(sa.func.count()).where(*_WAITING, _FOR_TOKEN).scalar_subquery() < sa.bindparam("per_token"),
    )
    .values(share=sa.bindparam("the_share"), credential=sa.bindparam("the_credential"))
)
_WAITING_NOW = sa.select(
    sa.func.count().filter(_IN_SHARE).label("in_share"), sa.func.count().filter(_FOR_TOKEN).label("for_token")
).where(*_WAITING)
# One lock for every admission, on every replica: held to the end of the transaction that takes a place.
_ADMISSION_LOCK = sa.select(sa.func.pg_advisory_xact_lock(0x617070726F76616C))


class Store:
    """`replica` names this server among those sharing a PostgreSQL database: its requests carry it, and what it
    changes is announced to the others (`NOTIFY`, delivered when the transaction commits, so never before)."""

    def __init__(self, url: str, replica: str | None = None) -> None:
        self.replica = replica
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

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest migration, or to `revision` (blocking)."""
        config = _alembic_config()
        try:
            with self._engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except CommandError as exc:  # e.g. a revision this version does not know: the database is newer
            raise StoreError(f"could not migrate the database {self.describe()}: {exc}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"could not prepare the database: {exc.__class__.__name__}: {exc}") from exc

    def revision(self) -> Revision:
        """The database's migration and the newest one (blocking)."""
        script = ScriptDirectory.from_config(_alembic_config())
        newest = script.get_current_head()
        assert newest is not None  # the package ships its migrations
        try:
            with self._engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the database: {exc.__class__.__name__}: {exc}") from exc
        known = current is None or current in {migration.revision for migration in script.walk_revisions()}
        return Revision(current, newest, known)

    def prepare(self) -> None:
        """Make the store ready to serve (blocking; called once at start-up): SQLite is migrated and its file watched
        from then on; any other database must be migrated already, or this raises `ConfigError` naming the command to
        run."""
        if self.migrates_itself:
            self.migrate()
            if self.path is not None:
                self.file = DatabaseFile(self.path)
            return
        revision = self.revision()
        if not revision.is_newest:
            raise ConfigError(
                f"The database {self.describe()} is {revision.describe()}, then start the server again. "
                "(A server never migrates a PostgreSQL database itself: others may be using it.)"
            )

    def holds_database(self) -> bool:
        """Whether the database has a schema (blocking). A missing SQLite file is not created to find out."""
        if self.path is not None and not self.path.exists():
            return False
        return self.revision().current is not None

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

    def _notice_payload(self, kind: str, request_id: str, detail: str | None = None) -> str:
        """What `pg_notify` sends: in a statement of its own, or in the RETURNING of the change it announces, which
        saves a round trip to the database and fires only for a row that changed."""
        return Notice(kind, request_id, self.replica or "", detail).to_payload()

    def announce_in(self, c: Connection, kind: str, request_id: str, detail: str | None = None) -> None:
        if self.shared:
            c.execute(sa.select(sa.func.pg_notify(NOTICE_CHANNEL, self._notice_payload(kind, request_id, detail))))

    async def announce(self, kind: str, request_id: str, detail: str | None = None) -> None:
        """Tell the other replicas something about a request (nothing to do with one server)."""
        if self.shared:
            await self._run(lambda c: self.announce_in(c, kind, request_id, detail))

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

    async def insert(self, request: ApprovalRequest) -> None:
        values = request.to_json() | {
            "status": request.status.value,
            "created_at": request.created_at,
            "expires_at": request.expires_at,
            "decided_at": request.decided_at,
            "replica": self.replica,
        }
        if self.shared:
            values["notice"] = self._notice_payload("created", request.id)
        await self._run(lambda c: c.execute(_INSERT_AND_ANNOUNCE if self.shared else _INSERT, values))

    async def get(self, request_id: str) -> ApprovalRequest | None:
        def work(c: Connection) -> ApprovalRequest | None:
            row = c.execute(_GET, {"request_id": request_id}).first()
            return _row_to_request(row) if row else None

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

    async def replica_of(self, request_id: str) -> str | None:
        """The replica that recorded a request, whose caller waits there (None on a database of one server)."""
        query = sa.select(requests.c.replica).where(requests.c.id == request_id)
        owner: str | None = await self._run(lambda c: c.execute(query).scalar_one_or_none())
        return owner

    async def record_answer(self, request_id: str, answer: Answer, at: datetime, outcome: str) -> None:
        """Record an answer that changed nothing, with why (`outcome`)."""
        await self._run(lambda c: c.execute(_RECORD_ANSWER, answer_row(request_id, answer, at, outcome)))

    async def recent(self, status: Status | None = None, limit: int = 100) -> list[ApprovalRequest]:
        query = requests.select().order_by(requests.c.created_at.desc(), requests.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(requests.c.status == status.value)
        return await self._run(lambda c: [_row_to_request(row) for row in c.execute(query)])

    async def search(
        self,
        status: Status | None = None,
        tool: str | None = None,
        text: str | None = None,
        *,
        limit: int,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]:
        """The history, newest first, filtered by status, exact tool name and a case-insensitive text match over
        the id, what was shown, who decided and why. Returns one page and the number of matching rows."""
        conditions: list[sa.ColumnElement[bool]] = []
        if status is not None:
            conditions.append(requests.c.status == status.value)
        if tool:
            conditions.append(requests.c.tool_name == tool)
        if text:
            searched = (
                requests.c.id,
                requests.c.rendered,
                requests.c.decided_by,
                requests.c.reason,
                requests.c.client,
                requests.c.agent,
            )
            if self._engine.dialect.name == "sqlite":
                # SQLite's LIKE ignores case exactly as far as its lower() folds it (ASCII), without lower()'s copy
                # of every text: the same matches, at twice the speed on a history with long inputs.
                matches = [column.contains(text, autoescape=True) for column in searched]
            else:
                matches = [column.icontains(text, autoescape=True) for column in searched]
            conditions.append(sa.or_(*matches))
        # Every index on the history ends with the id, so this order is read from an index, never sorted.
        page = (
            requests.select()
            .where(*conditions)
            .order_by(requests.c.created_at.desc(), requests.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(requests).where(*conditions)

        def work(c: Connection) -> tuple[list[ApprovalRequest], int]:
            rows = [_row_to_request(row) for row in c.execute(page)]
            if len(rows) < limit and (rows or offset == 0):
                # The last page: the count follows from it. A text match that is rare (or absent) reads every row
                # to fill its page; this spares it a second full read to count.
                return rows, offset + len(rows)
            return rows, c.execute(count).scalar_one()

        return await self._run(work)

    async def tool_names(self) -> list[str]:
        query = sa.select(requests.c.tool_name).distinct().order_by(requests.c.tool_name)
        return await self._run(lambda c: list(c.execute(query).scalars()))

    async def answers_for(self, request_id: str) -> list[dict[str, Any]]:
        query = answers.select().where(answers.c.request_id == request_id).order_by(answers.c.id)

        def work(c: Connection) -> list[dict[str, Any]]:
            return [
                {
                    "at": row.at.isoformat(),
                    "status": row.status,
                    "actor": row.actor,
                    "channel": row.channel,
                    "message": row.message,
                    "updated_input": row.updated_input,
                    "outcome": row.outcome,
                }
                for row in c.execute(query)
            ]

        return await self._run(work)

    def clock(self, c: Connection, at: datetime) -> datetime:
        """The time of what `c` records: PostgreSQL's (see `DB_NOW`), or `at`, this process's (SQLite has one
        server)."""
        if not self.shared:
            return at
        now: datetime = c.execute(sa.select(DB_NOW)).scalar_one()
        return now.replace(tzinfo=UTC)

    async def resolve(
        self,
        request_id: str,
        answer: Answer,
        at: datetime,
        *,
        record_if_late: bool = True,
        offered: int | None = None,
    ) -> tuple[bool, ApprovalRequest | None]:
        """Apply `answer` if the request is still pending; record it either way, unless it is late and
        `record_if_late` is False (the server's own closing, which did not happen if another answer won). An allow
        that remembers records its grant in the same transaction, on the database's clock.

        `offered`: the answer was recorded already, handed over by another replica (see `handover`): its row gets
        the outcome, or `NotDelivered` is raised when that replica withdrew it meanwhile.

        Returns whether this answer won, and the row as it now stands (`None` for an unknown id).
        """
        remembered = answer.remember.kind if answer.remember and answer.status is Status.ALLOWED else None
        outcome = {
            "status": answer.status.value,
            "decided_at": at,
            "decided_by": answer.actor,
            "decided_via": answer.channel,
            "reason": answer.message,
            "updated_input": answer.updated_input,
            "remembered": remembered,
        }
        params = {"request_id": request_id} | {f"new_{name}": value for name, value in outcome.items()}
        if self.shared:
            params["notice"] = self._notice_payload("closed", request_id, outcome_detail(outcome))

        def work(c: Connection) -> tuple[bool, ApprovalRequest | None]:
            if offered is not None and c.execute(_CLAIM_OFFER, {"answer_id": offered}).first() is None:
                raise NotDelivered(f"the answer to request {request_id} was withdrawn before it could be applied")
            row = c.execute(_DECIDE_AND_ANNOUNCE if self.shared else _DECIDE, params).first()
            won = row is not None
            if row is None:  # too late (or no such request): the row as it stands
                row = c.execute(_GET, {"request_id": request_id}).first()
            if row is None:
                return False, None
            if offered is not None:
                c.execute(answers.update().where(answers.c.id == offered).values(outcome=APPLIED if won else TOO_LATE))
            elif won or record_if_late:
                c.execute(_RECORD_ANSWER, answer_row(request_id, answer, at, APPLIED if won else TOO_LATE))
            request = _row_to_request(row)
            if won and remembered and answer.remember:
                grant = Grant.for_request(request, answer.remember, answer.actor, answer.channel, self.clock(c, at))
                if grant is not None:
                    c.execute(grants.insert().values(vars(grant)))
            return won, request

        return await self._run(work)

    async def admit(self, request_id: str, share: Share, limits: Limits) -> tuple[int, int] | None:
        """Let a pending request wait for a human, taking a place in `share`, if its share and its token are under
        their `limits`. Returns None when it may wait; otherwise how many requests wait now, in its share and for
        its token (also when the request was closed meanwhile)."""
        params = {
            "request_id": request_id,
            "the_share": share.key,
            "the_credential": share.credential,
            "per_agent": limits.per_agent,
            "per_token": limits.per_token,
        }

        def work(c: Connection) -> tuple[int, int] | None:
            if self.shared:
                c.execute(_ADMISSION_LOCK)
            if c.execute(_ADMIT, params).rowcount == 1:
                return None
            row = c.execute(_WAITING_NOW, params).one()
            return int(row.in_share), int(row.for_token)

        return await self._run(work)

    async def abandon_pending(self, at: datetime, actor: str) -> list[str]:
        """Close every request left pending by a process that is gone; returns their ids."""

        def work(c: Connection) -> list[str]:
            return [
                row.id
                for row in c.execute(
                    requests.update()
                    .where(requests.c.status == Status.PENDING.value)
                    .values(
                        status=Status.ABANDONED.value,
                        decided_at=at,
                        decided_by=actor,
                        decided_via="startup",
                        reason="the server restarted while the request was waiting",
                    )
                    .returning(requests.c.id)
                )
            ]

        return await self._run(work)

    async def now(self) -> datetime:
        """The store's clock (see `clock`)."""
        return await self._run(lambda c: self.clock(c, datetime.now(UTC)))

    async def matching_grant(
        self, scopes: list[str], tool_name: str, key: str, at: datetime | None = None
    ) -> Grant | None:
        """The oldest grant in force at `at` (by default now, on the store's clock) that allows `tool_name` with
        `key` in one of `scopes`."""
        params = {"scopes": scopes, "tool_name": tool_name, "key": key, "at": at or datetime.now(UTC)}
        query = _MATCHING_GRANT_ON_DB_CLOCK if at is None and self.shared else _MATCHING_GRANT

        def work(c: Connection) -> Grant | None:
            row = c.execute(query, params).first()
            return _row_to_grant(row) if row else None

        return await self._run(work)

    async def grants(self, *, active_at: datetime | None = None, limit: int = 200) -> list[Grant]:
        """Grants, newest first: only those still in force at `active_at` when it is given."""
        query = grants.select().order_by(grants.c.created_at.desc(), grants.c.id.desc()).limit(limit)
        if active_at is not None:
            query = query.where(grants.c.revoked_at.is_(None), grants.c.expires_at > active_at)
        return await self._run(lambda c: [_row_to_grant(row) for row in c.execute(query)])

    async def grants_from(self, request_id: str) -> list[Grant]:
        query = grants.select().where(grants.c.request_id == request_id).order_by(grants.c.created_at)
        return await self._run(lambda c: [_row_to_grant(row) for row in c.execute(query)])

    async def revoke_grant(self, grant_id: str, actor: str) -> tuple[bool, Grant | None]:
        """End a grant now, on the store's clock. Returns whether this call ended it (False: it had already ended),
        and the grant."""

        def work(c: Connection) -> tuple[bool, Grant | None]:
            at = self.clock(c, datetime.now(UTC))
            changed = c.execute(
                grants.update()
                .where(grants.c.id == grant_id, grants.c.revoked_at.is_(None), grants.c.expires_at > at)
                .values(revoked_at=at, revoked_by=actor)
            ).rowcount
            row = c.execute(grants.select().where(grants.c.id == grant_id)).first()
            return changed == 1, _row_to_grant(row) if row else None

        return await self._run(work)

    def _upsert(self, table: sa.Table) -> Any:
        """An INSERT that can say what to do ON CONFLICT, in the dialect's own terms (both have the same API)."""
        dialect = postgresql if self.shared else sqlite
        return dialect.insert(table)

    async def record_outbound(
        self, sid: str, request_id: str, channel: str, recipient: str, status: str, at: datetime
    ) -> OutboundMessage:
        """Record a message sent for a request. Returns it as it now stands: failed already, when Twilio's report of
        the failure overtook the send (and was kept by `report_delivery`, on this replica or another)."""
        table = outbound_messages
        values = {
            "sid": sid,
            "request_id": request_id,
            "channel": channel,
            "recipient": recipient,
            "status": status,
            "created_at": at,
            "updated_at": at,
        }
        insert = (
            self._upsert(table)
            .values(values)
            .on_conflict_do_update(
                index_elements=[table.c.sid],
                set_={"request_id": request_id, "channel": channel, "recipient": recipient},
                where=table.c.request_id.is_(None),  # only a report waiting for its send, never another's message
            )
            .returning(table.c.status, table.c.error_code)
        )

        def work(c: Connection) -> OutboundMessage:
            row = c.execute(insert).first()
            status_now, error_code = (row.status, row.error_code) if row else (status, None)
            return OutboundMessage(sid, request_id, recipient, status_now, error_code)

        return await self._run(work)

    async def outbound(self, sid: str) -> OutboundMessage | None:
        query = outbound_messages.select().where(
            outbound_messages.c.sid == sid, outbound_messages.c.request_id.is_not(None)
        )

        def work(c: Connection) -> OutboundMessage | None:
            row = c.execute(query).first()
            return _row_to_outbound(row) if row else None

        return await self._run(work)

    async def report_delivery(
        self, sid: str, status: str, error_code: str | None, at: datetime, *, keep_unknown: bool = False
    ) -> list[OutboundMessage]:
        """Record a delivery report; returns every message sent for the same request, as they now stand.

        A report for a message not recorded yet returns nothing; with `keep_unknown` it is kept for the send to claim
        (`record_outbound`). The send may be recorded while this runs: then the report applies to it as usual.
        """
        table = outbound_messages
        changes = {"status": status, "error_code": error_code, "updated_at": at}
        keep = (
            self._upsert(table)
            .values(sid=sid, request_id=None, channel="", recipient="", created_at=at, **changes)
            .on_conflict_do_update(index_elements=[table.c.sid], set_=changes)
            .returning(table.c.request_id)
        )

        def lock(c: Connection, request_id: Any) -> None:
            # One request's reports are applied one at a time (its row locked), so that two failures reported at
            # once each see the other; PostgreSQL would otherwise let both read the other's message as not failed.
            # (SQLite runs one writer at a time anyway.)
            c.execute(sa.select(requests.c.id).where(requests.c.id.in_(request_id)).with_for_update(key_share=True))

        def work(c: Connection) -> list[OutboundMessage]:
            lock(c, sa.select(table.c.request_id).where(table.c.sid == sid))
            row = c.execute(
                table.update().where(table.c.sid == sid).values(changes).returning(table.c.request_id)
            ).first()
            if row is None and keep_unknown:
                row = c.execute(keep).first()  # its send, recorded meanwhile, is then found here after all
                if row is not None and row.request_id is not None:
                    lock(c, [row.request_id])
            if row is None or row.request_id is None:
                return []
            rows = c.execute(table.select().where(table.c.request_id == row.request_id))
            return [_row_to_outbound(r) for r in rows]

        return await self._run(work)

    async def first_sighting(self, key: str, at: datetime) -> bool:
        """True the first time `key` is seen, False ever after: a webhook delivery or a request link is used once."""

        try:
            await self._run(lambda c: c.execute(seen_webhooks.insert().values(key=key, at=at)))
            return True
        except StoreError as exc:
            if isinstance(exc.__cause__, sa.exc.IntegrityError):  # a concurrent delivery of the same webhook won
                return False
            raise
