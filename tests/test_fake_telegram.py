"""The Telegram fake is faithful: python-telegram-bot's `Bot` talks to it, and its updates parse as Telegram's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram import Update as PtbUpdate
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from tests.fake_telegram import SECRET_HEADER, FakeTelegram
from tests.fake_twilio import LoopbackServer, NonLoopbackError

ALICE, BOB = 111_222_333, 444_555_666
PUBLIC_WEBHOOK = "https://approvals.example.test/telegram-webhook"
SECRET = "s3cret_-Token"
KEYBOARD = InlineKeyboardMarkup(
    [[InlineKeyboardButton("Approve", callback_data="a:r1"), InlineKeyboardButton("Deny", callback_data="d:r1")]]
)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Records every POST; answers `status` (200 unless a test changes it)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.server = LoopbackServer(Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])]))

    async def _handle(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append(Received(request.url.path, headers, await request.body()))
        return Response(status_code=self.status)


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as running:
        running.add_user(ALICE, "Alice", "alice")
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiving = Receiver()
    with receiving.server:
        yield receiving


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=f"{fake.base_url}/bot", request=HTTPXRequest(read_timeout=2.0)) as client:
        yield client  # `async with` called getMe: the token was accepted


async def hooked(fake: FakeTelegram, bot: Bot, receiver: Receiver) -> None:
    await bot.set_webhook(PUBLIC_WEBHOOK, secret_token=SECRET)
    fake.route_webhooks_to(receiver.server.base_url)


async def test_get_me_and_tokens(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (fake.bot_id, True, fake.username)
    async with HTTPXRequest() as request:  # a Bot whose getMe failed is never initialised, so never shut down
        wrong = Bot(fake.token.split(":")[0] + ":AAnother-secret", base_url=f"{fake.base_url}/bot", request=request)
        with pytest.raises(InvalidToken, match="Unauthorized"):
            await wrong.get_me()
        misshapen = Bot("not-a-token", base_url=f"{fake.base_url}/bot", request=request)
        with pytest.raises(InvalidToken, match="Not Found"):
            await misshapen.get_me()
    assert [c.status_code for c in fake.calls_to("getMe")][-2:] == [401, 404]


async def test_send_message_with_an_inline_keyboard(fake: FakeTelegram, bot: Bot) -> None:
    first = await bot.send_message(ALICE, "Approve `ls`?", reply_markup=KEYBOARD)
    second = await bot.send_message(ALICE, "and this")
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.chat.id == ALICE
    assert first.from_user is not None
    assert first.from_user.id == fake.bot_id
    assert first.reply_markup == KEYBOARD  # Telegram's Message echoes the keyboard back
    recorded = fake.message(ALICE, 1)
    assert recorded.text == "Approve `ls`?"
    assert recorded.buttons == [("Approve", "a:r1"), ("Deny", "d:r1")]
    call = fake.calls_to("sendMessage")[0]
    assert call.content_type == "application/x-www-form-urlencoded"  # PTB's wire format: JSON inside a form
    assert json.loads(call.params["reply_markup"])["inline_keyboard"][0][0]["callback_data"] == "a:r1"


async def test_refusals_are_telegrams(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(BOB, "hi")  # Bob never started the bot
    fake.add_user(BOB, "Bob")
    fake.block(BOB)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await bot.send_message(BOB, "hi")
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(ALICE, "  ")
    too_long_data = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(ALICE, "hi", reply_markup=too_long_data)
    assert fake.sent == []


async def test_the_4096_limit_counts_utf16_code_units(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(ALICE, "x" * 4096)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE, "x" * 4097)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE, "😀" * 2049)  # 2,049 characters, 4,098 code units
    assert [len(m.text) for m in fake.sent] == [4096]


async def test_edits(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "Approve?", reply_markup=KEYBOARD)
    edited = await bot.edit_message_text("✅ Approved", chat_id=ALICE, message_id=sent.message_id)
    assert isinstance(edited, type(sent))
    assert edited.edit_date is not None
    message = fake.message(ALICE, sent.message_id)
    assert (message.text, message.reply_markup) == ("✅ Approved", None)  # no reply_markup: the keyboard goes
    assert [text for text, _ in message.history] == ["Approve?", "✅ Approved"]
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("✅ Approved", chat_id=ALICE, message_id=sent.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=99)
    other = await bot.send_message(ALICE, "Approve?", reply_markup=KEYBOARD)
    await bot.edit_message_reply_markup(chat_id=ALICE, message_id=other.message_id)
    assert fake.message(ALICE, other.message_id).buttons == []
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(chat_id=ALICE, message_id=other.message_id)


async def test_webhook_lifecycle(fake: FakeTelegram, bot: Bot) -> None:
    assert (await bot.get_webhook_info()).url == ""
    with pytest.raises(BadRequest, match="Bad webhook: an https url must be provided"):
        await bot.set_webhook("http://approvals.example.test/telegram-webhook")
    with pytest.raises(BadRequest, match="ports 80, 88, 443 or 8443"):
        await bot.set_webhook("https://approvals.example.test:8000/telegram-webhook")
    with pytest.raises(BadRequest, match="Secret token contains unallowed characters"):
        await bot.set_webhook(PUBLIC_WEBHOOK, secret_token=fake.token)  # a ':' is not allowed
    assert await bot.set_webhook(PUBLIC_WEBHOOK, secret_token=SECRET, allowed_updates=["message", "callback_query"])
    assert fake.calls_to("setWebhook")[-1].answer["description"] == "Webhook was set"
    assert (fake.webhook.url, fake.webhook.secret_token) == (PUBLIC_WEBHOOK, SECRET)
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.allowed_updates) == (
        PUBLIC_WEBHOOK,
        0,
        ("message", "callback_query"),
    )
    assert await bot.delete_webhook()
    assert fake.webhook.url == ""
    assert fake.webhook.secret_token is None


async def test_a_button_press_reaches_the_webhook_and_parses(fake: FakeTelegram, bot: Bot, receiver: Receiver) -> None:
    await hooked(fake, bot, receiver)
    sent = fake.message(ALICE, (await bot.send_message(ALICE, "Approve?", reply_markup=KEYBOARD)).message_id)
    update = fake.press(ALICE, sent, "Approve")
    response = await fake.deliver(update)
    assert response.status_code == 200
    got = receiver.received[-1]
    assert got.path == "/telegram-webhook"
    assert got.headers[SECRET_HEADER.lower()] == SECRET
    assert got.headers["content-type"] == "application/json"
    parsed = PtbUpdate.de_json(json.loads(got.body), bot)
    query = parsed.callback_query
    assert query is not None
    assert query.data == "a:r1"
    assert query.from_user.id == ALICE
    assert query.message is not None
    assert query.message.message_id == sent.message_id
    assert query.message.chat.id == ALICE
    # The bot answers the query once; again, or an unknown query, is refused as by Telegram.
    assert await bot.answer_callback_query(query.id, text="Approved")
    assert fake.callback_answers[-1].text == "Approved"
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query.id)
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("12345")
    # A replay is the same update, delivered again.
    await fake.deliver(update)
    assert receiver.received[-1].body == got.body


async def test_forged_variants_and_plain_messages(fake: FakeTelegram, bot: Bot, receiver: Receiver) -> None:
    await hooked(fake, bot, receiver)
    sent = fake.message(ALICE, (await bot.send_message(ALICE, "Approve?", reply_markup=KEYBOARD)).message_id)
    await fake.deliver(fake.press(ALICE, sent, "Deny").without_secret())
    assert SECRET_HEADER.lower() not in receiver.received[-1].headers
    await fake.deliver(fake.callback(BOB, sent, "a:other").with_secret("guess"))
    forged = json.loads(receiver.received[-1].body)["callback_query"]
    assert receiver.received[-1].headers[SECRET_HEADER.lower()] == "guess"
    assert (forged["from"]["id"], forged["data"]) == (BOB, "a:other")
    with pytest.raises(ValueError, match="no button"):
        fake.press(ALICE, sent, "Allow for session")
    start = fake.text(BOB, "/start")
    fake.deliver_sync(start)
    message = PtbUpdate.de_json(json.loads(receiver.received[-1].body), bot).message
    assert message is not None
    assert message.text == "/start"
    assert message.from_user is not None
    assert message.from_user.id == BOB
    assert message.entities[0].type == "bot_command"
    assert start.update_id > fake.deliveries[0].update.update_id


async def test_failed_deliveries_show_in_getwebhookinfo(fake: FakeTelegram, bot: Bot, receiver: Receiver) -> None:
    await hooked(fake, bot, receiver)
    receiver.status = 403
    update = fake.text(ALICE, "hello")
    assert (await fake.deliver(update)).status_code == 403
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 1
    assert info.last_error_message == "Wrong response from the webhook: 403 Forbidden"
    receiver.status = 200
    await fake.deliver(update)  # Telegram's retry
    assert (await bot.get_webhook_info()).pending_update_count == 0


def test_update_builders_refuse_what_telegram_would_not_do(fake: FakeTelegram) -> None:
    with pytest.raises(RuntimeError, match="no webhook"):
        fake.text(ALICE, "hi")
    with pytest.raises(NonLoopbackError):
        fake.route_webhooks_to("http://192.0.2.1:8000")


async def test_injected_failures(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail("sendMessage", 502, "Bad Gateway")
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(ALICE, "hi")
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.warns(PTBDeprecationWarning), pytest.raises(RetryAfter):  # PTB 22 warns of retry_after's type
        await bot.send_message(ALICE, "hi")
    assert fake.calls_to("sendMessage")[-1].answer["parameters"] == {"retry_after": 3}
    fake.hang("sendMessage", 30)
    with pytest.raises(TimedOut):
        await bot.send_message(ALICE, "hi", read_timeout=0.3)
    assert fake.hung == ["sendMessage"]
    fake.clear_failures()
    await bot.send_message(ALICE, "hi")
    fake.refuse_connections()
    try:
        with pytest.raises(NetworkError):
            await bot.send_message(ALICE, "hi")
    finally:
        fake.accept_connections()
    await bot.send_message(ALICE, "again")
    # The hung send went through when released, after its client had given up: as on Telegram, a send that timed
    # out may still have reached the chat.
    assert [m.text for m in fake.sent] == ["hi", "hi", "again"]


def test_json_bodies_query_strings_and_unknown_methods(fake: FakeTelegram) -> None:
    base = f"{fake.base_url}/bot{fake.token}"
    with httpx.Client(trust_env=False) as http:
        markup = {"inline_keyboard": [[{"text": "Deny", "callback_data": "d:r2"}]]}
        sent = http.post(f"{base}/sendmessage", json={"chat_id": ALICE, "text": "json", "reply_markup": markup})
        assert sent.status_code == 200
        assert sent.json()["result"]["reply_markup"] == markup
        assert http.get(f"{base}/getWebhookInfo").json() == {
            "ok": True,
            "result": {"url": "", "has_custom_certificate": False, "pending_update_count": 0},
        }
        queried = http.get(f"{base}/sendMessage", params={"chat_id": str(ALICE), "text": "query"}).json()
        assert queried["result"]["message_id"] == 2
        unknown = http.post(f"{base}/launchMissiles")
        assert (unknown.status_code, unknown.json()) == (
            404,
            {"ok": False, "error_code": 404, "description": "Not Found"},
        )
        bad_json = http.post(f"{base}/sendMessage", content=b"[", headers={"content-type": "application/json"})
        assert bad_json.status_code == 400
