"""The ntfy channel: one push per request to each person's topic, and one more that replaces it when it is over.

Each person's push carries their own signed link (`ChannelDeps.link`, the dashboard's `/r/<token>`, the kind WhatsApp
sends): the notification's click opens their request page, and its buttons post the same token to
`/ntfy/answer/<request id>/r/<token>` (see `answers`), so an answer from it is theirs, for that request only, once.
A push ntfy refuses (a wrong token, a topic the token may not write, a rate limit) or that does not arrive in time is
a person not reached; when no one is, the request is denied at once (unless another channel reached someone).

Who was pushed a request is kept here, in memory, until it is over: the broker withdraws a request on the process
that sent it. A push cut short by the request's end is counted as pushed, so its outcome follows it.
"""

from __future__ import annotations

import asyncio
import logging

from approval_server.channels.base import Channel, Delivery
from approval_server.channels.plugin import ChannelDeps
from approval_server.models import ApprovalRequest

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
        self._pushed: dict[str, dict[str, str]] = {}  # request id → person → their topic

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
        self._pushed.setdefault(request.id, {})[person] = topic
        try:
            await self.publisher.publish(message)
        except NtfyFailed as exc:
            self._pushed.get(request.id, {}).pop(person, None)
            logger.warning("ntfy push of request %s to %s failed: %s", request.id, person, exc)
            return f"{person}: {exc}"
        return None

    async def withdraw(self, request: ApprovalRequest) -> None:
        """Replace each person's push with how the request ended."""
        for person, topic in self._pushed.pop(request.id, {}).items():
            try:
                await self.publisher.publish(outcome(request, topic))
            except NtfyFailed as exc:
                logger.warning("could not tell %s on ntfy how request %s ended: %s", person, request.id, exc)

    async def aclose(self) -> None:
        await self.publisher.aclose()
