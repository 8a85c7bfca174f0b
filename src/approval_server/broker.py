"""The broker: every request goes in through `submit`, every answer through `decide`.

`submit` records the request, asks the policy, tells every channel and waits, event-driven, for the first
of: a decision, the deadline, the caller going away. Every way out yields a `Decision`; anything unexpected
is a deny. The channels are told in tasks of their own, which never hold up the answer: the deadline runs from
when the request is recorded, and a decision reaches the caller at once whatever a send is doing. `decide` is the
single door for answers from any channel: the store decides who wins, then the waiter wakes, subscribers hear of it
and the other channels withdraw the request (each once its own send is over).

An answer is recorded only while the agent that asked still waits for it: on this replica (its waiter), or on the
replica that holds the call (see `handover`); otherwise it is refused with `NotDelivered`, never recorded as an allow
of an action that does not run. Allows are applied one at a time, each once its agent has been handed the answer, so
that a crash can leave at most one allow recorded and not delivered. A closing the store fails to take is kept and
written again (see `unrecorded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import anyio

from approval_server.channels import Channel, Delivery
from approval_server.decision import (
    SERVER_ACTOR,
    Decision,
    describe_duration,
    internal_error,
    not_recorded,
    unrecordable,
)
from approval_server.errors import (
    DatabaseLost,
    DatabaseUnavailable,
    GrantEnded,
    NotDelivered,
    NotFound,
    RequestClosed,
    StoreError,
)
from approval_server.events import Event, EventHub
from approval_server.fair_share import FAIR_SHARE_CHANNEL, Limits, Share, Turns
from approval_server.grants import Grant, pattern_for, scopes_for
from approval_server.handover import Handovers, Offer
from approval_server.models import Answer, ApprovalRequest, Status, ToolCall
from approval_server.notices import Notice, with_outcome
from approval_server.policy import Policy
from approval_server.render import render_text
from approval_server.store import NOT_DELIVERED, Store
from approval_server.unrecorded import Unrecorded

logger = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "approval-server is shutting down, so the action was denied before anyone approved it"
# How long an allow waits for its agent's call to take the answer before the next allow is applied.
HANDING_WAIT = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


class Broker:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        channels: Sequence[Channel],
        events: EventHub,
        timeout: float,
        limits: Limits | None = None,
    ) -> None:
        """`limits`: how many requests one agent and one token may have waiting at once (None: no limit)."""
        self.store = store
        self.policy = policy
        self.channels = list(channels)
        self.events = events
        self.timeout = timeout
        self.limits = limits
        self._turns = Turns()
        self._waiters: dict[str, asyncio.Future[ApprovalRequest]] = {}
        self._opened: dict[str, ApprovalRequest] = {}  # the requests waited for here, as they were recorded
        self._reach: dict[str, dict[str, str | None]] = {}  # request id → channel → why it cannot reach anyone
        self._background: set[asyncio.Task[None]] = set()
        self._notified: set[str] = set()  # requests shown on the channels, which withdraw them once closed
        self._sending: dict[str, dict[Channel, asyncio.Task[Delivery]]] = {}  # request id → the sends under way
        self._shutting_down = False
        self._drained = asyncio.Event()
        self._returned: dict[str, asyncio.Event] = {}  # request id → set once its caller has its answer
        self._allowing = asyncio.Lock()  # allows are applied one at a time (see the module's docstring)
        self._allow_failed_at = float("-inf")  # when the store last failed to record an allow (the loop's time)
        self.unrecorded = Unrecorded(store, self._recorded_late)
        self.handovers: Handovers | None = None  # set by `replicas` when other replicas share the database

    @property
    def pending_count(self) -> int:
        return len(self._waiters)

    async def submit(self, call: ToolCall) -> Decision:
        """Ask for a decision on `call` and wait for it. Never raises, except to propagate cancellation."""
        if self._shutting_down:
            return Decision.deny(SHUTDOWN_MESSAGE)
        if (lost := self.store.lost()) is not None:
            return Decision.deny(f"{unrecordable(lost)}.")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        request = ApprovalRequest.open(call, render_text(call.tool_name, call.input), _now(), self.timeout)
        waiter: asyncio.Future[ApprovalRequest] = loop.create_future()
        self._waiters[request.id] = waiter
        self._opened[request.id] = request
        self._returned[request.id] = asyncio.Event()
        try:
            return await self._submit(call, request, waiter, deadline)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await self._close_quietly(
                    request.id, Answer(Status.CANCELLED, SERVER_ACTOR, "mcp", "the agent went away")
                )
            raise
        except DatabaseUnavailable as exc:  # nothing can be recorded: neither the request nor its deny
            logger.error("request %s denied: %s", request.id, exc)
            return Decision.deny(f"{unrecordable(exc.why)} (approval request {request.id}).")
        except Exception:
            logger.exception("internal error while handling request %s; denying it", request.id)
            message = internal_error(request.id).message
            await self._close_quietly(request.id, Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, message))
            return internal_error(request.id)
        finally:
            del self._waiters[request.id]
            del self._opened[request.id]
            self._returned.pop(request.id).set()
            self._reach.pop(request.id, None)
            self._notified.discard(request.id)
            for sending in self._sending.get(request.id, {}).values():
                _stop(sending)  # its caller has its answer: nothing more is sent about it
            if self._shutting_down and not self._waiters:
                self._drained.set()

    async def _submit(
        self, call: ToolCall, request: ApprovalRequest, waiter: asyncio.Future[ApprovalRequest], deadline: float
    ) -> Decision:
        """`deadline`: the loop's time at which the request expires, counted from when it was opened."""
        async with self._turns.turn(call):
            decided = await self._decide_at_once(call, request)
        if decided is not None:
            return decided

        self._notified.add(request.id)
        delivered = self._send(request)
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.wait((waiter, delivered), return_when=asyncio.FIRST_COMPLETED)
                unreachable = None if waiter.done() else self._unreached(request.id, delivered.result())
                if unreachable is None:
                    return Decision.for_request(await asyncio.shield(waiter))
        except TimeoutError:
            message = f"no answer within {describe_duration(self.timeout)}"
            return await self._close(request.id, Answer(Status.EXPIRED, SERVER_ACTOR, "timeout", message))
        return await self._close(request.id, unreachable)

    def _send(self, request: ApprovalRequest) -> asyncio.Future[list[Delivery | BaseException]]:
        """Tell every channel of `request`, each in a task of its own; the future is done when all have answered.
        The tasks outlive the caller's wait: a channel withdraws the request only once its own send is over (see
        `_withdraw`), so that an approver who was sent it is then told how it ended."""
        sending = {channel: asyncio.create_task(self._notify(channel, request)) for channel in self.channels}
        self._sending[request.id] = sending
        for channel, task in sending.items():
            task.add_done_callback(functools.partial(self._sent, request.id, channel))
        return asyncio.gather(*sending.values(), return_exceptions=True)

    def _sent(self, request_id: str, channel: Channel, _task: asyncio.Task[Delivery]) -> None:
        sending = self._sending.get(request_id, {})
        sending.pop(channel, None)
        if not sending:
            self._sending.pop(request_id, None)

    def _unreached(self, request_id: str, deliveries: list[Delivery | BaseException]) -> Answer | None:
        """The deny when no channel that reaches people could reach anyone (None: someone was reached, or no channel
        reaches people at all)."""
        reach = self._reach.setdefault(request_id, {})
        for channel, delivery in zip(self.channels, deliveries, strict=True):
            if channel.reaches_people:
                reached = isinstance(delivery, Delivery) and delivery.reached
                detail = delivery.detail if isinstance(delivery, Delivery) else "not sent"
                reach.setdefault(channel.name, None if reached else detail)
        if reach and all(why is not None for why in reach.values()):
            return self._unreachable(reach)
        return None

    async def _decide_at_once(self, call: ToolCall, request: ApprovalRequest) -> Decision | None:
        """Record `request` and decide it without a human if the policy, a grant or the fair share does; None when
        it is to wait for one (it then has its place in the fair share).

        A request the store could not record is denied at once: nothing more is written about it (a locked database
        would only make the caller wait once more for the same failure)."""
        try:
            await self.store.insert(request)
        except DatabaseUnavailable as exc:  # lost, or its disk full: the reason is the operator's to fix
            logger.error("could not record request %s, so it is denied: %s", request.id, exc.why)
            return Decision.deny(f"{unrecordable(exc.why)} (approval request {request.id}).")
        except StoreError as exc:
            logger.error("could not record request %s, so it is denied: %s", request.id, exc)
            return not_recorded(request.id)
        self.events.publish(Event("request.created", request))

        verdict = self.policy.evaluate(call)
        if verdict.action != "ask":
            status = Status.ALLOWED if verdict.action == "allow" else Status.DENIED
            return await self._close(request.id, Answer(status, verdict.rule or "policy", "policy", verdict.reason))
        if verdict.rule is None:  # nothing in the policy asks for a human every time: an approver's grant may allow
            pattern = pattern_for(call.tool_name, call.input)
            grant = await self.store.matching_grant(scopes_for(call), call.tool_name, pattern.key)
            if grant is not None:
                return await self._close(request.id, Answer(Status.ALLOWED, grant.label, "grant", grant.reason))
        refusal = await self._admit(call, request)
        if refusal is not None:
            return await self._close(request.id, Answer(Status.DENIED, SERVER_ACTOR, FAIR_SHARE_CHANNEL, refusal))
        return None

    async def _admit(self, call: ToolCall, request: ApprovalRequest) -> str | None:
        """None when `request` may wait for a human; otherwise why not: its agent or its token has as many requests
        waiting as it may (see `fair_share`)."""
        if self.limits is None:
            return None
        share = Share.of(call)
        waiting = await self.store.admit(request.id, share, self.limits)
        if waiting is None:
            return None
        logger.warning("request %s denied at once: %s has too many requests waiting", request.id, share.describe())
        return self.limits.refusal(share, *waiting)

    async def channel_unreachable(self, request_id: str, channel: str, why: str) -> None:
        """A channel learned late (a failed delivery report) that it reaches nobody for this request.

        When that leaves no channel able to reach anyone, the request is denied at once instead of expiring.
        """
        if request_id not in self._waiters:  # its caller waits on another replica, if anywhere
            await self.store.announce("unreachable", request_id, json.dumps({"channel": channel, "why": why}))
            return
        reach = self._reach.setdefault(request_id, {})
        reach[channel] = why
        reaching = {c.name for c in self.channels if c.reaches_people}
        if reaching <= reach.keys() and all(reason is not None for reason in reach.values()):
            await self._close_quietly(request_id, self._unreachable(reach))

    @staticmethod
    def _unreachable(reach: dict[str, str | None]) -> Answer:
        why = "; ".join(f"{name}: {reason}" for name, reason in reach.items())
        message = f"No approval channel could reach anyone ({why}), so the action was denied"
        return Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, message)

    async def _notify(self, channel: Channel, request: ApprovalRequest) -> Delivery:
        try:
            return await channel.notify(request)
        except Exception as exc:
            logger.exception("channel %s failed to notify request %s", channel.name, request.id)
            return Delivery(reached=False, detail=f"error: {exc.__class__.__name__}")

    async def _close(self, request_id: str, answer: Answer) -> Decision:
        """Close a request on the server's own account; if an answer won the race, that answer stands, and the
        server's closing, which did not happen, is not recorded. When the store fails, the caller is denied and the
        closing kept until it is recorded (see `unrecorded`)."""
        at = _now()
        try:
            applied, row = await self.store.resolve(request_id, answer, at, record_if_late=False)
        except DatabaseLost:
            raise
        except StoreError as exc:
            if request_id not in self._opened:
                raise
            if answer.status is Status.ALLOWED:  # an allow nobody can find in the audit trail is not given
                answer = Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, not_recorded(request_id).message)
            self.unrecorded.keep(request_id, answer, at, exc)
            closed = self._closed_here(request_id, answer, at)
            self._after_close(closed)
            return Decision.for_request(closed)
        if row is None:
            raise NotFound(f"no request {request_id}")
        if applied:
            self._after_close(row)
        return Decision.for_request(row)

    async def _close_quietly(self, request_id: str, answer: Answer) -> None:
        try:
            await self._close(request_id, answer)
        except Exception:
            logger.exception("could not record request %s as %s", request_id, answer.status.value)

    async def decide(self, request_id: str, answer: Answer) -> ApprovalRequest:
        """Apply an answer from a human or channel, if its agent still waits. Raises `NotFound`, `RequestClosed`
        (recorded as too late) or `NotDelivered` (the agent is gone: nothing is applied)."""
        if (closing := self.unrecorded.get(request_id)) is not None:
            raise NotDelivered(
                f"request {request_id} was {closing.describe()} and its agent told so, but the database has not "
                "taken that yet; the agent is no longer waiting, so this answer changed nothing"
            )
        waiter = self._waiters.get(request_id)
        if waiter is not None and not waiter.done():
            return await self._apply_here(request_id, answer)
        row = await self.store.get(request_id)
        if row is None:
            raise NotFound(f"no request {request_id}")
        owner = await self.store.replica_of(request_id) if self.store.shared else None
        if row.status is Status.PENDING and owner is not None and owner != self.store.replica:
            if self.handovers is None:
                raise NotDelivered(f"request {request_id} waits on another server, which this one cannot reach")
            return await self.handovers.offer(row, answer, owner)
        if row.status is Status.PENDING:
            raise await self._gone(row, answer)
        return await self._apply(request_id, answer)  # recorded as too late

    async def _apply_here(self, request_id: str, answer: Answer, offered: int | None = None) -> ApprovalRequest:
        """Apply an answer for an agent waiting here; an allow only once the allow before it was handed over."""
        if answer.status is not Status.ALLOWED:
            return await self._apply(request_id, answer, offered)
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        async with self._allowing:
            if self._allow_failed_at >= queued_at:  # the store failed meanwhile: no second wait for the same fault
                raise StoreError("the database failed to record the allow before this one, given meanwhile")
            try:
                row = await self._apply(request_id, answer, offered)
            except StoreError:
                self._allow_failed_at = loop.time()
                raise
            returned = self._returned.get(request_id)
            if returned is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(returned.wait(), HANDING_WAIT)
            return row

    async def _apply(self, request_id: str, answer: Answer, offered: int | None = None) -> ApprovalRequest:
        applied, row = await self.store.resolve(request_id, answer, _now(), offered=offered)
        if row is None:
            raise NotFound(f"no request {request_id}")
        if not applied:
            raise RequestClosed(f"request {request_id} is already {row.status.value}; this answer changed nothing")
        self._after_close(row)
        return row

    async def _gone(self, row: ApprovalRequest, answer: Answer) -> NotDelivered:
        """A pending request of this server whose agent no longer waits (a crash or a failed closing left it):
        closed as abandoned, the answer recorded as not delivered."""
        why = f"its agent was no longer waiting when {answer.actor} answered"
        abandon = Answer(Status.ABANDONED, SERVER_ACTOR, SERVER_ACTOR, why)
        applied, now = await self.store.resolve(row.id, abandon, _now(), record_if_late=False)
        await self.store.record_answer(row.id, answer, _now(), NOT_DELIVERED)
        if applied and now is not None:
            self._after_close(now)
        logger.warning("refused an answer to request %s from %s: %s", row.id, answer.actor, why)
        return NotDelivered(f"request {row.id}: {why}; it was closed as abandoned and this answer changed nothing")

    async def revoke(self, grant_id: str, actor: str) -> Grant:
        """End a grant now. Raises `NotFound`, or `GrantEnded` when it had already ended."""
        ended, grant = await self.store.revoke_grant(grant_id, actor)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        if not ended:
            why = f"revoked by {grant.revoked_by}" if grant.revoked_at else "expired"
            raise GrantEnded(f"grant {grant_id} has already ended ({why}); nothing changed")
        logger.info("grant %s (%s) revoked by %s", grant.id, grant.rule, actor)
        return grant

    # -- other replicas (see `replicas`) ---------------------------------------------------------------------------

    async def on_notice(self, notice: Notice) -> None:
        """Something another replica did: a request it recorded or closed, or a channel it learned cannot reach
        anyone for a request that waits here."""
        if notice.kind == "handover":
            await self._take_offer(notice)
        elif notice.kind == "handed":
            if self.handovers is not None:
                self.handovers.heard(notice)
        elif notice.kind == "unreachable":
            detail = json.loads(notice.detail or "{}")
            if notice.request_id in self._waiters:
                await self.channel_unreachable(notice.request_id, str(detail.get("channel")), str(detail.get("why")))
        elif notice.kind == "created" and self.events.heard:
            row = await self.store.get(notice.request_id)
            if row is not None:
                self.events.publish(Event("request.created", row))
        elif notice.kind == "closed" and (notice.request_id in self._waiters or self.events.heard):
            opened = self._opened.get(notice.request_id)
            closed = with_outcome(opened, notice.detail) if opened is not None else None
            if closed is not None:  # the notice says how it ended: the caller need not wait for a read of the row
                self._after_close(closed)
            else:
                await self.closed_elsewhere(notice.request_id)

    async def _take_offer(self, notice: Notice) -> None:
        """An answer handed over by another replica (see `handover`), if it is for an agent of this one."""
        offer = Offer.from_detail(notice.detail)
        if offer is not None and offer.to == self.store.replica:  # in a task: the notices after it are not held up
            task = asyncio.create_task(self._take(notice.request_id, offer))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _take(self, request_id: str, offer: Offer) -> None:
        """Apply a handed-over answer if its agent waits here; record it too late if the request is closed; refuse
        it, and close the request as abandoned, if the request is pending with nobody waiting. Then tell the giver."""
        assert self.handovers is not None
        try:
            answer = await self.handovers.answer_of(offer)
            if answer is None:  # withdrawn already
                return
            waiter = self._waiters.get(request_id)
            if waiter is not None and not waiter.done():
                await self._apply_here(request_id, answer, offered=offer.answer_id)
                return
            row = await self.store.get(request_id)
            if row is not None and row.status is not Status.PENDING:
                await self._apply(request_id, answer, offered=offer.answer_id)  # recorded as too late
            elif await self.handovers.refuse(offer):
                why = f"its agent was no longer waiting when {answer.actor} answered"
                await self._close_quietly(request_id, Answer(Status.ABANDONED, SERVER_ACTOR, SERVER_ACTOR, why))
        except (NotDelivered, RequestClosed, NotFound):
            pass
        except Exception:  # the giver withdraws the answer when it hears nothing
            logger.exception("could not take the answer handed over for request %s", request_id)
        finally:
            with contextlib.suppress(StoreError):
                await self.handovers.reply(request_id, offer)

    async def closed_elsewhere(self, request_id: str) -> None:
        """A request was closed by another replica (or by taking over a dead one's): wake its caller if it waits
        here, and tell this replica's subscribers and channels."""
        row = await self.store.get(request_id)
        if row is not None and row.status is not Status.PENDING:
            self._after_close(row)

    async def resync(self) -> None:
        """Look again at every request waiting here: one closed while no notice could arrive wakes its caller, and an
        answer handed over meanwhile is taken."""
        for request_id in list(self._waiters):
            await self.closed_elsewhere(request_id)
        if self.handovers is not None:
            for request_id, offer in await self.handovers.missed():
                await self._take(request_id, offer)

    async def abandon_pending(self) -> list[str]:
        """At start-up on a database of its own: requests still pending belong to a process that died; their caller
        is gone. (On a shared database, the leases of `replicas` decide that instead.)"""
        if self.store.shared:
            return []
        ids = await self.store.abandon_pending(_now(), SERVER_ACTOR)
        if ids:
            logger.warning("marked %d request(s) left pending by a previous run as abandoned", len(ids))
        return ids

    async def shut_down(self) -> None:
        """Deny every waiting request and refuse new ones, so each agent reads why instead of a dropped connection."""
        self._shutting_down = True
        for request_id in list(self._waiters):
            await self._close_quietly(request_id, Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, SHUTDOWN_MESSAGE))
        if self._waiters:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), 2)

    def refuse_waiting(self, why: str) -> None:
        """The database is lost (see `db_watch`): no answer to a waiting request can be recorded any more, so each is
        denied now, and its caller told why. Nothing is recorded, nor announced: there is nowhere to record it."""
        denied = Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, unrecordable(why))
        at = _now()
        for request_id, waiter in self._waiters.items():
            if not waiter.done():
                waiter.set_result(self._closed_here(request_id, denied, at))
        if self._waiters:
            logger.error("denied the %d request(s) waiting: %s", len(self._waiters), why)

    def _closed_here(self, request_id: str, answer: Answer, at: datetime) -> ApprovalRequest:
        """A request waited for here as `answer` closes it, as its caller is told (whether recorded or not)."""
        return dataclasses.replace(
            self._opened[request_id],
            status=answer.status,
            decided_at=at,
            decided_by=answer.actor,
            decided_via=answer.channel,
            reason=answer.message,
        )

    def _recorded_late(self, row: ApprovalRequest) -> None:
        """A closing kept by `unrecorded` is now in the database: subscribers see the row as it stands."""
        self.events.publish(Event("request.closed", row))

    def _after_close(self, row: ApprovalRequest) -> None:
        waiter = self._waiters.get(row.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(row)
        self.events.publish(Event("request.closed", row))
        if row.id not in self._notified:  # decided by the policy or a grant: no channel showed it
            return
        for channel in self.channels:
            task = asyncio.create_task(self._withdraw(channel, row))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _withdraw(self, channel: Channel, row: ApprovalRequest) -> None:
        sending = self._sending.get(row.id, {}).get(channel)
        if sending is not None:  # nothing more is sent about it; a message in flight goes out, then the withdrawal
            _stop(sending)
            await asyncio.wait({sending})
        try:
            await channel.withdraw(row)
        except Exception:
            logger.exception("channel %s failed to withdraw request %s", channel.name, row.id)

    async def aclose(self) -> None:
        await self.unrecorded.aclose()
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        for channel in self.channels:
            await channel.aclose()


def _stop(sending: asyncio.Task[Delivery]) -> None:
    """Cancel a send once (a second cancellation would cut short the message it finishes; see the channels)."""
    if not sending.done() and not sending.cancelling():
        sending.cancel()
