"""The `/twilio-webhook` entry point: WhatsApp answers and delivery reports from Twilio.

Every request must carry a valid `X-Twilio-Signature` over the public URL Twilio was configured with
(`PUBLIC_URL` + `/twilio-webhook` + the query string); anything else is 403 and changes nothing. Only
configured people count (an answer is recorded under the name of the person whose number sent it), a delivery
retried by Twilio (same `MessageSid`) is applied once, a reply applies only to the request it names or can only mean
(see `replies`), and the answer is always the empty TwiML document Twilio expects.

A request too long to read on the phone (`too_long_for_the_phone`) is approved only at its link: a reply or a button
that would allow it is refused, with a reply that says why, and decides nothing. A deny is accepted (it fails closed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from approval_server.bodies import read_form
from approval_server.channels.phone_text import too_long_for_the_phone, too_long_refusal
from approval_server.channels.plugin import Decisions
from approval_server.channels.whatsapp.channel import WhatsAppChannel
from approval_server.channels.whatsapp.replies import HOW_TO_ANSWER, ReplyBinder, parse_reply
from approval_server.channels.whatsapp.settings import WEBHOOK_PATH, WhatsAppSettings
from approval_server.errors import BadRequest, HTTPError, NotDelivered, RequestClosed
from approval_server.models import Answer, Status

logger = logging.getLogger(__name__)

PATH = WEBHOOK_PATH
MAX_BODY = 64 * 1024
_EMPTY_TWIML = str(MessagingResponse())


class TwilioWebhook:
    def __init__(self, broker: Decisions, whatsapp: WhatsAppChannel, settings: WhatsAppSettings) -> None:
        self._broker = broker
        self._whatsapp = whatsapp
        self._account_sid = settings.account_sid
        self._validator = RequestValidator(settings.auth_token)
        self._signed_url = settings.webhook_url
        self._binder = ReplyBinder(broker.store, whatsapp.outbox, settings.quiet_seconds, f"{settings.public_url}/")

    async def handle(self, request: Request) -> Response:
        try:
            form = await read_form(request, MAX_BODY)
        except HTTPError as exc:  # Twilio always posts a small urlencoded form: anything else is not from Twilio
            logger.warning("refused a webhook body (%s): %s", exc.status_code, exc.detail)
            raise
        signature = request.headers.get("x-twilio-signature")
        url = self._signed_url + (f"?{request.url.query}" if request.url.query else "")
        # RequestValidator raises on a missing signature, so check that first.
        if not signature or not self._validator.validate(url, form, signature):
            logger.warning("refused a webhook with a missing or wrong X-Twilio-Signature")
            return Response("invalid signature", status_code=403, media_type="text/plain")
        if form.get("AccountSid") != self._account_sid:
            logger.warning("refused a webhook for another Twilio account")
            return Response("wrong account", status_code=403, media_type="text/plain")
        message_sid = _field(form, "MessageSid")
        status = _field(form, "MessageStatus")
        if not message_sid:
            raise BadRequest("MessageSid is missing")
        key = f"{message_sid}:{status or 'inbound'}"
        if await self._broker.store.first_sighting(key, datetime.now(UTC)):
            if status:
                await self._delivery_report(message_sid, status, _field(form, "ErrorCode"))
            else:
                await self._answer(form)
        else:
            logger.info("ignored a repeated webhook delivery (%s)", key)
        return Response(_EMPTY_TWIML, media_type="text/xml")

    async def _delivery_report(self, sid: str, status: str, error_code: str | None) -> None:
        lost = await self._whatsapp.delivery_report(sid, status, error_code)
        if lost is not None:
            request_id, why = lost
            await self._broker.channel_unreachable(request_id, self._whatsapp.name, why)

    async def _answer(self, form: FormData) -> None:
        sender = (_field(form, "From") or "").removeprefix("whatsapp:")
        person = self._whatsapp.names.get(sender)
        if person is None:
            logger.warning("ignored a WhatsApp message from %r, who is not an approver", sender)
            return
        reply = parse_reply(
            sender, _field(form, "Body") or "", _field(form, "ButtonPayload"), _field(form, "OriginalRepliedMessageSid")
        )
        if reply is None:
            await self._whatsapp.tell(sender, HOW_TO_ANSWER)
            return
        bound = await self._binder.bind(reply)
        if isinstance(bound, str):
            await self._whatsapp.tell(sender, bound)
            return
        if bound.decision == "allow" and (refusal := await self._only_at_the_link(bound.request_id, sender)):
            await self._whatsapp.tell(sender, refusal)
            return
        status = Status.ALLOWED if bound.decision == "allow" else Status.DENIED
        answer = Answer(status, person, self._whatsapp.name, bound.message, remember=bound.remember)
        try:
            await self._broker.decide(bound.request_id, answer)
        except RequestClosed:
            row = await self._broker.store.get(bound.request_id)
            state = row.status.value if row else "closed"
            await self._whatsapp.tell(
                sender, f"Request {bound.request_id} is already {state}; your answer changed nothing."
            )
        except NotDelivered as exc:
            await self._whatsapp.tell(sender, f"Your answer changed nothing: {exc.detail}.")

    async def _only_at_the_link(self, request_id: str, approver: str) -> str | None:
        """Why an allow of `request_id` from the phone is refused (it is too long to read there), or None."""
        row = await self._broker.store.get(request_id)
        if row is None or row.status is not Status.PENDING or not too_long_for_the_phone(row):
            return None  # an answer to a request that is over is told so by `decide`
        logger.info("refused a WhatsApp approval of request %s from %s: too long for the phone", request_id, approver)
        return too_long_refusal(row, self._whatsapp.link(row.id, approver))


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value else None
