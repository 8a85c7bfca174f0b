"""The WhatsApp channel against a local fake Twilio: what the phone shows, who may answer, and what fails closed."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import httpx
import pytest

from tests.fake_twilio import FakeTwilio
from tests.support import REPO, ServerProcess, wait_for_pending
from tests.whatsapp_support import ALICE, BOB, MALLORY, PUBLIC_URL, make_template, sent_to, text_of

TOOL = "permissions__approve"


async def test_a_tap_on_approve_allows_and_everyone_hears_of_it(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    template = make_template(fake)
    server = start_whatsapp(TWILIO_CONTENT_SID=template)
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(
            mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "ls -la /etc", "description": "look"}})
        )
        pending = await wait_for_pending(api)
        to_alice = (await sent_to(fake, ALICE))[0]
        await sent_to(fake, BOB)
        assert to_alice.content_sid == template
        assert to_alice.status_callback == f"{PUBLIC_URL}/twilio-webhook"
        assert to_alice.content_variables is not None
        assert to_alice.content_variables["2"] == pending["id"]
        assert "```ls -la /etc```" in to_alice.content_variables["1"]
        assert "```look```" in to_alice.content_variables["1"]
        assert "Expires in 5 minutes" in to_alice.content_variables["1"]
        response = await fake.tap_button(
            from_=ALICE, replied_to=to_alice.sid, payload=f"approve {pending['id']}", title="✅ Approve"
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        assert "<Response" in response.text
        answer = json.loads((await call).content[0].text)
        assert answer == {"behavior": "allow", "updatedInput": {"command": "ls -la /etc", "description": "look"}}
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert (row["status"], row["decided_by"], row["decided_via"]) == ("allowed", ALICE, "whatsapp")
    confirmation = (await sent_to(fake, ALICE, 2))[-1]
    notice = (await sent_to(fake, BOB, 2))[-1]
    assert text_of(confirmation).startswith(f"✅ Request {pending['id']} approved")
    assert notice.body == f"Request {pending['id']} was approved by {ALICE} via whatsapp."
    # Only a request's messages ask for delivery reports: a notice's would be of no use.
    assert (confirmation.status_callback, notice.status_callback) == (None, None)


async def test_a_text_reply_denies_and_the_agent_reads_who(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "rm -rf /"}}))
        pending = await wait_for_pending(api)
        plain = (await sent_to(fake, ALICE))[0]
        assert plain.content_sid is None
        assert f"Reply APPROVE {pending['id']} or DENY {pending['id']}" in text_of(plain)
        response = await fake.send_inbound(from_=BOB, body=f"  deny {pending['id'].upper()}  ")
        assert response.status_code == 200
        answer = json.loads((await call).content[0].text)
    assert answer["behavior"] == "deny"
    assert answer["message"].startswith(f"Denied by {BOB} via whatsapp")


async def test_forged_foreign_and_replayed_webhooks_change_nothing(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
        pending = await wait_for_pending(api)
        approve = fake.inbound_message(from_=ALICE, body=f"APPROVE {pending['id']}")
        for hostile in (
            approve.forged(),
            approve.unsigned(),
            approve.with_params({"Body": f"APPROVE {pending['id']}", "From": f"whatsapp:{BOB}"}).forged(),
            approve.as_account("AC" + "0" * 32, "another-accounts-token"),
            approve.signed_with(fake.auth_token, url=f"{server.url}/twilio-webhook"),  # signed for the wrong URL
        ):
            assert (await fake.deliver(hostile)).status_code == 403
        stranger = await fake.send_inbound(from_=MALLORY, body=f"APPROVE {pending['id']}")
        assert stranger.status_code == 200
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        assert (row["status"], row["answers"]) == ("pending", [])
        deny = fake.inbound_message(from_=ALICE, body=f"DENY {pending['id']}")
        assert (await fake.deliver(deny)).status_code == 200
        assert (await fake.deliver(deny)).status_code == 200
        assert json.loads((await call).content[0].text)["behavior"] == "deny"
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert [a["outcome"] for a in row["answers"]] == ["applied"]
    assert not [m for m in fake.sent if m.to == f"whatsapp:{MALLORY}"]


async def test_an_answer_to_a_closed_request_changes_nothing_and_says_so(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
        pending = await wait_for_pending(api)
        first = (await sent_to(fake, ALICE))[0]
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "message": "no"})
        await call
        await fake.tap_button(from_=ALICE, replied_to=first.sid, payload=f"approve {pending['id']}", title="Approve")
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        messages = await sent_to(fake, ALICE, 3)
    assert row["status"] == "denied"
    assert [a["outcome"] for a in row["answers"]] == ["applied", "too_late"]
    assert any(f"Request {pending['id']} is already denied" in (m.body or "") for m in messages)


async def test_an_ambiguous_answer_is_refused_with_instructions(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        calls = [
            asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": f"c{i}"}}))
            for i in range(2)
        ]
        for i in range(2):
            await wait_for_pending(api, {"input": {"command": f"c{i}"}})
        await sent_to(fake, ALICE, 2)  # she has both on her phone (else the refusal may overtake a request's message)
        await fake.send_inbound(from_=ALICE, body="approve")
        pending = (await api.get("/api/requests", params={"status": "pending"})).json()["requests"]
        assert len(pending) == 2
        messages = await sent_to(fake, ALICE, 3)
        for task in calls:
            task.cancel()
    refusal = messages[-1].body or ""
    assert refusal.startswith("Not applied: which request? Waiting: ")
    assert all(row["id"] in refusal for row in pending)
    assert "Reply APPROVE <id> or DENY <id>" in refusal


@pytest.mark.parametrize(
    "command",
    ["echo *bold* and _italic_ and ~strike~", "echo ```fenced``` `id`", "ls\u202e/tmp\u200b\x1b[8m hidden"],
)
async def test_what_the_phone_shows_is_exactly_what_runs(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, command: str
) -> None:
    from approval_server.render import monospace

    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": command}}))
        pending = await wait_for_pending(api)
        body = text_of((await sent_to(fake, ALICE))[0])
        await fake.send_inbound(from_=ALICE, body=f"approve {pending['id']}")
        answer = json.loads((await call).content[0].text)
    assert monospace(command) in body
    assert "\u202e" not in body
    assert "\x1b" not in body
    assert answer["updatedInput"] == {"command": command}


@pytest.mark.parametrize("length", [600, 780, 850])
async def test_a_request_near_the_template_limit_still_fits_with_its_link(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, length: int
) -> None:
    """A quick-reply template's text is at most 1,024 characters once its variables are filled in."""
    server = start_whatsapp(TWILIO_CONTENT_SID=make_template(fake))
    template = json.loads((REPO / "template_config.json").read_text())["types"]["twilio/quick-reply"]["body"]
    async with server.mcp() as mcp:
        command = "echo " + "x" * length
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": command}}))
        messages = await sent_to(fake, ALICE)
        for count in range(2, 10):  # long requests come in parts first; the template message is the last one
            if messages[-1].content_variables:
                break
            messages = await sent_to(fake, ALICE, count)
        call.cancel()
    variables = messages[-1].content_variables
    assert variables
    filled = template.replace("{{1}}", variables["1"]).replace("{{2}}", variables["2"])
    assert len(filled) <= 1024
    assert f"{PUBLIC_URL}/r/" in variables["1"]
    shown = "".join(text_of(m) for m in messages)
    assert command in shown


