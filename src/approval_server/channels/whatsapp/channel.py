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

What an approver is shown is `phone_text`'s: a request too long to read on the phone is approved only at its link,
and a WhatsApp answer that would allow it is refused (see `webhook`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from approval_server.channels.base import Channel, Delivery
from approval_server.channels.phone_text import RequestText, link_footer, request_text
from approval_server.channels.plugin import ChannelDeps
from approval_server.channels.whatsapp.settings import WhatsAppSettings
from approval_server.decision import describe_duration
from approval_server.errors import StoreError
from approval_server.grants import Grant, remembered_text
from approval_server.models import ApprovalRequest, Status
from approval_server.render import visible
from approval_server.store.outbound import OutboundMessage
from approval_server.store.outbox import Outbox

logger = logging.getLogger(__name__)

FAILED = {"failed", "undelivered"}

NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
# The message saying how many requests were held back from an approver waits this long for the rest of the burst.
SUMMARY_DELAY = 1.0


class WhatsAppChannel(Channel):
    name = "whatsapp"

    def __init__(self, settings: WhatsAppSettings, deps: ChannelDeps) -> None:
        self.settings = settings
        self._deps = deps
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None
        self._sender = settings.sender
        # Each approver's number, with the name of the person it is: answers and links are theirs.
        self.names = {number: person.name for person, number in deps.people.on(self.name)}
        self.approvers = list(self.names)
        self._status_callback = settings.webhook_url
        self._store = deps.store
        self._content_sid = settings.content_sid
        self.outbox = Outbox(deps.store, self.name)
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
        limit = self.settings.per_minute
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
            f"{self.settings.public_url}/ (or with `approval-server requests --status pending`).",
        )

    async def _ask(self, approver: str, request: ApprovalRequest) -> str | None:
        """Send the request to one approver; returns why it failed, or None."""
        text = request_text(request, link_footer(request, self.link(request.id, approver)))
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
            waited = describe_duration(self.settings.send_timeout)
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
        return self._deps.link(request_id, self.names[approver])

    def _twilio(self) -> Client:
        """The Twilio client, made on first use: its aiohttp session must be created inside the running loop."""
        if self._client is None:
            self._http = AsyncTwilioHttpClient()  # its `timeout` is not applied: `_send` bounds every call instead
            self._client = Client(self.settings.account_sid, self.settings.auth_token, http_client=self._http)
            if self.settings.api_base_url:
                self._client.api.base_url = self.settings.api_base_url
                self._client.content.base_url = self.settings.api_base_url
        return self._client

    async def _send(self, to: str, **content: str) -> Any:
        """Send one message; returns Twilio's record of it. Raises `TimeoutError` past `send_timeout`."""
        async with asyncio.timeout(self.settings.send_timeout):
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
            name = self.names[approver]
            if approver in shown or name == request.decided_by:
                await self.tell(approver, outcome_notice(request, name, grants), about=request.id)

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


def outcome_notice(request: ApprovalRequest, person: str, grants: list[Grant]) -> str:
    """What the person named `person` is told when `request` is over: that they decided it, or who did, and how."""
    ref = f"Request {request.id}"
    if request.status in (Status.ALLOWED, Status.DENIED):
        verb = "approved" if request.status is Status.ALLOWED else "denied"
        remembered = remembered_text(request, grants)
        also = f" {visible(remembered)}" if remembered else ""
        if request.decided_by == person:
            return f"✅ {ref} {verb}.{also}"
        return f"{ref} was {verb} by {visible(request.decided_by or 'someone')} via {request.decided_via}.{also}"
    if request.status is Status.EXPIRED:
        return f"⌛ {ref} expired with no answer, so it was denied."
    return f"{ref} is over ({request.status.value}); no answer is needed."


def _now() -> datetime:
    return datetime.now(UTC)
