"""Request lifecycle events, fanned out in-process to every subscriber (the SSE stream, the dashboard)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from approval_server.models import ApprovalRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    kind: str  # "request.created" or "request.closed"
    request: ApprovalRequest


class EventHub:
    """Each subscriber gets its own bounded queue; a subscriber too slow to keep up is dropped, never waited for."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event | None]] = set()

    @property
    def heard(self) -> bool:
        """Whether anyone is subscribed: an event nobody hears need not be made."""
        return bool(self._subscribers)

    def publish(self, event: Event) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                logger.warning("dropping an event subscriber that fell %d events behind", self._queue_size)
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)

        async def events() -> AsyncIterator[Event]:
            while (event := await queue.get()) is not None:
                yield event

        try:
            yield events()
        finally:
            self._subscribers.discard(queue)
