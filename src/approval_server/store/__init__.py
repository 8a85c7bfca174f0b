"""The audit trail: a small set of named operations on the database, none of which blocks the event loop.

SQLite (WAL) by default, or PostgreSQL; the schema and every statement are portable. SQLite's calls run in worker
threads; PostgreSQL's run on the event loop through psycopg's asyncio connections, so a store serves one loop.

A request leaves `pending` exactly once: `resolve` updates the row `WHERE status = 'pending'` and checks that one
row changed, so two answers racing, in one process or in several, can never both win.

`Store` is the one door: the requests and their answers are here (their statements in `records`); its parts each
have a module of their own: the connection, transactions and errors (`database`), the schema's migrations
(`migration`), grants (`grant_records`), the messages sent for requests (`outbound`) and people's dashboard logins
(`logins`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from approval_server.errors import NotDelivered, StoreError
from approval_server.fair_share import Limits, Share
from approval_server.grants import Grant
from approval_server.models import Answer, ApprovalRequest, Status
from approval_server.notices import NOTICE_CHANNEL, Notice, outcome_detail
from approval_server.store.grant_records import GrantRecords
from approval_server.store.logins import LoginRecords
from approval_server.store.migration import Migrations
from approval_server.store.outbound import OutboundMessages
from approval_server.store.records import (
    ADMISSION_LOCK,
    ADMIT,
    APPLIED,
    CLAIM_OFFER,
    DECIDE,
    DECIDE_AND_ANNOUNCE,
    GET,
    INSERT,
    INSERT_AND_ANNOUNCE,
    RECORD_ANSWER,
    TOO_LATE,
    WAITING_NOW,
    answer_row,
    row_to_request,
)
from approval_server.store.tables import answers, grants, requests, seen_webhooks


class Store(Migrations, GrantRecords, OutboundMessages, LoginRecords):
    """`replica` names this server among those sharing a PostgreSQL database: its requests carry it, and what it
    changes is announced to the others (`NOTIFY`, delivered when the transaction commits, so never before)."""

    def __init__(self, url: str, replica: str | None = None) -> None:
        self.replica = replica
        super().__init__(url)

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
        await self._run(lambda c: c.execute(INSERT_AND_ANNOUNCE if self.shared else INSERT, values))

    async def get(self, request_id: str) -> ApprovalRequest | None:
        def work(c: Connection) -> ApprovalRequest | None:
            row = c.execute(GET, {"request_id": request_id}).first()
            return row_to_request(row) if row else None

        return await self._run(work)

    async def replica_of(self, request_id: str) -> str | None:
        """The replica that recorded a request, whose caller waits there (None on a database of one server)."""
        query = sa.select(requests.c.replica).where(requests.c.id == request_id)
        owner: str | None = await self._run(lambda c: c.execute(query).scalar_one_or_none())
        return owner

    async def record_answer(self, request_id: str, answer: Answer, at: datetime, outcome: str) -> None:
        """Record an answer that changed nothing, with why (`outcome`)."""
        await self._run(lambda c: c.execute(RECORD_ANSWER, answer_row(request_id, answer, at, outcome)))

    async def recent(self, status: Status | None = None, limit: int = 100) -> list[ApprovalRequest]:
        query = requests.select().order_by(requests.c.created_at.desc(), requests.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(requests.c.status == status.value)
        return await self._run(lambda c: [row_to_request(row) for row in c.execute(query)])

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
            rows = [row_to_request(row) for row in c.execute(page)]
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
            if offered is not None and c.execute(CLAIM_OFFER, {"answer_id": offered}).first() is None:
                raise NotDelivered(f"the answer to request {request_id} was withdrawn before it could be applied")
            row = c.execute(DECIDE_AND_ANNOUNCE if self.shared else DECIDE, params).first()
            won = row is not None
            if row is None:  # too late (or no such request): the row as it stands
                row = c.execute(GET, {"request_id": request_id}).first()
            if row is None:
                return False, None
            if offered is not None:
                c.execute(answers.update().where(answers.c.id == offered).values(outcome=APPLIED if won else TOO_LATE))
            elif won or record_if_late:
                c.execute(RECORD_ANSWER, answer_row(request_id, answer, at, APPLIED if won else TOO_LATE))
            request = row_to_request(row)
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
                c.execute(ADMISSION_LOCK)
            if c.execute(ADMIT, params).rowcount == 1:
                return None
            row = c.execute(WAITING_NOW, params).one()
            return int(row.in_share), int(row.for_token)

        return await self._run(work)

    async def abandon_pending(self, at: datetime, actor: str) -> list[ApprovalRequest]:
        """Close every request left pending by a process that is gone; returns them, closed."""

        def work(c: Connection) -> list[ApprovalRequest]:
            return [
                row_to_request(row)
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
                    .returning(*requests.c)
                )
            ]

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
