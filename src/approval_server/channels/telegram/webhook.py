"""The `/telegram-webhook` entry point: button presses and messages from Telegram.

Every update must carry the webhook's secret in `X-Telegram-Bot-Api-Secret-Token` (compared in constant time):
without it 401, with another 403, and nothing changes. An update applies once (a press's callback query id, a
message's chat and id, are recorded as seen, so a replay on any replica changes nothing). Only configured people
count: the presser's own user id (`from.id`) must be a person's, on a message the server sent to that person's chat
about the request the button names, and the button must be one the server drew for them (see `buttons`). A request
too long to read on the phone is approved only at its link: only Deny is drawn, and an allow is refused here too.

Each press is answered (`answerCallbackQuery`), so the button stops spinning and its presser reads what it did.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from approval_server.bodies import read_body
from approval_server.channels.phone_text import too_long_for_the_phone
from approval_server.channels.plugin import Decisions
from approval_server.channels.telegram.buttons import Buttons
from approval_server.channels.telegram.channel import TelegramChannel
from approval_server.errors import BadRequest, NotDelivered, NotFound, RequestClosed
from approval_server.models import Answer, Remember, Status

logger = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (the header's name)
MAX_BODY = 64 * 1024
INVALID = "This button is not valid here: nothing changed."
HOW_TO_ANSWER = "Answer each request with the buttons under its message, or at its link. Your Telegram user id is {id}."
STRANGERS_TOLD = 1000  # strangers told their user id, remembered so that each is told once (until this many)


class _Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: StrictInt


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message_id: StrictInt
    chat: _Entity
    sender: _Entity | None = Field(default=None, alias="from")
    text: StrictStr | None = None


class _Press(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: StrictStr
    sender: _Entity = Field(alias="from")
    message: _Message | None = None
    data: StrictStr | None = None


class _Update(BaseModel):
    """The parts of a Telegram update the channel reads; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")
    update_id: StrictInt
    callback_query: _Press | None = None
    message: _Message | None = None


class TelegramWebhook:
    def __init__(self, decisions: Decisions, channel: TelegramChannel) -> None:
        self._decisions = decisions
        self._channel = channel
        self._store = decisions.store
        self._secret = channel.config.webhook_secret.encode()
        self._bot_id = channel.config.bot_id
        self._told: set[int] = set()

    async def handle(self, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            logger.warning("refused a Telegram update without the secret token header")
            return PlainTextResponse("missing secret token", status_code=401)
        if not hmac.compare_digest(given.encode(), self._secret):
            logger.warning("refused a Telegram update with a wrong secret token")
            return PlainTextResponse("wrong secret token", status_code=403)
        body = await read_body(request, MAX_BODY)
        try:
            update = _Update.model_validate_json(body)
        except ValidationError:
            raise BadRequest("the body is not a Telegram update") from None
        # Applied once, by what Telegram keeps unique (a press's query id; a message's chat and id), not by the
        # update_id: Telegram picks that at random again after a week without updates, so an old one can recur.
        if update.callback_query is not None:
            query = update.callback_query
            if await self._first(f"callback:{query.id}"):
                await self._press(query)
        elif update.message is not None:
            message = update.message
            if await self._first(f"message:{message.chat.id}:{message.message_id}"):
                await self._message(message)
        return Response(status_code=200)

    async def _first(self, what: str) -> bool:
        if await self._store.first_sighting(f"telegram:{self._bot_id}:{what}", datetime.now(UTC)):
            return True
        logger.info("ignored a repeated Telegram update (%s)", what)
        return False

    async def _press(self, query: _Press) -> None:
        channel = self._channel
        user = query.sender.id
        person = channel.people.by_identity(channel.name, str(user))
        if person is None:
            logger.warning("ignored a Telegram button pressed by user %s, who is no configured person", user)
            await channel.answer(query.id, "Only the people configured on this server can answer its requests.")
            return
        press = Buttons.parse(query.data)
        message = query.message
        if press is None or message is None or message.chat.id != user:
            await self._invalid(query.id, person.name, "a button that is not the server's")
            return
        sent = await self._store.outbound(f"telegram:{user}:{message.message_id}")
        row = await self._store.get(press.request_id)
        if sent is None or sent.request_id != press.request_id or row is None:
            await self._invalid(query.id, person.name, "a button on no message sent for its request")
            return
        if not channel.buttons.valid(press, row, user):
            await self._invalid(query.id, person.name, f"a button not drawn for them on request {row.id}")
            return
        if row.status is not Status.PENDING:
            await channel.answer(query.id, f"Request {row.id} is already {row.status.value}: nothing changed.")
            await channel.show_outcome(row, user, message.message_id)
            return
        if press.verb != "deny" and too_long_for_the_phone(row):
            logger.info("refused a Telegram approval of request %s from %s: too long for the phone", row.id, user)
            await channel.answer(query.id, f"Request {row.id} can be approved only at its link, which shows it whole.")
            return
        status = Status.DENIED if press.verb == "deny" else Status.ALLOWED
        remember = Remember("session") if press.verb == "session" else None
        answer = Answer(status, person.name, channel.name, remember=remember)
        try:
            await self._decisions.decide(row.id, answer)
        except RequestClosed:
            closed = await self._store.get(row.id)
            state = closed.status.value if closed else "closed"
            await channel.answer(query.id, f"Request {row.id} is already {state}: nothing changed.")
            return
        except NotDelivered as exc:
            await channel.answer(query.id, f"Nothing changed: {exc.detail}.")
            return
        except NotFound:
            await self._invalid(query.id, person.name, f"a button for request {row.id}, which is gone")
            return
        done = {"approve": "✅ Approved.", "deny": "❌ Denied.", "session": "✅ Approved, and again for this session."}
        await channel.answer(query.id, done[press.verb])

    async def _invalid(self, query_id: str, name: str, what: str) -> None:
        logger.warning("refused a Telegram button press by %s: %s", name, what)
        await self._channel.answer(query_id, INVALID)

    async def _message(self, message: _Message) -> None:
        """A message to the bot: a person is told how to answer; a stranger's /start is told their user id, once."""
        user = message.sender.id if message.sender else None
        if user is None or message.chat.id != user:
            return  # not a private chat with a person: nobody to tell
        if self._channel.people.by_identity(self._channel.name, str(user)) is not None:
            await self._channel.tell(user, HOW_TO_ANSWER.format(id=user))
            return
        logger.info("a Telegram message from user %s, who is no configured person", user)
        if (message.text or "").split(" ")[0] != "/start" or user in self._told:
            return
        if len(self._told) >= STRANGERS_TOLD:
            self._told.clear()
        self._told.add(user)
        await self._channel.tell(
            user,
            f"Your Telegram user id is {user}. This bot answers only the people its server knows: to be one, ask its "
            f'owner to add telegram = "{user}" to your entry in the people file.',
        )
