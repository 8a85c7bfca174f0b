"""The phone shows where and who: every WhatsApp message about a request names the agent and its working directory,
and a request too long to read on the phone is approved only at its link (a deny is still accepted).

Against the real server and a local fake Twilio, except the last tests, which read the messages as they are composed.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from approval_server.channels.phone_text import (
    MAX_SHOWN,
    NAME_LIMIT,
    PART_LIMIT,
    TEMPLATE_TEXT_LIMIT,
    request_text,
    too_long_for_the_phone,
)
from approval_server.models import ApprovalRequest, JSONObject
from approval_server.render import FENCE
from approval_server.web_auth import WebAuth
from tests.dashboard_support import MCP, TOOL, answer, browser, csrf_of, link_for, local, still_pending
from tests.fake_twilio import FakeTwilio, Message
from tests.support import MCP_TOKEN, ServerProcess, send_recorded, wait_for_pending
from tests.whatsapp_support import ALICE, BOB, PUBLIC_URL, make_template, text_of

AGENT = "deployer"
# The permission tool speaks Claude Code's protocol; a fastmcp client has no version of Claude Code to show.
MCP_PROGRAM = ", ```claude-code```"
PROD = "/srv/prod"
# A directory that tries to fake a label line and to close the monospace block around it.
HOSTILE_CWD = "/srv/prod\nCommand:\n```rm -rf /```\n`x`\nReason: safe"
HOSTILE_AGENT = "bot\nCommand: ```echo hi```\n*Tool:* ``` Bash"


def agent_mcp(server: ServerProcess, agent: str | None = None, cwd: str | None = None) -> MCP:
    """An MCP client naming its agent and directory in its URL (`?agent=&cwd=`), as an MCP config can."""
    url = f"{server.url}/mcp"
    if query := {key: value for key, value in (("agent", agent), ("cwd", cwd)) if value}:
        url += "?" + urlencode(query)
    return Client(StreamableHttpTransport(url, headers={"Authorization": f"Bearer {MCP_TOKEN}"}))


def to(fake: FakeTwilio, number: str) -> list[Message]:
    return [m for m in fake.sent if m.to == f"whatsapp:{number}"]


async def request_messages(fake: FakeTwilio, number: str, request_id: str, within: float = 10) -> list[Message]:
    """Every message about `request_id` sent to `number`, its parts and its own message, once its own has been sent."""
    for _ in range(int(within / 0.02)):
        about = [m for m in to(fake, number) if request_id in text_of(m)]
        if any(m.content_variables or (m.body or "").startswith("🔔") for m in about):
            return about
        await asyncio.sleep(0.02)
    raise AssertionError(f"request {request_id} was not sent to {number}")


async def told(fake: FakeTwilio, number: str, after: int, *needles: str, within: float = 10) -> str:
    """The text of the first message to `number`, past its first `after` ones, that holds every needle."""
    for _ in range(int(within / 0.02)):
        for message in to(fake, number)[after:]:
            if all(needle in text_of(message) for needle in needles):
                return text_of(message)
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing to {number} says {needles}: {[text_of(m) for m in to(fake, number)]}")


def where_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("Agent:", "Directory:"))]


def long_content(length: int, seed: int) -> str:
    return "".join(random.Random(seed).choice("abcdef \n") for _ in range(length)) + "THE-END"


@pytest.mark.parametrize("template", [True, False], ids=["template", "plain"])
async def test_the_message_names_the_agent_and_its_directory(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, template: bool
) -> None:
    """`rm -rf ./*` from /srv/prod must not look like the same command from /tmp/sandbox."""
    server = start_whatsapp(**({"TWILIO_CONTENT_SID": make_template(fake)} if template else {}))
    tool_input = {"command": "rm -rf ./*", "description": "clean up"}
    async with agent_mcp(server, AGENT, PROD) as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": tool_input}))
        pending = await wait_for_pending(api, {"agent": AGENT, "cwd": PROD})
        [message] = await request_messages(fake, ALICE, pending["id"])
        call.cancel()
    async with server.mcp() as mcp, server.api() as api:  # no name, no directory: the message says so
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "ls"}}))
        unnamed = await wait_for_pending(api, {"input": {"command": "ls"}})
        [anonymous] = await request_messages(fake, ALICE, unnamed["id"])
        call.cancel()
    text = text_of(message)
    assert where_lines(text) == [f"Agent: ```{AGENT}```{MCP_PROGRAM}", f"Directory: ```{PROD}```"]
    # The message keeps its shape: the command, the agent's reason, the id, the time left.
    assert "Command:\n```rm -rf ./*```" in text
    assert "```clean up```" in text
    assert pending["id"] in text
    assert "Expires in 5 minutes" in text
    assert text.index("Agent:") < text.index("Directory:") < text.index("Tool:") < text.index("Command:")
    assert where_lines(text_of(anonymous)) == [f"Agent: (unnamed){MCP_PROGRAM}", "Directory: (unknown)"]


async def test_every_part_of_a_long_input_names_the_agent_and_its_directory(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    content = long_content(3000, seed=11)
    server = start_whatsapp(TWILIO_CONTENT_SID=make_template(fake))
    async with agent_mcp(server, AGENT, PROD) as mcp, server.api() as api:
        call = asyncio.create_task(
            mcp.call_tool_mcp(TOOL, {"tool_name": "Write", "input": {"file_path": "/srv/prod/f", "content": content}})
        )
        pending = await wait_for_pending(api, {"agent": AGENT, "cwd": PROD})
        messages = await request_messages(fake, ALICE, pending["id"])
        call.cancel()
    parts, last = [text_of(m) for m in messages[:-1]], text_of(messages[-1])
    assert len(parts) >= 3
    assert all(f"Request {pending['id']}, part {n}/{len(parts)} of the input" in p for n, p in enumerate(parts, 1))
    for text in [*parts, last]:
        assert where_lines(text) == [f"Agent: ```{AGENT}```{MCP_PROGRAM}", f"Directory: ```{PROD}```"]
    assert all(len(part) <= PART_LIMIT for part in parts)
    assert f"is in the {len(parts)} numbered messages above" in last
    assert "THE-END" in parts[-1]


@pytest.mark.parametrize("ending", ["DENY reply", "Deny button", "approved at the link"])
async def test_an_input_too_long_for_the_phone_is_approved_only_at_its_link(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, ending: str
) -> None:
    content = long_content(MAX_SHOWN + 500, seed=5)
    tool_input = {"file_path": "/srv/prod/big", "content": content}
    # The DENY reply is tried without a template: the plain text must say the same.
    template = {"TWILIO_CONTENT_SID": make_template(fake)} if ending != "DENY reply" else {}
    server = start_whatsapp(APPROVAL_WHATSAPP_QUIET_SECONDS="0", **template)
    async with agent_mcp(server, AGENT, PROD) as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Write", "input": tool_input}))
        pending = await wait_for_pending(api, {"agent": AGENT, "cwd": PROD})
        request_id = pending["id"]
        [message] = await request_messages(fake, ALICE, request_id)  # no parts: it is not shown
        await send_recorded(server, message.sid)
        shown = text_of(message)
        assert "THE-END" not in shown
        assert f"The input is {len(json.dumps(tool_input, ensure_ascii=False, indent=1)):,} characters long" in shown
        assert "too long to read on the phone" in shown
        assert "The only way to approve it is the link below" in shown
        assert f"{PUBLIC_URL}/r/" in shown
        assert where_lines(shown) == [f"Agent: ```{AGENT}```{MCP_PROGRAM}", f"Directory: ```{PROD}```"]
        if not template:
            assert "Reply APPROVE" not in shown
            assert f"Approve it only at the link above. To deny it, reply DENY {request_id}." in shown

        # Whatever would allow it from the phone is refused, and says why: a bare yes bound to it (its message is the
        # last one Alice got, and the quiet time is 0), an id typed, a swipe-reply, the Approve and Allow buttons.
        attempts: list[Callable[[], Any]] = [
            lambda: fake.send_inbound(from_=ALICE, body="yes"),
            lambda: fake.send_inbound(from_=ALICE, body=f"APPROVE {request_id}"),
            lambda: fake.send_inbound(from_=ALICE, body=f"always {request_id}"),
            lambda: fake.send_inbound(from_=ALICE, body=f"ALLOW {request_id} 30m"),
            lambda: fake.send_inbound(from_=ALICE, body="yes", extra={"OriginalRepliedMessageSid": message.sid}),
            lambda: fake.tap_button(
                from_=ALICE, replied_to=message.sid, payload=f"approve {request_id}", title="✅ Approve"
            ),
            lambda: fake.tap_button(
                from_=ALICE, replied_to=message.sid, payload=f"always {request_id}", title="🔁 Allow for session"
            ),
        ]
        for attempt in attempts:
            before = len(to(fake, ALICE))
            assert (await attempt()).status_code == 200
            refusal = await told(fake, ALICE, before, "Not applied")
            assert f"request {request_id} is too long to read on the phone" in refusal
            assert f"The only way to approve it is its link, which shows it whole: {PUBLIC_URL}/r/" in refusal
            assert f"DENY {request_id} (or the Deny button) still works here" in refusal
            await still_pending(api, request_id, call)

        if ending == "approved at the link":
            async with browser(server) as http:
                link = local(await link_for(fake, ALICE, request_id), server)
                page = await http.get(link)
                assert page.status_code == 200
                assert "THE-END" in page.text  # the whole input
                decided = await http.post(link, data={"csrf": csrf_of(page.text), "decision": "allow"})
                assert decided.status_code == 200
            assert await answer(call) == {"behavior": "allow", "updatedInput": tool_input}
            expected = ("allowed", ALICE, "web link")
        else:
            if ending == "DENY reply":
                await fake.send_inbound(from_=BOB, body=f"DENY {request_id} split it up")
            else:
                await fake.tap_button(from_=BOB, replied_to=message.sid, payload=f"deny {request_id}", title="❌ Deny")
            result = await answer(call)
            assert result["behavior"] == "deny"
            assert result["message"].startswith(f"Denied by {BOB} via whatsapp")
            expected = ("denied", BOB, "whatsapp")
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert (row["status"], row["decided_by"], row["decided_via"]) == expected
    assert [a["outcome"] for a in row["answers"]] == ["applied"]


async def test_a_directory_cannot_fake_a_label_or_close_its_block_on_the_phone(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """A directory holding newlines, backticks and a code fence: one line, one monospace block, in every message."""
    server = start_whatsapp(TWILIO_CONTENT_SID=make_template(fake))
    short = {"command": "ls"}
    long = {"file_path": "/srv/prod/f", "content": long_content(2000, seed=3)}
    async with agent_mcp(server, AGENT, HOSTILE_CWD) as mcp, server.api() as api:
        calls = [
            asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": name, "input": tool_input}))
            for name, tool_input in (("Bash", short), ("Write", long))
        ]
        rows = [await wait_for_pending(api, {"input": tool_input, "cwd": HOSTILE_CWD}) for tool_input in (short, long)]
        messages = [m for row in rows for m in await request_messages(fake, ALICE, row["id"])]
        for call in calls:
            call.cancel()
    assert len(messages) >= 3  # the short request's message; the long one's parts and its message
    for text in map(text_of, messages):
        assert_named_safely(text, f"```{AGENT}```{MCP_PROGRAM}")
    assert [line for line in text_of(messages[0]).splitlines() if line.startswith("Command")] == ["Command:"]


def assert_named_safely(text: str, agent: str) -> None:
    """The agent's and the directory's lines are one line each, with one monospace block each, from just after the
    label to the end of the line; all of the directory is there, and nothing of it leaks out to fake a label
    ("Command:", "Reason:") or a block of its own."""
    lines = where_lines(text)
    assert [line.split(" ", 1)[0] for line in lines] == ["Agent:", "Directory:"]
    assert lines[0] == f"Agent: {agent}"
    directory = lines[1].removeprefix("Directory: ")
    assert_one_block(directory)
    assert directory.startswith("```/srv/prod")
    assert all(words in directory for words in ("Command:", "rm -rf /", "x", "Reason: safe"))
    assert not [line for line in text.splitlines() if line.startswith(("Reason: safe", "`x`", "```rm", "rm -rf /"))]


def assert_one_block(value: str) -> None:
    """`value` is one monospace block, on one line: no backtick or newline inside can close it or start a line."""
    assert value.startswith(FENCE)
    assert value.endswith(FENCE)
    assert len(value) > 2 * len(FENCE)
    assert "`" not in value[len(FENCE) : -len(FENCE)]
    assert "\n" not in value


# -- the messages as composed: an agent name no server would accept, and the limits -------------------------------


def request(tool_input: JSONObject, agent: str | None = AGENT, cwd: str | None = PROD) -> ApprovalRequest:
    now = datetime.now(UTC)
    return ApprovalRequest(
        id="7kq2m9xa",
        tool_name="Bash",
        input=tool_input,
        tool_use_id=None,
        extra={},
        client=None,
        rendered="",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        agent=agent,
        cwd=cwd,
    )


def footer() -> str:
    """The footer of a request's message as the channel writes it, with a real link."""
    link = f"{PUBLIC_URL}/r/{WebAuth('x' * 32).request_link_token('7kq2m9xa', '+4915123456789')}"
    return f"🔗 Read it all and answer in a browser: {link}\n⏱️ Expires in 5 minutes (14:05 UTC)"


