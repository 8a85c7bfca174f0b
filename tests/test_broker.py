"""The broker in-process, with mock channels and policies: every way out of `submit` is a decision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from approval_server.channels import Channel, Delivery
from approval_server.core.broker import Broker
from approval_server.core.events import EventHub
from approval_server.errors import RequestClosed, StoreError
from approval_server.fair_share import Limits
from approval_server.models import Answer, ApprovalRequest, Status, ToolCall
from approval_server.policy import RulesPolicy
from approval_server.policy.rule import Verdict
from approval_server.policy.rule_set import RuleSet
from approval_server.store import Store

CALL = ToolCall("Bash", {"command": "echo hi"}, "t1")


class MockChannel(Channel):
    """A channel built from a handler, recording what it was told."""

    def __init__(self, name: str, notify: Callable[[ApprovalRequest], Awaitable[Delivery]] | None = None) -> None:
        self.name = name
        self._notify = notify
        self.notified: list[ApprovalRequest] = []
        self.withdrawn: list[ApprovalRequest] = []

    async def notify(self, request: ApprovalRequest) -> Delivery:
        self.notified.append(request)
        return await self._notify(request) if self._notify else Delivery(reached=True)

    async def withdraw(self, request: ApprovalRequest) -> None:
        self.withdrawn.append(request)


class FixedPolicy:
    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict

    def evaluate(self, call: ToolCall) -> Verdict:
        return self.verdict


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(database_url)
    store.migrate()
    yield store
    await store.aclose()


def make_broker(store: Store, *channels: Channel, timeout: float = 10, policy: object = None) -> Broker:
    rules = RulesPolicy(RuleSet.from_toml(""))
    return Broker(store, policy or rules, list(channels), EventHub(), timeout)  # type: ignore[arg-type]


async def pending_id(broker: Broker) -> str:
    """The id of the request waiting, once every channel has been told of it."""
    for _ in range(500):
        rows = await broker.store.recent(status=Status.PENDING)
        shown = all(
            rows and rows[0] in channel.notified
            for channel in broker.sends.channels
            if isinstance(channel, MockChannel)
        )
        if rows and shown:
            return rows[0].id
        await asyncio.sleep(0.01)
    raise AssertionError("nothing pending")


async def test_a_human_answer_wakes_the_waiter_and_other_channels_withdraw(store: Store) -> None:
    one, two = MockChannel("one"), MockChannel("two")
    broker = make_broker(store, one, two)
    waiting = asyncio.create_task(broker.submit(CALL))
    request_id = await pending_id(broker)
    await broker.decide(request_id, Answer(Status.ALLOWED, "alice", "one"))
    decision = await waiting
    await broker.aclose()
    assert (decision.behavior, decision.updated_input) == ("allow", {"command": "echo hi"})
    assert [r.id for r in one.notified] == [request_id] == [r.id for r in two.notified]
    assert [r.status for r in two.withdrawn] == [Status.ALLOWED]
    assert broker.pending_count == 0


async def test_when_no_channel_reaches_anyone_the_request_is_denied_at_once(store: Store) -> None:
    async def unreachable(request: ApprovalRequest) -> Delivery:
        return Delivery(reached=False, detail="twilio said 401")

    async def broken(request: ApprovalRequest) -> Delivery:
        raise RuntimeError("boom")

    broker = make_broker(store, MockChannel("whatsapp", unreachable), MockChannel("other", broken), timeout=60)
    decision = await asyncio.wait_for(broker.submit(CALL), 5)
    assert decision.behavior == "deny"
    assert decision.message is not None
    assert decision.message.startswith("No approval channel could reach anyone")
    assert "whatsapp: twilio said 401" in decision.message
    assert "other: error: RuntimeError" in decision.message
    rows = await store.recent()
    assert rows[0].status is Status.DENIED


async def test_one_reachable_channel_is_enough(store: Store) -> None:
    async def unreachable(request: ApprovalRequest) -> Delivery:
        return Delivery(reached=False, detail="down")

    broker = make_broker(store, MockChannel("down", unreachable), MockChannel("up"), timeout=0.3)
    decision = await broker.submit(CALL)
    assert decision.message is not None
    assert "expired" in decision.message


async def test_expiry_is_recorded_and_channels_withdraw(store: Store) -> None:
    channel = MockChannel("one")
    broker = make_broker(store, channel, timeout=0.2)
    decision = await broker.submit(CALL)
    await broker.aclose()
    assert decision.behavior == "deny"
    assert decision.message is not None
    assert decision.message.startswith("No answer within 0.2 seconds")
    assert [r.status for r in channel.withdrawn] == [Status.EXPIRED]


async def test_cancellation_is_recorded_and_channels_withdraw(store: Store) -> None:
    channel = MockChannel("one")
    broker = make_broker(store, channel)
    waiting = asyncio.create_task(broker.submit(CALL))
    request_id = await pending_id(broker)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await broker.aclose()
    row = await store.get(request_id)
    assert row is not None
    assert row.status is Status.CANCELLED
    assert [r.status for r in channel.withdrawn] == [Status.CANCELLED]
    with pytest.raises(RequestClosed):
        await broker.decide(request_id, Answer(Status.ALLOWED, "late", "api"))


@pytest.mark.parametrize(
    ("verdict", "behavior", "status"),
    [
        (Verdict("allow", "read-only", "safe"), "allow", Status.ALLOWED),
        (Verdict("deny", "no-rm", "never"), "deny", Status.DENIED),
    ],
)
async def test_policy_verdicts_need_no_human(store: Store, verdict: Verdict, behavior: str, status: Status) -> None:
    channel = MockChannel("one")
    broker = make_broker(store, channel, policy=FixedPolicy(verdict))
    decision = await broker.submit(CALL)
    assert decision.behavior == behavior
    assert channel.notified == []
    row = (await store.recent())[0]
    assert (row.status, row.decided_via, row.decided_by) == (status, "policy", verdict.rule)
    if behavior == "deny":
        assert decision.message is not None
        assert decision.message == f"never (approval request {row.id})"


async def test_simultaneous_answers_in_process_have_one_winner(store: Store) -> None:
    broker = make_broker(store, MockChannel("one"))
    for _ in range(10):
        waiting = asyncio.create_task(broker.submit(CALL))
        request_id = await pending_id(broker)
        results = await asyncio.gather(
            broker.decide(request_id, Answer(Status.ALLOWED, "a", "api")),
            broker.decide(request_id, Answer(Status.DENIED, "b", "api")),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, ApprovalRequest)]
        assert len(winners) == 1
        assert sum(isinstance(r, RequestClosed) for r in results) == 1
        assert (await waiting).behavior == ("allow" if winners[0].status is Status.ALLOWED else "deny")


async def test_an_internal_error_is_a_deny_that_leaks_nothing(store: Store, database_url: str) -> None:
    class BrokenStore(Store):
        async def insert(self, request: ApprovalRequest) -> None:
            raise StoreError("database error: OperationalError secret-path")

    broken = BrokenStore(database_url)
    decision = await make_broker(broken, MockChannel("one")).submit(CALL)
    await broken.aclose()
    assert decision.behavior == "deny"
    assert decision.message is not None
    assert "internal error" in decision.message
    assert "denied for safety" in decision.message
    assert "secret-path" not in decision.message


async def test_an_answer_given_before_the_request_takes_its_place_stands_alone_in_the_record(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A human can answer as soon as a request is recorded, before it has its place in the fair share: that answer
    is the outcome, and the record holds no refusal by the server, which never happened."""
    broker = make_broker(store, MockChannel("one"))
    broker.limits = Limits(per_agent=5, per_token=10)
    admit = store.admit

    async def answered_first(request_id: str, *args: Any) -> tuple[int, int] | None:
        await broker.decide(request_id, Answer(Status.DENIED, "alice", "api", "no"))
        return await admit(request_id, *args)

    store.admit = answered_first  # type: ignore[method-assign,assignment]
    caplog.set_level("INFO", logger="approval_server")
    decision = await broker.submit(ToolCall(tool_name="Bash", input={"command": "ls"}))
    rows = await store.recent()
    assert decision.behavior == "deny"
    assert (rows[0].status, rows[0].decided_by) == (Status.DENIED, "alice")
    assert [answer["actor"] for answer in await store.answers_for(rows[0].id)] == ["alice"]
    # Nor does the log say the server refused it.
    assert "denied at once" not in caplog.text


