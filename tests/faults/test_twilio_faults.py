"""Twilio failing in every way it can (hanging, 500, 429, refusing connections): an answer is never held up by a
send, a request nobody could be reached for is denied at once with the reason, and the server recovers.

The server runs for real against the local fake Twilio (`tests/fake_twilio.py`)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from approval_server.channels.whatsapp.settings import WhatsAppSection
from approval_server.config import load_section
from approval_server.errors import ConfigError
from tests.fake_twilio import FakeTwilio
from tests.support import ServerProcess, wait_for_pending
from tests.whatsapp_support import ALICE, BOB, sent_to, text_of

TOOL = "permissions__approve"
SEND_TIMEOUT = 2.0  # APPROVAL_SEND_TIMEOUT_SECONDS where a test waits for it
# An access log line of an answer in the 5xx range ("POST /mcp HTTP/1.1" 500).
SERVER_ERROR = re.compile(r'HTTP/1\.1" 5\d\d')


async def timed_call(mcp: Any, command: str) -> tuple[dict[str, Any], float]:
    """The agent's answer to a Bash `command`, and the moment (monotonic) it arrived."""
    result = await mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": command}})
    return json.loads(result.content[0].text), time.monotonic()


async def nothing_pending(api: httpx.AsyncClient) -> None:
    rows = (await api.get("/api/requests", params={"status": "pending"})).json()["requests"]
    assert rows == [], f"left pending: {rows}"


async def sent_about(fake: FakeTwilio, approver: str, request_id: str, within: float = 10) -> None:
    """Returns once `approver` was sent a message about `request_id`."""
    for _ in range(int(within / 0.02)):
        if any(m.to == f"whatsapp:{approver}" and request_id in text_of(m) for m in fake.sent):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{approver} was sent nothing about {request_id}")


async def held(fake: FakeTwilio, within: float = 5) -> list[str]:
    """The sends the fake holds, once there is one."""
    for _ in range(int(within / 0.01)):
        if fake.hung:
            break
        await asyncio.sleep(0.01)
    return fake.hung


def no_server_error(server: ServerProcess) -> None:
    log = server.log()
    assert not SERVER_ERROR.search(log), [line for line in log.splitlines() if SERVER_ERROR.search(line)]
    assert "Exception in ASGI application" not in log


