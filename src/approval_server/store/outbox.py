"""What each approver was sent on a channel: the store's operations for the rate limit and for binding replies.

Every request takes a turn with every approver before anything is sent (`claim`): sent, or held back when the
approver was already sent `per_minute` requests in the last minute. The turn is taken in one statement (SQLite runs
it under its write lock; PostgreSQL after an advisory lock on that approver), so racing requests, on one server or
on several sharing the database, never both take the last place. (The messages themselves are recorded only once
Twilio has answered with their SID, too late to count racing sends.)

`conversation` says what an approver's chat looks like now, for a reply that names no request: which requests wait,
when the only one was sent to them, what they were sent last and whether anything they were shown closed since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from approval_server.models import Status
from approval_server.store import Store
from approval_server.store.tables import AnyText, UTCDateTime, approver_sends, outbound_messages, requests

WINDOW = timedelta(minutes=1)
SHOWN_IN_LIST = 10

_earlier = approver_sends.alias("earlier")
_RECENT = (
    _earlier.c.channel == sa.bindparam("channel"),
    _earlier.c.recipient == sa.bindparam("recipient"),
    _earlier.c.at > sa.bindparam("since"),
)
_SENT_RECENTLY = sa.select(sa.func.count()).where(*_RECENT, _earlier.c.held.is_(False)).scalar_subquery()
_SUMMARISED_RECENTLY = sa.select(sa.func.count()).where(*_RECENT, _earlier.c.summarised.is_(True)).scalar_subquery()
_HELD = sa.bindparam("per_minute") <= _SENT_RECENTLY
_CLAIM = approver_sends.insert().from_select(
    ["request_id", "channel", "recipient", "at", "held", "summarised"],
    sa.select(
        sa.bindparam("request_id", type_=AnyText()),
        sa.bindparam("channel", type_=AnyText()),
        sa.bindparam("recipient", type_=AnyText()),
        sa.bindparam("at", type_=UTCDateTime()),
        _HELD,
        sa.and_(_HELD, _SUMMARISED_RECENTLY == 0),
    ),
)
_TURN = sa.select(approver_sends.c.held, approver_sends.c.summarised).where(
    approver_sends.c.request_id == sa.bindparam("request_id"),
    approver_sends.c.channel == sa.bindparam("channel"),
    approver_sends.c.recipient == sa.bindparam("recipient"),
)
# One approver's turns are taken one at a time across replicas; other approvers' are not held up.
_LOCK = sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(sa.bindparam("lock_key"), 0)))


@dataclass(frozen=True)
class Turn:
    held: bool  # not sent: the approver had enough requests this minute
    summarise: bool  # held, and the first held this minute: send the one message that says how many more wait


@dataclass(frozen=True)
class Conversation:
    """One approver's chat on a channel, as far as a reply without an id is concerned."""

    waiting: list[str]  # the pending requests, oldest first (at most `SHOWN_IN_LIST`)
    waiting_count: int
    sent_at: datetime | None = None  # when the only pending request was first sent to this approver (None: never)
    last_about: str | None = None  # the request the last message they got was about (None: a notice, or nothing)
    last_at: datetime | None = None  # when that last message was sent
    closed_since: int = 0  # other requests they were sent that closed after the only pending one was sent to them


