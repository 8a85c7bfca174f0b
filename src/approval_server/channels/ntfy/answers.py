"""`POST /ntfy/answer/<request id>/r/<token>`: a button of a push, pressed (the ntfy app posts the choice's name).

The token is the person's signed request link, the one the push's click opens: it names the request and the person,
and expires with the request. An answer counts only when the token is this server's, unexpired, for the request the
path names, made for ntfy's buttons (not another channel's link) and for a person who is still reached on ntfy, on a
request still pending, and not used before (its nonce is seen once, across replicas, with the request page's own
uses); an approval must also be of a request the push showed whole (`messages.approvable`). Anything else is
refused with a 4xx and changes nothing. The answer is the person's: `Answer(actor=<their name>, channel="ntfy")`.

Wrong tokens are counted per client address, as the dashboard counts them (`WrongTokenLimit`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from approval_server.bodies import read_body
from approval_server.channels.plugin import Decisions
from approval_server.errors import NotDelivered, RequestClosed
from approval_server.models import Answer, ApprovalRequest, Status
from approval_server.people import People, Person
from approval_server.web_auth import LinkRefused, RequestLink, WebAuth, WrongTokenLimit

from .messages import ANSWER_PATH, CHOICES, Choice, approvable
from .settings import NAME

logger = logging.getLogger(__name__)

MAX_BODY = 64


class Refused(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class NtfyAnswers:
    def __init__(self, auth: WebAuth, people: People, decisions: Decisions, ntfy_origin: str) -> None:
        self._auth = auth
        self._people = people
        self._decisions = decisions
        # The ntfy web app presses a button with `fetch` from its own origin: it may read the answer.
        self._cors = {"Access-Control-Allow-Origin": ntfy_origin}
        self._wrong_tokens = WrongTokenLimit()

    def routes(self) -> list[Route]:
        return [Route(ANSWER_PATH + "/{request_id}/r/{token}", self.answer, methods=["POST"])]

    async def answer(self, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        try:
            if (wait := self._wrong_tokens.retry_after(address)) is not None:
                headers = {**self._cors, "Retry-After": str(wait)}
                return PlainTextResponse("too many wrong links: try again later", 429, headers=headers)
            choice = CHOICES.get((await read_body(request, MAX_BODY)).decode("utf-8", "replace").strip().lower())
            if choice is None:
                raise Refused(400, "the body is the choice: approve, deny or session")
            row, link = await self._checked(request.path_params["request_id"], request.path_params["token"], address)
            if link.channel != NAME:  # another channel's link: what it decides is not answered on ntfy
                raise Refused(403, "this link was not made for an ntfy button: open it in a browser")
            person = self._people.named(link.approver)
            if person is None or person.on(NAME) is None:
                raise Refused(403, "this button was made for someone who no longer answers on ntfy")
            decided = await self._apply(row, link, person, choice)
        except Refused as refused:
            logger.info("refused an ntfy answer: %s", refused)
            return PlainTextResponse(str(refused), refused.status, headers=self._cors)
        verb = "approved" if decided.status is Status.ALLOWED else "denied"
        return PlainTextResponse(f"Request {decided.id} {verb}, as {decided.decided_by}.", headers=self._cors)

    async def _checked(self, request_id: str, token: str, address: str) -> tuple[ApprovalRequest, RequestLink]:
        """The request and the link, when the token is this server's and names this request."""
        named = self._auth.peek_request_id(token)
        row = await self._decisions.store.get(request_id) if named == request_id else None
        if row is None:
            self._wrong_tokens.wrong(address)
            raise Refused(403, "this button is not valid: it was changed, or not made by this server for this request")
        try:
            link = self._auth.read_request_link(token, (row.expires_at - row.created_at).total_seconds())
        except LinkRefused as exc:
            raise Refused(403, str(exc)) from None
        return row, link

    async def _apply(self, row: ApprovalRequest, link: RequestLink, person: Person, choice: Choice) -> ApprovalRequest:
        if row.status is not Status.PENDING:
            raise Refused(410, f"request {row.id} is already {row.status.value}; nothing changed")
        if choice.status is Status.ALLOWED and not approvable(row):
            raise Refused(403, f"request {row.id} is too long for a notification: approve it only on its page")
        if not await self._decisions.store.first_sighting(f"link:{link.nonce}", datetime.now(UTC)):
            raise Refused(410, "this request's buttons have been used already")
        answer = Answer(choice.status, person.name, NAME, remember=choice.remember)
        try:
            return await self._decisions.decide(row.id, answer)
        except RequestClosed:
            now = await self._decisions.store.get(row.id)
            raise Refused(410, f"request {row.id} is already {now.status.value if now else 'closed'}") from None
        except NotDelivered as exc:
            raise Refused(409, f"nothing changed: {exc.detail}") from None