async def hang(request: ApprovalRequest) -> Delivery:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def test_a_hanging_send_never_holds_the_answer(store: Store) -> None:
    broker = make_broker(store, MockChannel("slow", hang), MockChannel("fast"))
    waiting = asyncio.create_task(broker.submit(CALL))
    request_id = await pending_id(broker)
    await broker.decide(request_id, Answer(Status.ALLOWED, "alice", "fast"))
    decision = await asyncio.wait_for(waiting, 1)
    assert decision.behavior == "allow"
    await broker.aclose()


async def test_the_expiry_runs_from_when_the_request_is_recorded_whatever_a_send_is_doing(store: Store) -> None:
    broker = make_broker(store, MockChannel("slow", hang), timeout=0.3)
    decision = await asyncio.wait_for(broker.submit(CALL), 2)
    assert decision.message is not None
    assert decision.message.startswith("No answer within 0.3 seconds")
    assert (await store.recent())[0].status is Status.EXPIRED
    await broker.aclose()


async def test_a_request_decided_while_it_is_sent_is_sent_no_further_and_withdrawn_after_the_send(
    store: Store,
) -> None:
    """The send in flight is cancelled and ends (a channel finishes the message it has under way), and only then is
    the request withdrawn on that channel: its approver hears how it ended after, never before, its message."""
    said: list[str] = []

    async def slow(request: ApprovalRequest) -> Delivery:
        said.append("sending")
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            said.append("cancelled")
            raise
        said.append("sent")
        return Delivery(reached=True)

    channel = MockChannel("one", slow)
    original = channel.withdraw

    async def withdraw(request: ApprovalRequest) -> None:
        said.append("withdrawn")
        await original(request)

    channel.withdraw = withdraw  # type: ignore[method-assign]
    broker = make_broker(store, channel)
    waiting = asyncio.create_task(broker.submit(CALL))
    request_id = await pending_id(broker)
    await broker.decide(request_id, Answer(Status.DENIED, "alice", "api"))
    assert (await asyncio.wait_for(waiting, 0.2)).behavior == "deny"
    await broker.aclose()
    assert said == ["sending", "cancelled", "withdrawn"]


async def test_a_request_the_store_cannot_record_is_denied_without_another_write(database_url: str) -> None:
    """A locked database fails the insert after its busy timeout: the deny comes then, not after a second wait to
    record a deny for a row that does not exist."""
    writes: list[str] = []

    class LockedStore(Store):
        async def insert(self, request: ApprovalRequest) -> None:
            writes.append("insert")
            raise StoreError("database error: OperationalError")

        async def resolve(self, *args: Any, **kwargs: Any) -> Any:
            writes.append("resolve")
            raise StoreError("database error: OperationalError")

    locked = LockedStore(database_url)
    decision = await make_broker(locked, MockChannel("one")).submit(CALL)
    await locked.aclose()
    assert decision.behavior == "deny"
    assert decision.message is not None
    assert "could not record" in decision.message
    assert writes == ["insert"]