class Outbox:
    def __init__(self, store: Store, channel: str) -> None:
        self._store = store
        self._channel = channel

    async def claim(self, request_id: str, recipient: str, at: datetime, per_minute: int) -> Turn:
        """Take the request's turn with `recipient`: sent, unless `per_minute` were sent to them in the last minute."""
        params = {
            "request_id": request_id,
            "channel": self._channel,
            "recipient": recipient,
            "at": at,
            "since": at - WINDOW,
            "per_minute": per_minute,
            "lock_key": f"approval-server:{self._channel}:{recipient}",
        }

        def work(c: Connection) -> Turn:
            if self._store.shared:
                c.execute(_LOCK, params)
            c.execute(_CLAIM, params)
            row = c.execute(_TURN, params).one()
            return Turn(bool(row.held), bool(row.summarised))

        return await self._store.transaction(work)

    async def sent(self, key: str, request_id: str, recipient: str) -> str:
        """Record a message about `request_id` sent to `recipient` by a channel with no delivery reports, under
        `<channel>:<key>`, which it returns; `recipients` then finds it, on any replica and after a restart."""
        sid = f"{self._channel}:{key}"
        await self._store.record_outbound(sid, request_id, self._channel, recipient, "sent", datetime.now(UTC))
        return sid

    async def failed(self, sid: str) -> None:
        """The message recorded as `sid` did not go out after all: `recipients` leaves its recipient out."""
        await self._store.report_delivery(sid, "failed", None, datetime.now(UTC))

    async def record_notice(self, sid: str, recipient: str, at: datetime, request_id: str | None = None) -> None:
        """Record a notice sent to `recipient` (about a request that is over, or none): what an approver was sent last
        decides whether their reply without an id can count. It asks for no delivery report; should one be kept
        with this SID already, that one stays."""
        dialect = postgresql if self._store.shared else sqlite
        values = {
            "sid": sid,
            "request_id": request_id,
            "channel": self._channel,
            "recipient": recipient,
            "status": "queued",
            "created_at": at,
            "updated_at": at,
        }
        insert = dialect.insert(outbound_messages).values(values).on_conflict_do_nothing()
        await self._store.transaction(lambda c: c.execute(insert))

    async def held_waiting(self, recipient: str) -> int:
        """How many pending requests were held back from `recipient`."""
        query = (
            sa.select(sa.func.count())
            .select_from(approver_sends.join(requests, requests.c.id == approver_sends.c.request_id))
            .where(
                approver_sends.c.channel == self._channel,
                approver_sends.c.recipient == recipient,
                approver_sends.c.held.is_(True),
                requests.c.status == Status.PENDING.value,
            )
        )
        return await self._store.transaction(lambda c: int(c.execute(query).scalar_one()))

    async def recipients(self, request_id: str) -> set[str]:
        """The approvers who were sent a message about the request that did not fail: never one it was held back
        from, nor one every send to whom failed, who never saw it."""
        query = sa.select(outbound_messages.c.recipient).where(
            outbound_messages.c.request_id == request_id,
            outbound_messages.c.channel == self._channel,
            outbound_messages.c.status.not_in(("failed", "undelivered")),
        )
        return await self._store.transaction(lambda c: set(c.execute(query).scalars()))

    async def recently_sent(self, recipient: str, limit: int = 50) -> list[str]:
        """The ids of the last requests sent to `recipient`, newest first: what an id they type may be a copy of."""
        query = (
            sa.select(approver_sends.c.request_id)
            .where(
                approver_sends.c.channel == self._channel,
                approver_sends.c.recipient == recipient,
                approver_sends.c.held.is_(False),
            )
            .order_by(approver_sends.c.at.desc())
            .limit(limit)
        )
        return await self._store.transaction(lambda c: list(c.execute(query).scalars()))

    async def conversation(self, recipient: str) -> Conversation:
        pending = requests.c.status == Status.PENDING.value
        waiting = sa.select(requests.c.id).where(pending).order_by(requests.c.created_at, requests.c.id)
        count = sa.select(sa.func.count()).select_from(requests).where(pending)
        last = (
            sa.select(outbound_messages.c.request_id, outbound_messages.c.created_at)
            .where(outbound_messages.c.recipient == recipient, outbound_messages.c.channel == self._channel)
            .order_by(outbound_messages.c.created_at.desc())
            .limit(1)
        )

        def work(c: Connection) -> Conversation:
            ids = list(c.execute(waiting.limit(SHOWN_IN_LIST)).scalars())
            total = int(c.execute(count).scalar_one())
            row = c.execute(last).first()
            last_about, last_at = (row.request_id, row.created_at) if row else (None, None)
            if total != 1:
                return Conversation(ids, total, None, last_about, last_at)
            sent_at = c.execute(
                sa.select(sa.func.min(outbound_messages.c.created_at)).where(
                    outbound_messages.c.request_id == ids[0],
                    outbound_messages.c.recipient == recipient,
                    outbound_messages.c.channel == self._channel,
                )
            ).scalar_one()
            closed = 0
            if sent_at is not None:
                closed = c.execute(
                    sa.select(sa.func.count())
                    .select_from(approver_sends.join(requests, requests.c.id == approver_sends.c.request_id))
                    .where(
                        approver_sends.c.channel == self._channel,
                        approver_sends.c.recipient == recipient,
                        approver_sends.c.held.is_(False),
                        requests.c.id != ids[0],
                        requests.c.decided_at >= sent_at,
                    )
                ).scalar_one()
            return Conversation(ids, total, sent_at, last_about, last_at, int(closed))

        return await self._store.transaction(work)
