"""The WhatsApp channel, through Twilio: each approver gets the request with Approve / Deny buttons.

Outbound messages go through the official `twilio` client with its asyncio HTTP client, so sending never
blocks the event loop. Every call to Twilio has a hard total timeout (`send_timeout`): the client's own `timeout` is
never applied by its asyncio `request()`, which leaves aiohttp's default of five minutes. A send that times out is a
failed delivery. Answers come back through `/twilio-webhook` (see `twilio_webhook` and `whatsapp_replies`).

A request decided while it is being sent is sent no further (the broker cancels the send), but the message in flight
is finished and recorded, so that its approver is then told how the request ended (see `_send_for`).

One approver is sent at most `per_minute` requests a minute (their turns are counted in the database, so across
replicas too): past that, requests are held back, still waiting, and one message says how many more wait, with the
dashboard's link. A request held back counts as reaching its approver only if the last request sent to them from
this server reached them: when Twilio fails or hangs, a burst past the limit is denied with the rest, not left to
expire. Notices are recorded too, so that what an approver was sent last is known (see `whatsapp_replies`).

A request whose template Twilio refuses, for any reason, is sent as plain text, with the same words and the replies to
type; only when that fails too has the approver not been reached. An approver who was never sent a request (every send
to them failed) is not told how it ended either.

Every message about a request names the agent and its working directory (`where`), each value in monospace on one
line, so that a command from /srv/prod never looks like one from /tmp/sandbox. A request too long to read on the phone
(`too_long_for_the_phone`) is not shown, only described: it is approved only at its link, and a WhatsApp answer that
would allow it is refused (see `twilio_webhook`); a deny is accepted, as a deny is always safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from approval_server.channels.base import Channel, Delivery
from approval_server.config import WhatsAppSettings
from approval_server.decision import describe_duration
from approval_server.errors import StoreError
from approval_server.grants import Grant, remembered_text
from approval_server.models import ApprovalRequest, Status
from approval_server.outbound import OutboundMessage
from approval_server.outbox import Outbox
from approval_server.render import FENCE, for_monospace, monospace, render_whatsapp, visible
from approval_server.store import Store
from approval_server.web_auth import WebAuth

logger = logging.getLogger(__name__)

# Twilio's limit for a message body is 1,600 characters; a quick-reply template's text is 1,024 with variables, and
# the template's own words take about 100: the request as shown (with its link and expiry) must fit in the rest.
TEMPLATE_TEXT_LIMIT = 900
PART_LIMIT = 1400
# Past this, the input is not split into parts but summarised with its exact length (see `too_long_for_the_phone`).
MAX_SHOWN = 6 * PART_LIMIT
# An agent's name or working directory longer than this, as shown, is not shown: the request is then too long for the
# phone, and the text that says so still fits in a template's.
NAME_LIMIT = 160
# A newline in a name or a directory, shown so that it cannot start a line that looks like a label ("Command:").
NEWLINE = "⟨U+000A⟩"
FAILED = {"failed", "undelivered"}

NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
# The message saying how many requests were held back from an approver waits this long for the rest of the burst.
SUMMARY_DELAY = 1.0


def _split(text: str, size: int) -> list[str]:
    """Cut `text` into pieces of at most `size` characters, never inside a `⟨U+XXXX⟩` escape."""
    pieces: list[str] = []
    while len(text) > size:
        cut = size
        opening = text.rfind("⟨", 0, cut)
        if opening != -1 and text.find("⟩", opening) >= cut:
            cut = opening
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text]


def _one_line(value: str) -> str:
    """`value` in a monospace block on one line: a backtick cannot close the block, a newline cannot start a line."""
    return monospace(value).replace("\n", NEWLINE)


def _named(value: str | None, missing: str) -> str:
    if not value:
        return f"({missing})"
    shown = _one_line(value)
    if len(shown) > NAME_LIMIT:
        return "(too long to show here: read it at the link)"
    return shown


def where(request: ApprovalRequest) -> str:
    """Who asks and from where, a line each: the agent's name and program (kind, version, route), and its working
    directory, or that they are unknown."""
    program = f", {_one_line(request.program)}" if request.program else ""  # short: a kind and a plain version
    return f"Agent: {_named(request.agent, 'unnamed')}{program}\nDirectory: {_named(request.cwd, 'unknown')}"


def shown_input(request: ApprovalRequest) -> str:
    """The whole input as the numbered parts show it: indented JSON, made visible for a monospace block."""
    return for_monospace(json.dumps(request.input, ensure_ascii=False, indent=1))


def too_long_for_the_phone(request: ApprovalRequest) -> bool:
    """Whether `request` is too long to be read on the phone: its input past `MAX_SHOWN` characters as shown, or its
    agent's name or directory past `NAME_LIMIT`. WhatsApp then gives only its length and link, and a
    WhatsApp answer that would allow it is refused: it is approved only at the link, which shows it whole.

    Decided from the request alone, when it is sent and when it is answered, so every replica and a restarted server
    decide the same."""
    if len(shown_input(request)) > MAX_SHOWN:
        return True
    return any(value and len(_one_line(value)) > NAME_LIMIT for value in (request.agent, request.cwd))


def too_long_refusal(request: ApprovalRequest, link: str) -> str:
    """What an approver is told when their WhatsApp answer would allow a request too long for the phone."""
    return (
        f"Not applied: request {request.id} is too long to read on the phone, so it cannot be approved from "
        f"WhatsApp. The only way to approve it is its link, which shows it whole: {link}\n"
        f"DENY {request.id} (or the Deny button) still works here: a deny is always safe."
    )


@dataclass(frozen=True)
class RequestText:
    """What WhatsApp shows of a request: its input in numbered parts (each a message, sent first), if it is split,
    and the text of the request's own message (the template's first variable)."""

    parts: list[str]
    shown: str
    approvable: bool  # False: too long for the phone, approved only at its link


def request_text(request: ApprovalRequest, footer: str) -> RequestText:
    """The messages about `request`; `footer` (its link and expiry) ends the request's own message. Each names the
    agent and the directory. The request's message fits a template's text (`TEMPLATE_TEXT_LIMIT`) and each part a
    message (`PART_LIMIT`); an input too long for the phone is described, not shown."""
    head = where(request)
    tool = f"Tool: {monospace(request.tool_name)}"
    text = shown_input(request)
    if too_long_for_the_phone(request):
        why = (
            f"The input is {len(text):,} characters long, too long to read on the phone: it is not shown here."
            if len(text) > MAX_SHOWN
            else "The agent's name or directory is too long to show on the phone."
        )
        shown = (
            f"{head}\n{tool}\n⚠️ {why} The only way to approve it is the link below, which shows it whole; an "
            f"approval sent here (a reply, a button, a yes) is refused. DENY {request.id} still works.\n\n{footer}"
        )
        return RequestText([], shown, approvable=False)
    described = f"{head}\n{render_whatsapp(request.tool_name, request.input)}"
    if len(described) + 2 + len(footer) <= TEMPLATE_TEXT_LIMIT:
        return RequestText([], f"{described}\n\n{footer}", approvable=True)
    # Split the text as shown, never inside a `⟨U+XXXX⟩`, and fence each part without escaping it again.
    size = PART_LIMIT - len(_part_head(request.id, 99, 99, head)) - 2 * len(FENCE)
    pieces = _split(text, size)
    parts = [
        _part_head(request.id, number, len(pieces), head) + FENCE + piece + FENCE
        for number, piece in enumerate(pieces, 1)
    ]
    shown = (
        f"{head}\n{tool}\nThe full input ({len(text):,} characters) is in the {len(parts)} numbered messages "
        f"above.\n\n{footer}"
    )
    return RequestText(parts, shown, approvable=True)


def _part_head(request_id: str, number: int, count: int, head: str) -> str:
    return f"Request {request_id}, part {number}/{count} of the input\n{head}\n"


class WhatsAppChannel(Channel):
    name = "whatsapp"

    def __init__(self, settings: WhatsAppSettings, store: Store, auth: WebAuth) -> None:
        self._settings = settings
        self._auth = auth
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None
        self._sender = settings.sender
        self.approvers = settings.approvers
        self._status_callback = settings.webhook_url
        self._store = store
        self._content_sid = settings.content_sid
        self.outbox = Outbox(store, self.name)
        self._background: set[asyncio.Task[None]] = set()
        self._last_ask: dict[str, asyncio.Future[str | None]] = {}  # approver → the last request sent to them
        self._claiming: dict[str, asyncio.Lock] = {}  # approver → held while a request takes its turn with them

    async def notify(self, request: ApprovalRequest) -> Delivery:
        results = await asyncio.gather(*(self._offer(approver, request) for approver in self.approvers))
        failures = [detail for detail in results if detail]
        if len(failures) == len(self.approvers):
            return Delivery(reached=False, detail="; ".join(failures))
        return Delivery(reached=True, detail=f"sent to {len(self.approvers) - len(failures)} approver(s)")

    async def _offer(self, approver: str, request: ApprovalRequest) -> str | None:
        """Send the request to one approver, unless the rate limit holds it back; returns why it failed, or None.
        A request held back still waits: the approver is told how many wait, and answers on the dashboard."""
        limit = self._settings.per_minute
        # One approver's turns are taken here one at a time, each send registered before the next turn: a request
        # held back then always finds the send before it in `_last_ask`.
        asking: asyncio.Future[str | None] | None = None
        async with self._claiming.setdefault(approver, asyncio.Lock()):
            try:
                turn = await self.outbox.claim(request.id, approver, _now(), limit)
            except StoreError as exc:
                logger.warning("could not take request %s's turn with %s: %s", request.id, approver, exc)
                return f"{approver}: {exc}"
            if not turn.held:
                asking = self._last_ask[approver] = asyncio.ensure_future(self._ask(approver, request))
        if asking is not None:
            return await asking
        logger.info("request %s held back from %s (more than %d a minute)", request.id, approver, limit)
        if turn.summarise:  # once the burst has arrived, so that the count says how many it held back
            task = asyncio.create_task(self._summarise(approver, limit))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        failed = None
        if (last := self._last_ask.get(approver)) is not None:
            await asyncio.wait({last})  # its outcome, whatever it is, without taking on its cancellation
            failed = last.result() if not last.cancelled() and last.exception() is None else None
        return f"{failed}, and this request was held back by the rate limit" if failed else None

    async def _summarise(self, approver: str, limit: int) -> None:
        await asyncio.sleep(SUMMARY_DELAY)
        try:
            waiting = await self.outbox.held_waiting(approver)
        except StoreError as exc:
            logger.warning("could not count the requests held back from %s: %s", approver, exc)
            return
        await self.tell(
            approver,
            f"⏸️ Many requests at once: {waiting} more wait that were not sent to you one by one (at most {limit} a "
            f"minute). They still wait for an answer: read and answer them on the dashboard, "
            f"{self._settings.public_url}/ (or with `approval-server requests --status pending`).",
        )

    async def _ask(self, approver: str, request: ApprovalRequest) -> str | None:
        """Send the request to one approver; returns why it failed, or None."""
        seconds = (request.expires_at - request.created_at).total_seconds()
        footer = (
            f"🔗 Read it all and answer in a browser: {self.link(request.id, approver)}\n"
            f"⏱️ Expires in {describe_duration(seconds)} ({request.expires_at:%H:%M} UTC)"
        )
        text = request_text(request, footer)
        try:
            for part in text.parts:
                await self._send_for(request.id, approver, body=part)
            sent = await self._send_request(approver, request.id, text)
            if sent.status in FAILED:  # Twilio reported the failure before the send call had returned
                return f"{approver}: message {sent.status} (Twilio error {sent.error_code or 'none'})"
        except TwilioRestException as exc:
            logger.warning("WhatsApp message for request %s to %s failed: %s", request.id, approver, exc.msg)
            return f"{approver}: Twilio error {exc.code}"
        except TimeoutError:
            waited = describe_duration(self._settings.send_timeout)
            logger.warning("no answer from Twilio in %s for request %s to %s", waited, request.id, approver)
            return f"{approver}: no answer from Twilio within {waited}"
        except NETWORK_ERRORS as exc:
            logger.warning("WhatsApp message for request %s to %s failed: %r", request.id, approver, exc)
            return f"{approver}: Twilio unreachable ({exc.__class__.__name__})"
        return None

    async def _send_request(self, approver: str, request_id: str, text: RequestText) -> OutboundMessage:
        if self._content_sid:
            variables = json.dumps({"1": text.shown, "2": request_id}, ensure_ascii=False)
            try:
                return await self._send_for(
                    request_id, approver, content_sid=self._content_sid, content_variables=variables
                )
            except TwilioException as exc:  # whatever the reason (21655, 63016, …): the same request, as plain text
                code = getattr(exc, "code", None)
                logger.warning("Twilio refused template %s (error %s); sending plain text", self._content_sid, code)
        how = (
            f"Reply APPROVE {request_id} or DENY {request_id}, or ALWAYS {request_id} to allow the same again for "
            f"this session."
            if text.approvable
            else f"Approve it only at the link above. To deny it, reply DENY {request_id}."
        )
        body = f"🔔 Approval request {request_id}\n\n{text.shown}\n\n{how}"
        return await self._send_for(request_id, approver, body=body)

    def link(self, request_id: str, approver: str) -> str:
        """The request's dashboard page for one approver: it decides that request, once, as that approver."""
        return f"{self._settings.public_url}/r/{self._auth.request_link_token(request_id, approver)}"

    def _twilio(self) -> Client:
        """The Twilio client, made on first use: its aiohttp session must be created inside the running loop."""
        if self._client is None:
            self._http = AsyncTwilioHttpClient()  # its `timeout` is not applied: `_send` bounds every call instead
            self._client = Client(self._settings.account_sid, self._settings.auth_token, http_client=self._http)
            if self._settings.api_base_url:
                self._client.api.base_url = self._settings.api_base_url
                self._client.content.base_url = self._settings.api_base_url
        return self._client

    async def _send(self, to: str, **content: str) -> Any:
        """Send one message; returns Twilio's record of it. Raises `TimeoutError` past `send_timeout`."""
        async with asyncio.timeout(self._settings.send_timeout):
            return await self._twilio().messages.create_async(from_=self._sender, to=f"whatsapp:{to}", **content)

    async def _send_for(self, request_id: str, to: str, **content: str) -> OutboundMessage:
        """Send one message about a request and record it, so that replies and delivery reports find the request.
        (Only these ask for delivery reports: whether a notice arrived changes nothing.)

        Cancelled meanwhile (the request was decided), it still finishes this message, within `send_timeout`, and
        records it before the cancellation goes on: the approver may have it, and is then told how the request
        ended."""
        sending = asyncio.ensure_future(self._send_and_record(request_id, to, **content))
        try:
            return await asyncio.shield(sending)
        except asyncio.CancelledError:
            while not sending.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({sending})
            if not sending.cancelled() and sending.exception() is not None:
                logger.warning("WhatsApp message for request %s to %s failed: %r", request_id, to, sending.exception())
            raise

    async def _send_and_record(self, request_id: str, to: str, **content: str) -> OutboundMessage:
        message = await self._send(to, status_callback=self._status_callback, **content)
        return await self._store.record_outbound(
            message.sid, request_id, self.name, to, message.status or "queued", _now()
        )

    async def tell(self, to: str, text: str, about: str | None = None) -> None:
        """A short notice to one approver (a confirmation, a refusal), recorded as the last thing they were sent, and
        `about` the request that is over, if any; failures are logged, never raised."""
        try:
            message = await self._send(to, body=text)
            await self.outbox.record_notice(message.sid, to, _now(), about)
        except (TwilioRestException, StoreError, *NETWORK_ERRORS) as exc:
            logger.warning("could not send a notice to %s: %r", to, exc)

    async def withdraw(self, request: ApprovalRequest) -> None:
        """Tell the approvers who were sent the request how it ended: the one who answered gets a confirmation, the
        others who. (Those it was held back from are not told of each one that ends.)"""
        grants = await self._store.grants_from(request.id) if request.remembered else []
        shown = await self.outbox.recipients(request.id)
        for approver in self.approvers:
            if approver in shown or approver == request.decided_by:
                await self.tell(approver, outcome_notice(request, approver, grants), about=request.id)

    async def delivery_report(self, sid: str, status: str, error_code: str | None) -> tuple[str, str] | None:
        """Record a status callback. Returns (request id, why) when no approver can be reached for that request."""
        # A failure can overtake the send call that learns the message's SID, and reach another replica: it is kept
        # for that send to find (see `_ask`).
        messages = await self._store.report_delivery(sid, status, error_code, _now(), keep_unknown=status in FAILED)
        if status not in FAILED or not messages:
            return None
        by_approver: dict[str, list[str]] = {}
        for message in messages:
            by_approver.setdefault(message.recipient, []).append(message.status)
        if all(any(s in FAILED for s in statuses) for statuses in by_approver.values()):
            why = f"every WhatsApp message failed (last: {status}, Twilio error {error_code or 'none'})"
            return messages[0].request_id, why
        return None

    async def aclose(self) -> None:
        for task in self._background:
            task.cancel()
        if self._http is not None:
            await self._http.close()


def outcome_notice(request: ApprovalRequest, approver: str, grants: list[Grant]) -> str:
    ref = f"Request {request.id}"
    if request.status in (Status.ALLOWED, Status.DENIED):
        verb = "approved" if request.status is Status.ALLOWED else "denied"
        remembered = remembered_text(request, grants)
        also = f" {visible(remembered)}" if remembered else ""
        if request.decided_by == approver:
            return f"✅ {ref} {verb}.{also}"
        return f"{ref} was {verb} by {visible(request.decided_by or 'someone')} via {request.decided_via}.{also}"
    if request.status is Status.EXPIRED:
        return f"⌛ {ref} expired with no answer, so it was denied."
    return f"{ref} is over ({request.status.value}); no answer is needed."


def _now() -> datetime:
    return datetime.now(UTC)
