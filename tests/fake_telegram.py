"""A local fake of Telegram's Bot API and of its webhook deliveries, for the Telegram channel.

The fake serves, on one 127.0.0.1 port from a background thread, the Bot API methods the channel uses, in
Telegram's wire format (https://core.telegram.org/bots/api#making-requests), so that a real client
(python-telegram-bot's `Bot` with `base_url=fake.base_url + "/bot"`) can be pointed at it:

* `GET|POST /bot<token>/<method>`, the method's name in any case; parameters in the query string, in an
  `application/x-www-form-urlencoded` or `multipart/form-data` body (every value a string; objects such as
  `reply_markup` JSON-serialized) or in an `application/json` body;
* an answer is `{"ok": true, "result": …}` (and a `description` where Telegram gives one), a refusal
  `{"ok": false, "error_code": N, "description": "…"}` with HTTP status N (429 also carries
  `"parameters": {"retry_after": s}`);
* a token of the wrong shape, or an unknown method: 404 `Not Found`; a well-formed token that is not the bot's:
  401 `Unauthorized`.

Methods: getMe, sendMessage (inline keyboards only; a text of more than 4,096 UTF-16 code units is refused with
`Bad Request: message is too long`, as Telegram counts), editMessageText (without `reply_markup` the keyboard
goes, as on Telegram), editMessageReplyMarkup, answerCallbackQuery (once per query, within `callback_timeout`),
setWebhook (HTTPS on ports 80/88/443/8443, `secret_token` of 1-256 `A-Za-z0-9_-`), getWebhookInfo, deleteWebhook.

People: Telegram lets a bot write to a user only once the user has started it: `fake.add_user(id, "alice")`;
other chats answer `400 Bad Request: chat not found`, a user who blocked the bot (`fake.block(id)`)
`403 Forbidden: bot was blocked by the user`.

Updates: Telegram POSTs each update as JSON to the webhook's URL with the `X-Telegram-Bot-Api-Secret-Token`
header. The webhook's URL is public (`https://approvals.example.test/telegram-webhook`), so
`fake.route_webhooks_to(server_url)` says which loopback origin stands for it. Builders return a frozen
`Update` (`fake.press(user_id, message, "Approve")`: a callback_query from that user on a button of that
message; `fake.callback(...)`: any data, as a modified client may send; `fake.text(user_id, "/start")`);
variants `.without_secret()`, `.with_secret("…")`; delivering the same `Update` twice is a replay (same
update_id and callback query id). `await fake.deliver(update)` / `fake.deliver_sync(update)` return the
server's `WebhookResponse`; a failed delivery is recorded in getWebhookInfo (`last_error_message`,
`pending_update_count`) as Telegram records it.

Failures: `fake.fail("sendMessage", 502, "Bad Gateway")`, `fake.fail(…, 429, …, retry_after=3)`,
`fake.hang("sendMessage", 30)`, `fake.clear_failures()`, `fake.refuse_connections()` / `accept_connections()`.

Not modelled (refused or left out, never faked): other reply markups than inline keyboards, inline messages
(`inline_message_id`), files, getUpdates, the resolution of the webhook's host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fake_twilio import LoopbackFake, LoopbackServer, NonLoopbackError, WebhookResponse, is_loopback_url

__all__ = [
    "DEFAULT_TOKEN",
    "SECRET_HEADER",
    "ApiCall",
    "CallbackAnswer",
    "Delivery",
    "FakeTelegram",
    "Sent",
    "Update",
    "WebhookState",
]

DEFAULT_TOKEN = "7000000001:AAF4kE-telegram-fake-token-0123456789"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT_LIMIT = 4096  # UTF-16 code units, after entities parsing (the fake parses none)
CALLBACK_DATA_LIMIT = 64  # bytes
ANSWER_TEXT_LIMIT = 200
WEBHOOK_PORTS = (80, 88, 443, 8443)
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)


class TelegramError(Exception):
    """A refusal, answered as Telegram answers it."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {description}")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# -- records ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """One request to the Bot API and what the fake answered."""

    method: str
    params: dict[str, Any]
    """As sent: JSON values, or the strings of a form."""
    content_type: str
    status_code: int
    answer: dict[str, Any]