async def test_long_input_arrives_in_numbered_parts_and_nothing_is_dropped(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    content = "".join(random.Random(7).choice("abcdef \n") for _ in range(3000)) + "\u202e`THE-END"
    server = start_whatsapp()
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(
            mcp.call_tool_mcp(TOOL, {"tool_name": "Write", "input": {"file_path": "/tmp/f", "content": content}})
        )
        pending = await wait_for_pending(api)
        messages = await sent_to(fake, ALICE, 4)
        call.cancel()
    parts = [text_of(m) for m in messages if "part " in text_of(m)]
    assert len(parts) >= 3
    assert all(len(body) <= 1600 for body in parts)
    assert "⟨U+202E⟩⟨U+0060⟩THE-END" in parts[-1]  # escaped once, not twice
    assert "U+27E8" not in "".join(parts)
    assert "numbered messages above" in text_of(messages[len(parts)])
    assert pending["input"]["content"] == content


@pytest.mark.parametrize(
    ("overtaking", "said"),
    [
        (False, "No approval channel could reach anyone (whatsapp: every WhatsApp message failed"),
        # Each report reaches the server before it knows the message's SID.
        (True, f"{ALICE}: message failed (Twilio error 63015); {BOB}: message failed (Twilio error 63015)"),
    ],
)
async def test_when_every_delivery_fails_the_request_is_denied_at_once(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, overtaking: bool, said: str
) -> None:
    fake.fail_delivery(to=ALICE, error_code=63015)
    fake.fail_delivery(to=BOB, error_code=63015)
    fake.callbacks_before_response = overtaking
    server = start_whatsapp()
    async with server.mcp() as mcp:
        result = await asyncio.wait_for(
            mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}), timeout=20
        )
    answer = json.loads(result.content[0].text)
    assert answer["behavior"] == "deny"
    assert said in answer["message"]


async def test_a_twilio_error_when_sending_denies_at_once(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    fake.fail_sends(20003, http_status=401, times=None)
    server = start_whatsapp()
    async with server.mcp() as mcp:
        result = await asyncio.wait_for(
            mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}), timeout=20
        )
    answer = json.loads(result.content[0].text)
    assert answer["behavior"] == "deny"
    assert "No approval channel could reach anyone" in answer["message"]
    assert "Twilio error 20003" in answer["message"]


async def test_a_refused_template_falls_back_to_plain_text(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    template = make_template(fake)
    fake.refuse_templates(63016)
    server = start_whatsapp(TWILIO_CONTENT_SID=template)
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
        pending = await wait_for_pending(api)
        plain = [m for m in await sent_to(fake, ALICE) if m.content_sid is None]
        call.cancel()
    assert plain
    assert f"Reply APPROVE {pending['id']}" in text_of(plain[0])


async def test_a_thousand_hostile_webhooks_change_nothing_and_never_500(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    server = start_whatsapp()
    rng = random.Random(1)
    async with server.mcp() as mcp, server.api() as api, httpx.AsyncClient() as http:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
        pending = await wait_for_pending(api)
        good = fake.inbound_message(from_=ALICE, body=f"APPROVE {pending['id']}")
        statuses: list[int] = []
        for i in range(1000):
            kind = i % 5
            if kind == 0:
                hostile = good.forged()
            elif kind == 1:
                hostile = good.unsigned()
            elif kind == 2:
                hostile = fake.inbound_message(from_=MALLORY, body=f"APPROVE {pending['id']}")
            elif kind == 3:
                junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
                hostile = fake.raw_webhook(junk, signature="" if i % 2 else "bm9wZQ==")
            else:
                hostile = good.as_account("AC" + f"{i:032x}", "someone-elses-token")
            statuses.append((await fake.deliver(hostile, client=http)).status_code)
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        call.cancel()
    assert all(400 <= status < 500 or status == 200 for status in statuses)
    assert statuses.count(200) == 200  # the signed messages from a non-approver: acknowledged, ignored
    assert (row["status"], row["answers"]) == ("pending", [])