async def test_a_hanging_send_to_one_approver_never_holds_a_decision(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """Alice's send hangs for 60 s; Bob approves at about 1 s: the agent has the allow within milliseconds. Alice's
    message, which was in flight, is followed by the outcome, never preceded by it."""
    fake.hang_sends(60, to=ALICE)
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        started = time.monotonic()
        call = asyncio.create_task(timed_call(mcp, "make deploy"))
        pending = await wait_for_pending(api)
        to_bob = (await sent_to(fake, BOB))[0]
        assert pending["id"] in text_of(to_bob)
        assert await held(fake) == [f"whatsapp:{ALICE}"]  # it may reach the fake after Bob's was answered
        await asyncio.sleep(max(0.0, started + 1 - time.monotonic()))
        decided = time.monotonic()
        response = await fake.send_inbound(from_=BOB, body=f"APPROVE {pending['id']}")
        answer, arrived = await asyncio.wait_for(call, 5)
        lag = arrived - decided
        print(f"\nthe allow reached the agent {lag * 1000:.0f} ms after Bob's answer was posted")
        assert response.status_code == 200
        assert answer["behavior"] == "allow"
        assert lag < 0.3
        fake.clear_failures()  # Twilio answers Alice's send at last
        to_alice = await sent_to(fake, ALICE, 2)
        await nothing_pending(api)
    assert text_of(to_alice[0]).startswith(f"🔔 Approval request {pending['id']}")
    assert to_alice[1].body == f"Request {pending['id']} was approved by {BOB} via whatsapp."
    no_server_error(server)


async def test_when_every_send_hangs_the_agent_is_denied_after_the_send_timeout(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    fake.hang_sends(60)
    server = start_whatsapp(APPROVAL_SEND_TIMEOUT_SECONDS=str(SEND_TIMEOUT))
    async with server.mcp() as mcp, server.api() as api:
        started = time.monotonic()
        answer, arrived = await asyncio.wait_for(timed_call(mcp, "make deploy"), 15)
        waited = arrived - started
        print(f"\ndenied {waited:.2f} s after the call (send timeout {SEND_TIMEOUT:g} s)")
        assert answer["behavior"] == "deny"
        assert answer["message"].startswith("No approval channel could reach anyone (whatsapp: ")
        assert f"{ALICE}: no answer from Twilio within 2 seconds" in answer["message"]
        assert f"{BOB}: no answer from Twilio within 2 seconds" in answer["message"]
        assert waited < SEND_TIMEOUT + 1
        await nothing_pending(api)
        fake.clear_failures()
    no_server_error(server)


FAULTS: dict[str, tuple[Callable[[FakeTwilio], object], Callable[[FakeTwilio], None], str]] = {
    # the fault, its end, what the agent is told of each approver
    "500": (lambda fake: fake.fail_sends(20500, http_status=500), FakeTwilio.clear_failures, "Twilio error 20500"),
    "429": (lambda fake: fake.fail_sends(20429, http_status=429), FakeTwilio.clear_failures, "Twilio error 20429"),
    "refused": (FakeTwilio.refuse_connections, FakeTwilio.accept_connections, "Twilio unreachable ("),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_failing_twilio_denies_at_once_and_the_server_recovers(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, fault: str
) -> None:
    start, end, told = FAULTS[fault]
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        start(fake)
        started = time.monotonic()
        answer, arrived = await asyncio.wait_for(timed_call(mcp, "make deploy"), 15)
        print(f"\nTwilio {fault}: denied {arrived - started:.2f} s after the call")
        assert answer["behavior"] == "deny"
        assert answer["message"].startswith("No approval channel could reach anyone (whatsapp: ")
        assert f"{ALICE}: {told}" in answer["message"]
        assert f"{BOB}: {told}" in answer["message"]
        assert arrived - started < 3

        end(fake)
        call = asyncio.create_task(timed_call(mcp, "make test"))
        pending = await wait_for_pending(api)
        for approver in (ALICE, BOB):
            await sent_about(fake, approver, pending["id"])
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        assert (await asyncio.wait_for(call, 5))[0]["behavior"] == "allow"
        await nothing_pending(api)
    no_server_error(server)


@pytest.mark.parametrize("fault", ["500", "429"])
async def test_a_request_one_approver_could_be_sent_waits_for_them(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, fault: str
) -> None:
    fake.fail_sends(int(f"20{fault}"), http_status=int(fault), to=ALICE)
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(timed_call(mcp, "make deploy"))
        pending = await wait_for_pending(api)
        assert pending["id"] in text_of((await sent_to(fake, BOB))[0])
        await asyncio.sleep(1)
        assert not call.done()
        assert (await api.get(f"/api/requests/{pending['id']}")).json()["status"] == "pending"
        await fake.send_inbound(from_=BOB, body=f"DENY {pending['id']}")
        answer, _ = await asyncio.wait_for(call, 5)
        await nothing_pending(api)
    assert answer["message"].startswith(f"Denied by {BOB} via whatsapp")
    no_server_error(server)


@pytest.mark.parametrize("value", ["0", "-1", "121", "soon"])
def test_a_send_timeout_out_of_range_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="APPROVAL_SEND_TIMEOUT_SECONDS"):
        load_section(WhatsAppSection, None, approval_send_timeout_seconds=value)


async def test_a_burst_past_the_rate_limit_is_denied_with_the_rest_when_every_send_hangs(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """The requests held back by the rate limit were never sent: when the ones sent could reach nobody, they are
    denied too, within the send timeout, instead of waiting for their expiry."""
    fake.hang_sends(60)
    server = start_whatsapp(APPROVAL_SEND_TIMEOUT_SECONDS=str(SEND_TIMEOUT), APPROVAL_WHATSAPP_PER_MINUTE="2")
    async with server.mcp() as mcp, server.api() as api:
        started = time.monotonic()
        calls = [timed_call(mcp, f"make deploy-{n}") for n in range(6)]
        answers = await asyncio.wait_for(asyncio.gather(*calls), 15)
        slowest = max(arrived for _, arrived in answers) - started
        print(f"\n6 requests, 2 a minute sent: all denied within {slowest:.2f} s (send timeout {SEND_TIMEOUT:g} s)")
        assert [answer["behavior"] for answer, _ in answers] == ["deny"] * 6
        # Each approver was sent two and had four held back (not always the same four: their turns interleave).
        for approver in (ALICE, BOB):
            held = f"{approver}: no answer from Twilio within 2 seconds, and this request was held back"
            assert sum(held in answer["message"] for answer, _ in answers) == 4, approver
        assert slowest < SEND_TIMEOUT + 1
        await nothing_pending(api)
        fake.clear_failures()
    no_server_error(server)
