"""The Telegram channel's sends: each person with a Telegram user id gets each request in their chat with the bot, in
the words WhatsApp uses (`phone_text`), with buttons to approve, deny or allow for the session; when the request
closes, that message is edited to say how it ended and its buttons go.

The Bot API is spoken through python-telegram-bot's `Bot` alone (no `Application`: updates arrive at the server's own
route, see `webhook`). It types the methods and maps Telegram's refusals to exceptions (`BadRequest`, `Forbidden`,
`TimedOut`, `NetworkError`), and its one dependency, httpx, is already the server's HTTP client. aiogram, the other
well-kept library, pins pydantic below the version the server uses; plain httpx would mean writing that mapping by
hand. Every call is bounded by `send_timeout`, all included: a send that fails or times out is a failed delivery.

Each request's message is recorded in the store as sent to `<chat>:<message id>` (a Telegram message's address),
so that a press on its buttons is bound to that very message, and `withdraw` finds every message to edit, on any
replica and after a restart. Texts are sent plain (no parse mode), so nothing in a request is taken for formatting,
and without link previews, so Telegram never fetches a person's signed link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from approval_server.channels.base import Channel, Delivery
from approval_server.channels.phone_text import RequestText, link_footer, request_text, where
from approval_server.channels.plugin import ChannelDeps
from approval_server.channels.telegram.buttons import LABELS, Buttons, derive
from approval_server.channels.telegram.settings import TelegramConfig
from approval_server.decision import describe_duration
from approval_server.errors import StoreError
from approval_server.grants import Grant, remembered_text
from approval_server.models import ApprovalRequest, Status
from approval_server.render import monospace, visible
from approval_server.store.outbox import Outbox

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
T = TypeVar("T")


class TelegramChannel(Channel):
    name = "telegram"

    def __init__(self, config: TelegramConfig, deps: ChannelDeps) -> None:
        self.config = config
        self.store = deps.store
        self.people = deps.people
        self._deps = deps
        self.outbox = Outbox(deps.store, self.name)
        self.buttons = Buttons(derive(config.token, "buttons"))
        timeout = config.send_timeout
        self._request = HTTPXRequest(
            connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout, pool_timeout=timeout
        )
        self.bot = Bot(config.token, base_url=f"{config.api_base_url}/bot", request=self._request)

    async def notify(self, request: ApprovalRequest) -> Delivery:
        chats = list(self.config.chats)
        if not chats:
            return Delivery(reached=False, detail="no person has a Telegram user id")
        results = await asyncio.gather(*(self._ask(chat, request) for chat in chats))
        failures = [detail for detail in results if detail]
        if len(failures) == len(chats):
            return Delivery(reached=False, detail="; ".join(failures))
        return Delivery(reached=True, detail=f"sent to {len(chats) - len(failures)} person(s)")

    async def _ask(self, chat: str, request: ApprovalRequest) -> str | None:
        """Send the request to one person; returns why it failed, or None."""
        name = self.config.chats[chat]
        text = request_text(request, link_footer(request, self._deps.link(request.id, name)))
        try:
            for part in text.parts:
                await self._call(self._send(chat, part))
            await self._send_request(chat, request, text)
        except (TelegramError, TimeoutError) as exc:
            failure = why(exc, self.config)
            logger.warning("Telegram message for request %s to %s failed: %s", request.id, name, failure)
            return f"{name}: {failure}"
        except StoreError as exc:  # sent, but its buttons could not work: not a way to answer
            logger.warning("Telegram message for request %s to %s not recorded: %s", request.id, name, exc)
            return f"{name}: the message could not be recorded ({exc})"
        return None

    async def _send_request(self, chat: str, request: ApprovalRequest, text: RequestText) -> None:
        """Send the request's own message, with its buttons, and record it.

        Cancelled meanwhile (the request was decided), it still finishes this message, within `send_timeout`, and
        records it, then shows the outcome on it: the person may have it, and its buttons must not stay."""
        how = (
            "Answer with a button below, or at the link."
            if text.approvable
            else "Approve it only at the link above. ❌ Deny below still works."
        )
        keyboard = InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(LABELS[verb], callback_data=self.buttons.data(verb, request, int(chat)))]
                for verb in self.buttons.verbs(text.approvable)
            ]
        )
        body = f"🔔 Approval request {request.id}\n\n{text.shown}\n\n{how}"
        sending = asyncio.ensure_future(self._send_and_record(chat, request.id, body, keyboard))
        try:
            await asyncio.shield(sending)
        except asyncio.CancelledError:
            while not sending.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({sending})
            if not sending.cancelled() and sending.exception() is None:
                with contextlib.suppress(StoreError):
                    closed = await self.store.get(request.id)
                    if closed is not None and closed.status is not Status.PENDING:
                        await self.show_outcome(closed, int(chat), sending.result().message_id)
            raise

    async def _send_and_record(self, chat: str, request_id: str, body: str, keyboard: InlineKeyboardMarkup) -> Message:
        message = await self._call(self._send(chat, body, keyboard))
        address = f"{chat}:{message.message_id}"
        await self.outbox.sent(address, request_id, address)
        return message

    async def _send(self, chat: str, text: str, keyboard: InlineKeyboardMarkup | None = None) -> Message:
        return await self.bot.send_message(
            int(chat), text, reply_markup=keyboard, link_preview_options=LinkPreviewOptions(is_disabled=True)
        )

    async def _call(self, call: Awaitable[T]) -> T:
        """One Bot API call, bounded by `send_timeout` all included (`TimeoutError` past it)."""
        async with asyncio.timeout(self.config.send_timeout):
            return await call

    async def tell(self, chat: int, text: str) -> None:
        """A short message to one chat (help, a user id); failures are logged, never raised."""
        try:
            await self._call(self._send(str(chat), text))
        except (TelegramError, TimeoutError) as exc:
            logger.warning("could not send a Telegram message to %s: %s", chat, why(exc, self.config))

    async def answer(self, query_id: str, text: str) -> None:
        """Stop a pressed button's spinner, and tell its presser `text` (Telegram shows at most 200 characters)."""
        shown = text if len(text) <= 200 else text[:199] + "…"
        try:
            await self._call(self.bot.answer_callback_query(query_id, shown, show_alert=len(text) > 60))
        except (TelegramError, TimeoutError) as exc:
            logger.warning("could not answer a Telegram button press: %s", why(exc, self.config))

    async def withdraw(self, request: ApprovalRequest) -> None:
        """Edit every message sent about the request to say how it ended, its buttons gone."""
        grants = await self.store.grants_from(request.id) if request.remembered else []
        for address in await self.outbox.recipients(request.id):
            chat, _, message_id = address.partition(":")
            await self.show_outcome(request, int(chat), int(message_id), grants)

    async def show_outcome(
        self, request: ApprovalRequest, chat: int, message_id: int, grants: list[Grant] | None = None
    ) -> None:
        if grants is None:
            grants = await self.store.grants_from(request.id) if request.remembered else []
        try:
            await self._call(
                self.bot.edit_message_text(
                    closed_text(request, grants),
                    chat_id=chat,
                    message_id=message_id,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():  # shown already, by another replica or a press
                logger.warning("could not edit request %s's Telegram message: %s", request.id, why(exc, self.config))
        except (TelegramError, TimeoutError) as exc:
            logger.warning("could not edit request %s's Telegram message: %s", request.id, why(exc, self.config))

    async def aclose(self) -> None:
        await self._request.shutdown()


def why(exc: BaseException, config: TelegramConfig) -> str:
    """What went wrong with a Bot API call, in words for the record, the agent and the console: never with the
    token in them."""
    if isinstance(exc, TimeoutError | TimedOut):
        text = f"no answer from Telegram within {describe_duration(config.send_timeout)}"
    elif isinstance(exc, InvalidToken):
        text = "Telegram refused the bot token (run `approval-server doctor`)"
    elif isinstance(exc, Forbidden):
        text = f"Telegram refused: {exc.message} (has the person blocked the bot?)"
    elif isinstance(exc, BadRequest) and "chat not found" in exc.message.lower():
        text = "Telegram knows no such chat (the person must send the bot /start first)"
    elif isinstance(exc, BadRequest):
        text = f"Telegram refused: {exc.message}"
    elif isinstance(exc, NetworkError):  # Telegram's own 5xx, or no connection at all
        text = f"Telegram unreachable ({exc.message})"
    elif isinstance(exc, TelegramError):
        text = f"Telegram error: {exc.message}"
    else:
        text = repr(exc)
    return text.replace(config.token, REDACTED)


def outcome(request: ApprovalRequest, grants: list[Grant]) -> str:
    """How the request ended, in one line (and what the allow remembered, if anything)."""
    if request.status in (Status.ALLOWED, Status.DENIED):
        mark, verb = ("✅", "Approved") if request.status is Status.ALLOWED else ("❌", "Denied")
        remembered = remembered_text(request, grants)
        also = f" {visible(remembered)}" if remembered else ""
        return f"{mark} {verb} by {visible(request.decided_by or 'someone')} via {request.decided_via}.{also}"
    if request.status is Status.EXPIRED:
        return "⌛ Expired with no answer, so it was denied."
    return f"Over ({request.status.value}); no answer is needed."


def closed_text(request: ApprovalRequest, grants: list[Grant]) -> str:
    """What a request's message says once the request is over: the request as it was shown (its link and expiry
    replaced by the outcome), or, when it was too long to show, who asked and the tool."""
    ended = outcome(request, grants)
    text = request_text(request, ended)
    if text.approvable:
        return f"🔔 Approval request {request.id}\n\n{text.shown}"
    return f"🔔 Approval request {request.id}\n\n{where(request)}\nTool: {monospace(request.tool_name)}\n\n{ended}"
