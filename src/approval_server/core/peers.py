"""What the broker does for the other replicas sharing its database (see `replicas`): it acts on their notices,
wakes its callers when they close a request, and takes the answers they hand over to it (see `handover`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from approval_server.core.broker import Broker
from approval_server.core.events import Event
from approval_server.core.handover import Handovers, Offer
from approval_server.decision import SERVER_ACTOR
from approval_server.errors import NotDelivered, NotFound, RequestClosed, StoreError
from approval_server.models import Answer, Status
from approval_server.notices import Notice, with_outcome

logger = logging.getLogger(__name__)


class Peers:
    def __init__(self, broker: Broker, handovers: Handovers) -> None:
        self._broker = broker
        self._store = broker.store
        self._events = broker.events
        self._handovers = handovers
        self._taking: set[asyncio.Task[None]] = set()

    async def on_notice(self, notice: Notice) -> None:
        """Something another replica did: a request it recorded or closed, an answer it hands over or its word on
        one handed over from here, or a channel it learned cannot reach anyone for a request that waits here."""
        broker = self._broker
        if notice.kind == "handover":
            offer = Offer.from_detail(notice.detail)
            if offer is not None and offer.to == self._store.replica:  # in a task: the next notices are not held up
                task = asyncio.create_task(self.take(notice.request_id, offer))
                self._taking.add(task)
                task.add_done_callback(self._taking.discard)
        elif notice.kind == "handed":
            self._handovers.heard(notice)
        elif notice.kind == "unreachable":
            detail = json.loads(notice.detail or "{}")
            if broker.opened(notice.request_id) is not None:
                await broker.channel_unreachable(notice.request_id, str(detail.get("channel")), str(detail.get("why")))
        elif notice.kind == "created" and self._events.heard:
            row = await self._store.get(notice.request_id)
            if row is not None:
                self._events.publish(Event("request.created", row))
        elif notice.kind == "closed" and (broker.opened(notice.request_id) is not None or self._events.heard):
            opened = broker.opened(notice.request_id)
            closed = with_outcome(opened, notice.detail) if opened is not None else None
            if closed is not None:  # the notice says how it ended: the caller need not wait for a read of the row
                broker.after_close(closed)
            else:
                await self.closed_elsewhere(notice.request_id)

    async def take(self, request_id: str, offer: Offer) -> None:
        """Apply a handed-over answer if its agent waits here; record it too late if the request is closed; refuse
        it, and close the request as abandoned, if the request is pending with nobody waiting. Then tell the giver."""
        try:
            answer = await self._handovers.answer_of(offer)
            if answer is None:  # withdrawn already
                return
            if self._broker.waits(request_id):
                await self._broker.apply_here(request_id, answer, offered=offer.answer_id)
                return
            row = await self._store.get(request_id)
            if row is not None and row.status is not Status.PENDING:
                await self._broker.apply(request_id, answer, offered=offer.answer_id)  # recorded as too late
            elif await self._handovers.refuse(offer):
                why = f"its agent was no longer waiting when {answer.actor} answered"
                await self._broker.close_quietly(request_id, Answer(Status.ABANDONED, SERVER_ACTOR, SERVER_ACTOR, why))
        except (NotDelivered, RequestClosed, NotFound):
            pass
        except Exception:  # the giver withdraws the answer when it hears nothing
            logger.exception("could not take the answer handed over for request %s", request_id)
        finally:
            with contextlib.suppress(StoreError):
                await self._handovers.reply(request_id, offer)

    async def closed_elsewhere(self, request_id: str, taken_over: bool = False) -> None:
        """A request was closed by another replica (or by this one, `taken_over` from a dead one): wake its caller if
        it waits here, and tell this replica's subscribers and channels (all of them, for one taken over: the dead
        replica showed it)."""
        row = await self._store.get(request_id)
        if row is not None and row.status is not Status.PENDING:
            self._broker.after_close(row, shown_elsewhere=taken_over)

    async def resync(self) -> None:
        """Look again at every request waiting here: one closed while no notice could arrive wakes its caller, and an
        answer handed over meanwhile is taken."""
        for request_id in self._broker.waiting():
            await self.closed_elsewhere(request_id)
        for request_id, offer in await self._handovers.missed():
            await self.take(request_id, offer)

    async def aclose(self) -> None:
        if self._taking:
            await asyncio.wait(self._taking, timeout=5)