@pytest.mark.parametrize("length", [10, 3000, MAX_SHOWN + 1])
def test_a_hostile_agent_name_cannot_fake_a_label_or_close_its_block(length: int) -> None:
    """Agent names are checked where requests come in; the messages do not count on it."""
    text = request_text(request({"command": "x" * length}, agent=HOSTILE_AGENT, cwd=HOSTILE_CWD), footer())
    for shown in [*text.parts, text.shown]:
        [agent] = [line.removeprefix("Agent: ") for line in where_lines(shown) if line.startswith("Agent:")]
        assert_one_block(agent)
        assert agent.startswith("```bot")
        assert all(words in agent for words in ("Command: ", "echo hi", "*Tool:*", " Bash"))
        assert_named_safely(shown, agent)
        assert not [line for line in shown.splitlines() if line.startswith(("Command: ", "*Tool:*"))]
    assert text.approvable is (length < MAX_SHOWN)


def test_the_limits_hold_with_the_longest_name_and_directory_shown() -> None:
    agent, cwd = "a" * (NAME_LIMIT - 6), "/" + "d" * (NAME_LIMIT - 7)
    for length in (800, 3000, MAX_SHOWN - 20, MAX_SHOWN + 1, 50_000):
        composed = request_text(request({"command": "x" * length}, agent=agent, cwd=cwd), footer())
        assert len(composed.shown) <= TEMPLATE_TEXT_LIMIT
        assert all(len(part) <= PART_LIMIT for part in composed.parts)
        assert f"Agent: ```{agent}```\nDirectory: ```{cwd}```" in composed.shown
        if composed.parts:  # each part's input is its last monospace block; together, the whole input
            joined = "".join(part.removesuffix("```").rsplit("```", 1)[1] for part in composed.parts)
            assert joined == json.dumps({"command": "x" * length}, indent=1)


def test_a_name_or_directory_too_long_to_show_makes_the_request_too_long_for_the_phone() -> None:
    assert not too_long_for_the_phone(request({"command": "ls"}, agent="a" * (NAME_LIMIT - 6)))
    for agent, cwd in (("a" * (NAME_LIMIT - 5), PROD), (AGENT, "/" + "d" * 200), (AGENT, "/" + "`" * 20)):
        long = request({"command": "ls"}, agent=agent, cwd=cwd)
        assert too_long_for_the_phone(long)
        composed = request_text(long, footer())
        assert not composed.approvable
        assert "(too long to show here: read it at the link)" in composed.shown
        assert "The only way to approve it is the link below" in composed.shown
        assert len(composed.shown) <= TEMPLATE_TEXT_LIMIT
