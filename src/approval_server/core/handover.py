"""An answer given on one replica for an agent that waits on another: recorded only by the agent's own replica, and
only while the agent still waits there.

The replica where the answer is given (the giver) records it in `answers` as `handed_over`, and in the same
transaction announces it to the replica that holds the agent's call (the owner). The owner applies it if its agent
still waits (`Store.resolve(offered=…)`, which locks the answer's row first), or refuses it and closes the request as
`abandoned` if it does not; then it tells the giver. A giver that hears nothing within `HANDOVER_WAIT` withdraws the
answer: the owner's lock makes the withdrawal and the application exclusive, so the answer is either applied once,
or withdrawn and recorded `not_delivered`, never both. An owner that holds no lease is not even asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from approval_server.core.leases import Leases
from approval_server.errors import NotDelivered, RequestClosed
from approval_server.models import Answer, ApprovalRequest
from approval_server.notices import NOTICE_CHANNEL, Notice
from approval_server.store import Store
from approval_server.store.records import APPLIED, HANDED_OVER, NOT_DELIVERED, TOO_LATE, answer_row, row_to_answer
from approval_server.store.tables import answers, requests

# How long the giver waits for the owner's word before it withdraws the answer (an owner frozen or cut off).
HANDOVER_WAIT = 3.0

_WITHDRAW = (
    answers.update()
    .where(answers.c.id == sa.bindparam("answer_id"), answers.c.outcome == HANDED_OVER)
    .values(outcome=NOT_DELIVERED)
)


@dataclass(frozen=True)
class Offer:
    """What a "handover" notice (and its reply, "handed") says: which answer, for which replica."""

    answer_id: int
    to: str

    def detail(self) -> str:
        return json.dumps({"answer": self.answer_id, "to": self.to})

    @classmethod
    def from_detail(cls, detail: str | None) -> Offer | None:
        try:
            data: Any = json.loads(detail or "")
            return cls(int(data["answer"]), str(data["to"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class Handovers:
    def __init__(self, store: Store, leases: Leases) -> None:
        self._store = store
        self._leases = leases
        self._heard: dict[int, asyncio.Event] = {}

    async def offer(self, row: ApprovalRequest, answer: Answer, owner: str) -> ApprovalRequest:
        """Hand `answer` to `owner`, the replica whose agent waits for `row`; the request as it then stands. Raises
        `NotDelivered` when the answer could not reach the agent, `RequestClosed` when another answer won."""
        if not await self._leases.holds(owner):
            await self._store.transaction(lambda c: self._record(c, row.id, answer, NOT_DELIVERED))
            raise NotDelivered(
                f"request {row.id}: the server its agent waited on (replica {owner}) has stopped, so the agent is no "
                "longer waiting; nothing was recorded but your answer, as not delivered"
            )

        def record_and_announce(c: Connection) -> int:
            answer_id = self._record(c, row.id, answer, HANDED_OVER)
            detail = Offer(answer_id, owner).detail()
            notice = Notice("handover", row.id, self._store.replica or "", detail)
            c.execute(sa.select(sa.func.pg_notify(NOTICE_CHANNEL, notice.to_payload())))
            return answer_id

        heard = asyncio.Event()
        answer_id = await self._store.transaction(record_and_announce)
        self._heard[answer_id] = heard
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), HANDOVER_WAIT)
        finally:
            del self._heard[answer_id]
        if await self._store.transaction(lambda c: c.execute(_WITHDRAW, {"answer_id": answer_id}).rowcount == 1):
            raise NotDelivered(
                f"request {row.id}: the server its agent waits on (replica {owner}) did not take the answer within "
                f"{HANDOVER_WAIT:g} s, so it was withdrawn and nothing was recorded"
            )
        query = sa.select(answers.c.outcome).where(answers.c.id == answer_id)
        outcome = await self._store.transaction(lambda c: c.execute(query).scalar_one())
        now = await self._store.get(row.id)
        if outcome == APPLIED and now is not None:
            return now
        if outcome == TOO_LATE and now is not None:
            raise RequestClosed(f"request {row.id} is already {now.status.value}; this answer changed nothing")
        raise NotDelivered(
            f"request {row.id}: its agent was no longer waiting on its server (replica {owner}); the request was "
            "closed as abandoned and your answer changed nothing"
        )

    def heard(self, notice: Notice) -> None:
        """The owner's word on an answer handed over from here (a "handed" notice)."""
        offer = Offer.from_detail(notice.detail)
        if offer is not None and (event := self._heard.get(offer.answer_id)):
            event.set()

    async def answer_of(self, offer: Offer) -> Answer | None:
        """The answer an offer hands over, as the giver recorded it; None once withdrawn."""
        query = answers.select().where(answers.c.id == offer.answer_id, answers.c.outcome == HANDED_OVER)
        row = await self._store.transaction(lambda c: c.execute(query).first())
        return row_to_answer(row) if row is not None else None

    async def missed(self) -> list[tuple[str, Offer]]:
        """The answers handed over to this replica and not taken yet (their notices were lost while it did not
        listen): each with its request's id."""
        query = (
            sa.select(answers.c.request_id, answers.c.id)
            .join(requests, requests.c.id == answers.c.request_id)
            .where(answers.c.outcome == HANDED_OVER, requests.c.replica == self._store.replica)
        )
        rows = await self._store.transaction(lambda c: c.execute(query).all())
        return [(row.request_id, Offer(row.id, self._store.replica or "")) for row in rows]

    async def refuse(self, offer: Offer) -> bool:
        """The owner's refusal (its agent no longer waits): True when the answer was still there to refuse."""
        return bool(
            await self._store.transaction(lambda c: c.execute(_WITHDRAW, {"answer_id": offer.answer_id}).rowcount)
        )

    async def reply(self, request_id: str, offer: Offer) -> None:
        """Tell the giver that its answer was dealt with (its row in `answers` says how)."""
        await self._store.announce("handed", request_id, offer.detail())

    @staticmethod
    def _record(c: Connection, request_id: str, answer: Answer, outcome: str) -> int:
        values = answer_row(request_id, answer, datetime.now(UTC), outcome)
        answer_id: int = c.execute(answers.insert().values(values).returning(answers.c.id)).scalar_one()
        return answer_id
