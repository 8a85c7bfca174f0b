"""The ntfy channel: one push per request to each person's topic, and one more that replaces it when it is over.

Each person's push carries their own signed link (`ChannelDeps.link`, the dashboard's `/r/<token>`, the kind WhatsApp
sends): the notification's click opens their request page, and its buttons post the same token to
`/ntfy/answer/<request id>/r/<token>` (see `answers`), so an answer from it is theirs, for that request only, once.
A push ntfy refuses (a wrong token, a topic the token may not write, a rate limit) or that does not arrive in time is
a person not reached; when no one is, the request is denied at once (unless another channel reached someone).

Who was pushed a request is recorded in the store before the push (and marked failed if ntfy refuses it), so that its
outcome replaces it wherever and whenever the request closes: after a restart or on another replica too. A push cut
short by the request's end is counted as pushed, so its outcome follows it.
"""

from __future__ import annotations

import asyncio
import logging

from approval_server.channels.base import Channel, Delivery
from approval_server.channels.plugin import ChannelDeps
from approval_server.errors import StoreError
from approval_server.models import ApprovalRequest
from approval_server.store.outbox import Outbox

from .messages import answer_url, ask, outcome
from .publisher import NtfyFailed, Publisher
from .settings import NAME, NtfyConfig

logger = logging.getLogger(__name__)


class NtfyChannel(Channel):
    name = NAME

    def __init__(self, config: NtfyConfig, deps: ChannelDeps) -> None:
        self.config = config
        self.deps = deps
        self.publisher = Publisher(config.url, config.token, config.timeout)
        self.outbox = Outbox(deps.store, NAME)

    async def notify(self, request: ApprovalRequest) -> Delivery:
        topics = self.config.topics
        results = await asyncio.gather(*(self._push(person, topic, request) for person, topic in topics))
        failures = [why for why in results if why]
        if len(failures) == len(topics):
            return Delivery(reached=False, detail="; ".join(failures))
        return Delivery(reached=True, detail=f"pushed to {len(topics) - len(failures)} person(s)")

    async def _push(self, person: str, topic: str, request: ApprovalRequest) -> str | None:
        """Push `request` to one person; returns why it failed, or None."""
        page = self.deps.link(request.id, person, NAME)
        answer = answer_url(self.config.public_url, request.id, page.rsplit("/r/", 1)[1])
        message = ask(request, topic, page, answer, self.config.priority)
        try:
            sent = await self.outbox.sent(f"{request.id}:{person}", request.id, person)
        except StoreError as exc:  # not pushed: a push whose outcome could not follow it would stay on the phone
            logger.warning("ntfy push of request %s to %s not recorded, so not sent: %s", request.id, person, exc)
            return f"{person}: the push could not be recorded ({exc})"
        try:
            await self.publisher.publish(message)
        except NtfyFailed as exc:
            logger.warning("ntfy push of request %s to %s failed: %s", request.id, person, exc)
            try:
                await self.outbox.failed(sent)
            except StoreError as failed:  # its outcome is then pushed to them too, which shows nothing wrong
                logger.warning("could not record that the push to %s failed: %s", person, failed)
            return f"{person}: {exc}"
        return None

    async def withdraw(self, request: ApprovalRequest) -> None:
        """Replace each person's push with how the request ended (a person no longer configured is not pushed)."""
        topics = dict(self.config.topics)
        for person in sorted(await self.outbox.recipients(request.id)):
            if (topic := topics.get(person)) is None:
                continue
            try:
                await self.publisher.publish(outcome(request, topic))
            except NtfyFailed as exc:
                logger.warning("could not tell %s on ntfy how request %s ended: %s", person, request.id, exc)

    async def aclose(self) -> None:
        await self.publisher.aclose()