@dataclass
class Sent:
    """A message in a chat: sent by the bot (`from_bot`) or by the user. Edited in place; `history` keeps what each
    version said, first to last."""

    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None
    from_bot: bool
    date: int
    edit_date: int | None = None
    history: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """(text, callback_data) of each callback button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(b["text"], b["callback_data"]) for row in rows for b in row if "callback_data" in b]


@dataclass(frozen=True)
class CallbackAnswer:
    callback_query_id: str
    text: str | None
    show_alert: bool


@dataclass
class WebhookState:
    """What setWebhook set, and what getWebhookInfo reports."""

    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    pending: set[int] = field(default_factory=set)
    last_error_date: int | None = None
    last_error_message: str | None = None

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending),
        }
        if self.url:
            info["max_connections"] = self.max_connections
            if self.allowed_updates is not None:
                info["allowed_updates"] = self.allowed_updates
        if self.last_error_date is not None:
            info["last_error_date"] = self.last_error_date
            info["last_error_message"] = self.last_error_message
        return info


@dataclass(frozen=True)
class Update:
    """An update as Telegram POSTs it: `payload` as JSON to `deliver_to` (the loopback stand-in for `url`), with
    the secret header when `secret` is set."""

    payload: Mapping[str, Any]
    url: str
    deliver_to: str
    secret: str | None

    @property
    def update_id(self) -> int:
        return int(self.payload["update_id"])

    @property
    def callback_query_id(self) -> str | None:
        query = self.payload.get("callback_query")
        return None if query is None else str(query["id"])

    def without_secret(self) -> Update:
        return replace(self, secret=None)

    def with_secret(self, secret: str) -> Update:
        return replace(self, secret=secret)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            headers[SECRET_HEADER] = self.secret
        return headers


@dataclass(frozen=True)
class Delivery:
    update: Update
    response: WebhookResponse | None
    error: str | None


@dataclass
class _Failure:
    method: str
    code: int
    description: str
    times: int | None
    retry_after: int | None


# -- the fake --------------------------------------------------------------------------------------------------


class FakeTelegram(LoopbackFake):
    """The Bot API of one bot on a free loopback port, and the Telegram side of its webhook."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        username: str = "approvals_fake_bot",
        first_name: str = "Approvals",
        callback_timeout: float = 15.0,
    ) -> None:
        if not _TOKEN.match(token):
            raise ValueError("a bot token is <bot id>:<secret>")
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.username, self.first_name = username, first_name
        self.callback_timeout = callback_timeout
        self.webhook = WebhookState()
        self._lock = threading.Lock()
        self._users: dict[int, dict[str, Any]] = {}
        self._blocked: set[int] = set()
        self._chats: dict[int, list[Sent]] = {}
        self._queries: dict[str, tuple[float, bool]] = {}  # callback query id → (when sent, answered)
        self._calls: list[ApiCall] = []
        self._answers: list[CallbackAnswer] = []
        self._deliveries: list[Delivery] = []
        self._failures: list[_Failure] = []
        self._hangs: dict[str, tuple[float, int | None]] = {}  # method → (seconds, times)
        self._holding: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []  # hangs that clear_failures ends
        self._hung: list[str] = []
        self._update_id = 500_000_000
        self._local_origin: str | None = None
        self._server = LoopbackServer(
            Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])]), name="fake-telegram"
        )

    # -- the bot -------------------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return {"TELEGRAM_BOT_TOKEN": self.token, "TELEGRAM_API_BASE_URL": self.base_url, **extra}

    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    # -- people ----------------------------------------------------------------------------------------------

    def add_user(self, user_id: int, first_name: str = "Approver", username: str | None = None) -> None:
        """A user who has started the bot: the bot may write to them."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        if username:
            user["username"] = username
        with self._lock:
            self._users[user_id] = user
            self._chats.setdefault(user_id, [])

    def block(self, user_id: int) -> None:
        with self._lock:
            self._blocked.add(user_id)

    # -- records ---------------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method == method]

    @property
    def sent(self) -> list[Sent]:
        """Every message the bot sent, in order, as it is now (edits applied)."""
        with self._lock:
            messages = [m for chat in self._chats.values() for m in chat if m.from_bot]
        return sorted(messages, key=lambda m: (m.date, m.chat_id, m.message_id))

    def messages(self, chat_id: int) -> list[Sent]:
        with self._lock:
            return list(self._chats.get(chat_id, []))

    def message(self, chat_id: int, message_id: int) -> Sent:
        with self._lock:
            return self._find(chat_id, message_id)

    @property
    def callback_answers(self) -> list[CallbackAnswer]:
        with self._lock:
            return list(self._answers)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def hung(self) -> list[str]:
        """The methods whose calls are being held by `hang`, one entry a call."""
        with self._lock:
            return list(self._hung)

    # -- failures --------------------------------------------------------------------------------------------

    def fail(
        self, method: str, code: int, description: str, *, times: int | None = 1, retry_after: int | None = None
    ) -> None:
        """The next `times` calls of `method` (None: all) are refused with this error."""
        with self._lock:
            self._failures.append(_Failure(method.lower(), code, description, times, retry_after))

    def hang(self, method: str, seconds: float, *, times: int | None = None) -> None:
        """Calls of `method` are answered only after `seconds` (or at `clear_failures`)."""
        with self._lock:
            self._hangs[method.lower()] = (seconds, times)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._hangs.clear()
            holding, self._holding = self._holding, []
        for loop, released in holding:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(released.set)

    def refuse_connections(self) -> None:
        """Stop listening, keeping the port: every connection is refused until `accept_connections`."""
        self._server.stop()

    def accept_connections(self) -> None:
        self._server.start()

    # -- updates ---------------------------------------------------------------------------------------------

    def route_webhooks_to(self, local_origin: str) -> None:
        """The webhook's public origin is reached at `local_origin` (a loopback origin)."""
        if not is_loopback_url(local_origin):
            raise NonLoopbackError(f"refusing non-loopback delivery origin {local_origin!r}")
        self._local_origin = local_origin.rstrip("/")

    def press(self, user_id: int, message: Sent, button: str) -> Update:
        """`user_id` presses the callback button labelled `button` on `message` (as it is now)."""
        current = self.message(message.chat_id, message.message_id)
        data = dict(current.buttons).get(button)
        if data is None:
            raise ValueError(f"no button {button!r} on message {message.message_id}: {current.buttons}")
        return self.callback(user_id, current, data)

    def callback(self, user_id: int, message: Sent, data: str) -> Update:
        """A callback_query from `user_id` on `message` with any `data` (a modified client can send any)."""
        query_id = str(secrets.randbits(62))
        with self._lock:
            self._queries[query_id] = (time.monotonic(), False)
        query = {
            "id": query_id,
            "from": self._user(user_id),
            "message": self._message_json(message),
            "chat_instance": str(-(abs(hash((self.bot_id, message.chat_id))) % 10**18)),
            "data": data,
        }
        return self._update({"callback_query": query})

    def text(self, user_id: int, text: str) -> Update:
        """A message `text` from `user_id` in their private chat with the bot."""
        if user_id not in self._users:
            self.add_user(user_id, f"User {user_id}")  # writing to a bot starts it
        with self._lock:
            chat = self._chats[user_id]
            message = Sent(user_id, self._next_id(chat), text, None, from_bot=False, date=int(time.time()))
            chat.append(message)
        payload = self._message_json(message) | {"from": self._user(user_id)}
        if text.startswith("/"):
            payload["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
        return self._update({"message": payload})

    async def deliver(self, update: Update, *, client: httpx.AsyncClient | None = None) -> WebhookResponse:
        """POST `update` as Telegram does; pass a shared `client` for many deliveries."""
        if client is None:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as own:
                return await self.deliver(update, client=own)
        try:
            answer = await client.post(update.deliver_to, json=dict(update.payload), headers=update.headers())
        except httpx.HTTPError as exc:
            self._record(update, None, f"{type(exc).__name__}: {exc}")
            raise
        return self._record(update, answer, None)

    def deliver_sync(self, update: Update) -> WebhookResponse:
        with httpx.Client(trust_env=False, timeout=30) as client:
            try:
                answer = client.post(update.deliver_to, json=dict(update.payload), headers=update.headers())
            except httpx.HTTPError as exc:
                self._record(update, None, f"{type(exc).__name__}: {exc}")
                raise
        return self._record(update, answer, None)

    def _update(self, body: dict[str, Any]) -> Update:
        with self._lock:
            url, secret = self.webhook.url, self.webhook.secret_token
            self._update_id += 1
            update_id = self._update_id
        if not url:
            raise RuntimeError("no webhook is set: Telegram would keep the update for getUpdates")
        if self._local_origin is None:
            raise RuntimeError("route_webhooks_to(server_url) first: where the webhook's public URL is served")
        public = httpx.URL(url)
        deliver_to = self._local_origin + public.raw_path.decode()
        return Update({"update_id": update_id, **body}, url, deliver_to, secret)

    def _record(self, update: Update, answer: httpx.Response | None, error: str | None) -> WebhookResponse:
        """Record a delivery, and its failure as getWebhookInfo reports one."""
        response = WebhookResponse(0, {}, b"")
        if answer is not None:
            headers = {k.lower(): v for k, v in answer.headers.items()}
            response = WebhookResponse(answer.status_code, headers, answer.content)
            if not 200 <= answer.status_code <= 299:
                error = f"Wrong response from the webhook: {answer.status_code} {answer.reason_phrase}"
        with self._lock:
            self._deliveries.append(Delivery(update, response if answer is not None else None, error))
            if error is None:
                self.webhook.pending.discard(update.update_id)
            else:
                self.webhook.pending.add(update.update_id)
                self.webhook.last_error_date, self.webhook.last_error_message = int(time.time()), error
        return response

    def _user(self, user_id: int) -> dict[str, Any]:
        with self._lock:
            return dict(self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"})

    def _message_json(self, message: Sent) -> dict[str, Any]:
        chat_user = self._user(message.chat_id)
        chat = {"id": message.chat_id, "first_name": chat_user["first_name"], "type": "private"}
        if "username" in chat_user:
            chat["username"] = chat_user["username"]
        body: dict[str, Any] = {
            "message_id": message.message_id,
            "from": self.bot_user() if message.from_bot else chat_user,
            "chat": chat,
            "date": message.date,
            "text": message.text,
        }
        if message.edit_date is not None:
            body["edit_date"] = message.edit_date
        if message.reply_markup is not None:
            body["reply_markup"] = message.reply_markup
        return body

    # -- the API ---------------------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
        params: dict[str, Any] = {}
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        method = match.group(2) if match else path
        try:
            if match is None or not _TOKEN.match(match.group(1)):
                raise TelegramError(404, "Not Found")
            if match.group(1) != self.token:
                raise TelegramError(401, "Unauthorized")
            handler = self._methods().get(method.lower())
            if handler is None:
                raise TelegramError(404, "Not Found")
            method = handler.__name__.removeprefix("_api_")
            params = await _params(request, content_type)
            await self._maybe_hang(method)
            self._maybe_fail(method)
            result = handler(params)
        except TelegramError as exc:
            answer = exc.body()
        else:
            answer = {"ok": True, "result": result[0]}
            if result[1]:
                answer["description"] = result[1]
        status = 200 if answer["ok"] else int(answer["error_code"])
        with self._lock:
            self._calls.append(ApiCall(method, params, content_type, status, answer))
        return JSONResponse(answer, status_code=status)

    def _methods(self) -> dict[str, Any]:
        handlers = (
            self._api_getMe,
            self._api_sendMessage,
            self._api_editMessageText,
            self._api_editMessageReplyMarkup,
            self._api_answerCallbackQuery,
            self._api_setWebhook,
            self._api_getWebhookInfo,
            self._api_deleteWebhook,
        )
        return {h.__name__.removeprefix("_api_").lower(): h for h in handlers}

    async def _maybe_hang(self, method: str) -> None:
        with self._lock:
            rule = self._hangs.get(method.lower())
            if rule is None:
                return
            seconds, times = rule
            if times is not None:
                if times <= 1:
                    del self._hangs[method.lower()]
                else:
                    self._hangs[method.lower()] = (seconds, times - 1)
            released = asyncio.Event()
            self._holding.append((asyncio.get_running_loop(), released))
            self._hung.append(method)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), seconds)

    def _maybe_fail(self, method: str) -> None:
        with self._lock:
            for failure in self._failures:
                if failure.method == method.lower():
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            self._failures.remove(failure)
                    raise TelegramError(failure.code, failure.description, failure.retry_after)

    def _api_getMe(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        return self.bot_user() | {"can_join_groups": True, "can_read_all_group_messages": False}, None

    def _api_sendMessage(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat_id = _chat_id(params)
        text = _text(params)
        markup = _keyboard(params)
        with self._lock:
            if chat_id not in self._users:
                raise _bad("chat not found")
            if chat_id in self._blocked:
                raise TelegramError(403, "Forbidden: bot was blocked by the user")
            chat = self._chats[chat_id]
            message = Sent(chat_id, self._next_id(chat), text, markup, from_bot=True, date=int(time.time()))
            message.history.append((text, markup))
            chat.append(message)
        return self._message_json(message), None

    def _api_editMessageText(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        text = _text(params)
        return self._edit(params, text, _keyboard(params)), None

    def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        return self._edit(params, None, _keyboard(params)), None

    def _edit(self, params: dict[str, Any], text: str | None, markup: dict[str, Any] | None) -> dict[str, Any]:
        if "inline_message_id" in params:
            raise _bad("the fake does not model inline messages")
        chat_id = _chat_id(params)
        message_id = _int(params, "message_id", "message identifier is not specified")
        with self._lock:
            message = self._find(chat_id, message_id)
            if not message.from_bot:
                raise _bad("message can't be edited")
            new_text = message.text if text is None else text
            if new_text == message.text and markup == message.reply_markup:
                raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
            message.text, message.reply_markup, message.edit_date = new_text, markup, int(time.time())
            message.history.append((new_text, markup))
        return self._message_json(message)

    def _api_answerCallbackQuery(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        query_id = str(params.get("callback_query_id") or "")
        text = params.get("text")
        if text is not None and utf16_length(str(text)) > ANSWER_TEXT_LIMIT:
            raise _bad("MESSAGE_TOO_LONG")
        with self._lock:
            sent_at, answered = self._queries.get(query_id, (0.0, True))
            if answered or time.monotonic() - sent_at > self.callback_timeout:
                raise TelegramError(400, QUERY_TOO_OLD)
            self._queries[query_id] = (sent_at, True)
            alert = _bool(params.get("show_alert"))
            self._answers.append(CallbackAnswer(query_id, None if text is None else str(text), alert))
        return True, None

    def _api_setWebhook(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        url = str(params.get("url") or "")
        if not url:
            return self._api_deleteWebhook(params)
        parsed = httpx.URL(url)
        if parsed.scheme != "https":
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if (parsed.port or 443) not in WEBHOOK_PORTS:
            raise _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.match(str(secret)):
            raise _bad("secret token contains unallowed characters")
        allowed = _json(params, "allowed_updates", "can't parse allowed updates")
        with self._lock:
            same = self.webhook.url == url and self.webhook.secret_token == secret
            self.webhook.url, self.webhook.secret_token = url, None if secret is None else str(secret)
            if allowed is not None:
                self.webhook.allowed_updates = list(allowed)
            if "max_connections" in params:
                self.webhook.max_connections = _int(params, "max_connections", "bad max_connections")
            if _bool(params.get("drop_pending_updates")):
                self.webhook.pending.clear()
        return True, "Webhook is already set" if same else "Webhook was set"

    def _api_getWebhookInfo(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        with self._lock:
            return self.webhook.info(), None

    def _api_deleteWebhook(self, params: dict[str, Any]) -> tuple[Any, str | None]:
        with self._lock:
            was = bool(self.webhook.url)
            self.webhook.url, self.webhook.secret_token = "", None
            if _bool(params.get("drop_pending_updates")):
                self.webhook.pending.clear()
        return True, "Webhook was deleted" if was else "Webhook is already deleted"

    def _find(self, chat_id: int, message_id: int) -> Sent:
        for message in self._chats.get(chat_id, []):
            if message.message_id == message_id:
                return message
        raise _bad("message to edit not found")

    @staticmethod
    def _next_id(chat: list[Sent]) -> int:
        return chat[-1].message_id + 1 if chat else 1


# -- parameters ------------------------------------------------------------------------------------------------


async def _params(request: Request, content_type: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if content_type == "application/json":
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise _bad("can't parse JSON object") from None
        if not isinstance(body, dict):
            raise _bad("can't parse JSON object")
        params.update(body)
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise _bad("the fake does not model file uploads")
            params[key] = value
    return params


def _int(params: dict[str, Any], name: str, missing: str) -> int:
    value = params.get(name)
    if isinstance(value, bool) or value is None or value == "":
        raise _bad(missing)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid {name} specified") from None


def _chat_id(params: dict[str, Any]) -> int:
    value = params.get("chat_id")
    if isinstance(value, str) and value.startswith("@"):
        raise _bad("chat not found")  # the fake has no channels or public groups
    return _int(params, "chat_id", "chat_id is empty")


def _text(params: dict[str, Any]) -> str:
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _bad("message text is empty")
    if "parse_mode" in params:
        raise _bad("the fake parses no entities: send plain text")
    if utf16_length(text) > TEXT_LIMIT:
        raise _bad("message is too long")
    return text


def _bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _json(params: dict[str, Any], name: str, unparsable: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(unparsable) from None
    return value


def _keyboard(params: dict[str, Any]) -> dict[str, Any] | None:
    markup = _json(params, "reply_markup", "can't parse reply keyboard markup JSON object")
    if markup is None:
        return None
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        raise _bad("the fake models inline keyboards only")
    rows = markup["inline_keyboard"]
    for row in rows:
        if not isinstance(row, list):
            raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not (isinstance(data, str) and 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT):
                raise _bad("BUTTON_DATA_INVALID")
            if data is None and "url" not in button:
                raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
    return {"inline_keyboard": [[dict(button) for button in row] for row in rows]} if rows else None
