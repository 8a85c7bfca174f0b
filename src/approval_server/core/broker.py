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
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import anyio

from approval_server.channels import Channel
from approval_server.core.events import Event, EventHub
from approval_server.core.handover import Handovers
from approval_server.core.sends import Sends
from approval_server.core.unrecorded import Unrecorded
from approval_server.decision import (
    SERVER_ACTOR,
    Decision,
    describe_duration,
    internal_error,
    not_recorded,
    refuse_uneditable,
    store_failed,
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
from approval_server.fair_share import FAIR_SHARE_CHANNEL, Limits, Share, Turns
from approval_server.grants import Grant, pattern_for, scopes_for
from approval_server.models import Answer, ApprovalRequest, Status, ToolCall
from approval_server.policy.rule import Policy
from approval_server.render import render_text
from approval_server.store import Store
from approval_server.store.records import NOT_DELIVERED

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
        self.sends = Sends(channels)
        self.events = events
        self.timeout = timeout
        self.limits = limits
        self._turns = Turns()
        self._waiters: dict[str, asyncio.Future[ApprovalRequest]] = {}
        self._opened: dict[str, ApprovalRequest] = {}  # the requests waited for here, as they were recorded
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
                await self.close_quietly(
                    request.id, Answer(Status.CANCELLED, SERVER_ACTOR, "mcp", "the agent went away")
                )
            raise
        except DatabaseUnavailable as exc:  # nothing can be recorded: neither the request nor its deny
            logger.error("request %s denied: %s", request.id, exc)
            return Decision.deny(f"{unrecordable(exc.why)} (approval request {request.id}).")
        except Exception:
            logger.exception("internal error while handling request %s; denying it", request.id)
            message = internal_error(request.id).message
            await self.close_quietly(request.id, Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, message))
            return internal_error(request.id)
        finally:
            del self._waiters[request.id]
            del self._opened[request.id]
            self._returned.pop(request.id).set()
            self.sends.done_with(request.id)
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

        delivered = self.sends.send(request)
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.wait((waiter, delivered), return_when=asyncio.FIRST_COMPLETED)
                unreachable = None if waiter.done() else self.sends.unreached(request.id, delivered.result())
                if unreachable is None:
                    return Decision.for_request(await asyncio.shield(waiter))
        except TimeoutError:
            message = f"no answer within {describe_duration(self.timeout)}"
            return await self._close(request.id, Answer(Status.EXPIRED, SERVER_ACTOR, "timeout", message))
        return await self._close(request.id, unreachable)

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
        try:
            if verdict.rule is None:  # nothing in the policy asks for a human every time: a grant may allow
                pattern = pattern_for(call.tool_name, call.input)
                grant = await self.store.matching_grant(scopes_for(call), call.tool_name, pattern.key)
                if grant is not None:
                    return await self._close(request.id, Answer(Status.ALLOWED, grant.label, "grant", grant.reason))
            share = Share.of(call)  # its place among the requests waiting (see `fair_share`), if it may take one
            waiting = None if self.limits is None else await self.store.admit(request.id, share, self.limits)
        except DatabaseLost:
            raise
        except StoreError as exc:  # recorded, then the store failed: denied now, its closing kept, not tried twice
            answer = Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, store_failed(request.id).message)
            return self._keep(request.id, answer, _now(), exc)
        if waiting is None or self.limits is None:
            return None
        refusal = Answer(Status.DENIED, SERVER_ACTOR, FAIR_SHARE_CHANNEL, self.limits.refusal(share, *waiting))
        refused, decision = await self._settle(request.id, refusal)
        if refused:  # not when an answer came between its recording and its admission: that answer stands
            logger.warning("request %s denied at once: %s", request.id, refusal.message)
        return decision

    async def channel_unreachable(self, request_id: str, channel: str, why: str) -> None:
        """A channel learned late (a failed delivery report) that it reaches nobody for this request.

        When that leaves no channel able to reach anyone, the request is denied at once instead of expiring.
        """
        if request_id not in self._waiters:  # its caller waits on another replica, if anywhere
            await self.store.announce("unreachable", request_id, json.dumps({"channel": channel, "why": why}))
            return
        denied = self.sends.learned_unreachable(request_id, channel, why)
        if denied is not None:
            await self.close_quietly(request_id, denied)

    async def _close(self, request_id: str, answer: Answer) -> Decision:
        """Close a request on the server's own account; if an answer won the race, that answer stands, and the
        server's closing, which did not happen, is not recorded. When the store fails, the caller is denied and the
        closing kept until it is recorded (see `unrecorded`)."""
        return (await self._settle(request_id, answer))[1]

    async def _settle(self, request_id: str, answer: Answer) -> tuple[bool, Decision]:
        """`_close`, saying also whether this closing is the outcome (False: an answer won the race)."""
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
            return True, self._keep(request_id, answer, at, exc)
        if row is None:
            raise NotFound(f"no request {request_id}")
        if applied:
            self.after_close(row)
        return applied, Decision.for_request(row)

    def _keep(self, request_id: str, answer: Answer, at: datetime, exc: StoreError) -> Decision:
        """The store failed to close a request waited for here: its caller is answered now, its closing kept until
        the store takes it (see `unrecorded`)."""
        self.unrecorded.keep(request_id, answer, at, exc)
        closed = self._closed_here(request_id, answer, at)
        self.after_close(closed)
        return Decision.for_request(closed)

    async def close_quietly(self, request_id: str, answer: Answer) -> None:
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
        if answer.updated_input is not None:  # only for an agent that runs what was edited
            refuse_uneditable(self.opened(request_id) or await self.store.get(request_id), answer.updated_input)
        waiter = self._waiters.get(request_id)
        if waiter is not None and not waiter.done():
            return await self.apply_here(request_id, answer)
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
        return await self.apply(request_id, answer)  # recorded as too late

    async def apply_here(self, request_id: str, answer: Answer, offered: int | None = None) -> ApprovalRequest:
        """Apply an answer for an agent waiting here; an allow only once the allow before it was handed over."""
        if answer.status is not Status.ALLOWED:
            return await self.apply(request_id, answer, offered)
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        async with self._allowing:
            if self._allow_failed_at >= queued_at:  # the store failed meanwhile: no second wait for the same fault
                raise StoreError("the database failed to record the allow before this one, given meanwhile")
            try:
                row = await self.apply(request_id, answer, offered)
            except StoreError:
                self._allow_failed_at = loop.time()
                raise
            returned = self._returned.get(request_id)
            if returned is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(returned.wait(), HANDING_WAIT)
            return row

    async def apply(self, request_id: str, answer: Answer, offered: int | None = None) -> ApprovalRequest:
        applied, row = await self.store.resolve(request_id, answer, _now(), offered=offered)
        if row is None:
            raise NotFound(f"no request {request_id}")
        if not applied:
            raise RequestClosed(f"request {request_id} is already {row.status.value}; this answer changed nothing")
        self.after_close(row)
        return row

    async def _gone(self, row: ApprovalRequest, answer: Answer) -> NotDelivered:
        """A pending request of this server whose agent no longer waits (a crash or a failed closing left it):
        closed as abandoned, the answer recorded as not delivered."""
        why = f"its agent was no longer waiting when {answer.actor} answered"
        abandon = Answer(Status.ABANDONED, SERVER_ACTOR, SERVER_ACTOR, why)
        applied, now = await self.store.resolve(row.id, abandon, _now(), record_if_late=False)
        await self.store.record_answer(row.id, answer, _now(), NOT_DELIVERED)
        if applied and now is not None:
            self.after_close(now)
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

    def waits(self, request_id: str) -> bool:
        """Whether the agent that asked `request_id` waits here for an answer."""
        waiter = self._waiters.get(request_id)
        return waiter is not None and not waiter.done()

    def waiting(self) -> list[str]:
        return list(self._waiters)

    def opened(self, request_id: str) -> ApprovalRequest | None:
        """A request waited for here, as it was recorded."""
        return self._opened.get(request_id)

    async def abandon_pending(self) -> None:
        """At start-up on a database of its own: requests still pending belong to a process that died; their caller
        is gone, and the people it asked are told. (On a shared database, the leases of `replicas` decide that.)"""
        if self.store.shared:
            return
        abandoned = await self.store.abandon_pending(_now(), SERVER_ACTOR)
        if abandoned:
            logger.warning("marked %d request(s) left pending by a previous run as abandoned", len(abandoned))
        for row in abandoned:
            self.sends.withdraw(row, shown_elsewhere=True)

    async def shut_down(self) -> None:
        """Deny every waiting request and refuse new ones, so each agent reads why instead of a dropped connection."""
        self._shutting_down = True
        for request_id in list(self._waiters):
            await self.close_quietly(request_id, Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, SHUTDOWN_MESSAGE))
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

    def after_close(self, row: ApprovalRequest, shown_elsewhere: bool = False) -> None:  # see `Sends.withdraw`
        waiter = self._waiters.get(row.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(row)
        self.events.publish(Event("request.closed", row))
        self.sends.withdraw(row, shown_elsewhere)

    async def aclose(self) -> None:
        await self.unrecorded.aclose()
        await self.sends.aclose()
