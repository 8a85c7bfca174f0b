"""The `/twilio-webhook` entry point: WhatsApp answers and delivery reports from Twilio.

Every request must carry a valid `X-Twilio-Signature` over the public URL Twilio was configured with
(`PUBLIC_URL` + `/twilio-webhook` + the query string); anything else is 403 and changes nothing. Only
configured approvers count, a delivery retried by Twilio (same `MessageSid`) is applied once, and the
answer is always the empty TwiML document Twilio expects.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from approval_server.bodies import read_form
from approval_server.broker import Broker
from approval_server.channels.whatsapp import HOW_TO_ANSWER, InboundAnswer, WhatsAppChannel, parse_answer
from approval_server.config import WhatsAppSettings
from approval_server.errors import BadRequest, HTTPError, NotFound, RequestClosed
from approval_server.models import Answer, Status

logger = logging.getLogger(__name__)

PATH = "/twilio-webhook"
MAX_BODY = 64 * 1024
_EMPTY_TWIML = str(MessagingResponse())


class TwilioWebhook:
    def __init__(self, broker: Broker, whatsapp: WhatsAppChannel, settings: WhatsAppSettings) -> None:
        self._broker = broker
        self._whatsapp = whatsapp
        self._account_sid = settings.account_sid
        self._validator = RequestValidator(settings.auth_token)
        self._signed_url = settings.webhook_url

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
        if sender not in self._whatsapp.approvers:
            logger.warning("ignored a WhatsApp message from %r, who is not an approver", sender)
            return
        answer = parse_answer(
            sender, _field(form, "Body") or "", _field(form, "ButtonPayload"), _field(form, "OriginalRepliedMessageSid")
        )
        if answer.decision is None:
            await self._whatsapp.tell(sender, answer.problem or HOW_TO_ANSWER)
            return
        if answer.id_as_typed and await self._broker.store.get(answer.request_id or "") is None:
            # No such request: the word was the reason's first, as in `DENY database is prod`.
            reason = " ".join(word for word in (answer.id_as_typed, answer.message) if word)
            answer = dataclasses.replace(answer, request_id=None, message=reason)
        request_id = await self._request_for(answer)
        if request_id is None:
            return
        status = Status.ALLOWED if answer.decision == "allow" else Status.DENIED
        try:
            await self._broker.decide(
                request_id, Answer(status, sender, self._whatsapp.name, answer.message, remember=answer.remember)
            )
        except NotFound:
            await self._whatsapp.tell(sender, f"There is no request {request_id}; check the id.")
        except RequestClosed:
            row = await self._broker.store.get(request_id)
            state = row.status.value if row else "closed"
            await self._whatsapp.tell(sender, f"Request {request_id} is already {state}; your answer changed nothing.")

    async def _request_for(self, answer: InboundAnswer) -> str | None:
        """Which request an answer is about, or None after telling the approver how to answer."""
        replied = await self._broker.store.outbound(answer.replied_to) if answer.replied_to else None
        if answer.request_id and replied and replied.request_id != answer.request_id:
            await self._whatsapp.tell(answer.sender, "That reply names one request but answers another; not applied.")
            return None
        if answer.request_id or replied:
            return answer.request_id or (replied.request_id if replied else None)
        pending = [row.id for row in await self._broker.store.recent(status=Status.PENDING)]
        if len(pending) == 1:
            return pending[0]
        reply = "DENY <id>" if answer.decision == "deny" else "APPROVE <id>"
        if answer.remember is not None:
            reply = "ALWAYS <id>" if answer.remember.duration is None else "ALLOW <id> 30m"
        listed = ", ".join(pending) if pending else "none"
        await self._whatsapp.tell(
            answer.sender, f"Which request? Reply {reply}, or tap the button on its message. Pending: {listed}."
        )
        return None


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value else None
