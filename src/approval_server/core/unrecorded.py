"""Closings the database could not take, kept until it takes them.

When the server closes a request on its own account (expiry, the agent going away, a shutdown, a channel that
reaches nobody) and the store fails, the agent is denied all the same, and the row would stay `pending`: a human
could then approve an action that never runs. So the closing is kept here and written again until the database takes
it, with the status, reason and time the agent was given. Meanwhile the broker refuses any answer to that request
(`NotDelivered`) and `/healthz` says why it is unhealthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from approval_server.errors import StoreError
from approval_server.models import Answer, ApprovalRequest
from approval_server.store import Store

logger = logging.getLogger(__name__)

# Seconds between two attempts to write the closings kept (the first comes sooner: a lock is often brief).
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Closing:
    answer: Answer
    at: datetime
    why: str  # the store's error when it was kept

    def describe(self) -> str:
        return f"{self.answer.status.value} at {self.at:%H:%M:%S} UTC ({self.answer.message})"


class Unrecorded:
    """`on_recorded` is called with each row once its closing is written (to tell subscribers and channels)."""

    def __init__(self, store: Store, on_recorded: Callable[[ApprovalRequest], None]) -> None:
        self._store = store
        self._on_recorded = on_recorded
        self._closings: dict[str, Closing] = {}
        self._task: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self._closings)

    def get(self, request_id: str) -> Closing | None:
        return self._closings.get(request_id)

    def keep(self, request_id: str, answer: Answer, at: datetime, exc: StoreError) -> None:
        logger.error(
            "could not record request %s as %s (%s); it stays denied, and is written again until the database takes it",
            request_id,
            answer.status.value,
            exc,
        )
        self._closings[request_id] = Closing(answer, at, str(exc))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_until_taken())

    def trouble(self) -> str | None:
        """Why the server is unhealthy because of the closings kept, or None."""
        if not self._closings:
            return None
        why = next(iter(self._closings.values())).why
        return f"{len(self._closings)} closed request(s) not recorded yet: the database fails ({why})"

    async def _write_until_taken(self) -> None:
        # A sweep over every closing kept, again and again, not a retry of one call: a library's retry wrapper
        # (tenacity, stamina) would add nothing but a dependency to these few lines.
        attempt = 0
        while self._closings:
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1
            if await self.write():
                attempt = 0

    async def write(self) -> bool:
        """Write every closing kept; True when at least one was taken. Stops at the first failure."""
        taken = False
        for request_id, closing in list(self._closings.items()):
            try:
                applied, row = await self._store.resolve(request_id, closing.answer, closing.at, record_if_late=False)
            except StoreError as exc:
                self._closings[request_id] = Closing(closing.answer, closing.at, str(exc))
                return taken
            del self._closings[request_id]
            taken = True
            if row is None:
                continue
            if applied:
                logger.warning(
                    "recorded request %s as %s, as its agent was told", request_id, closing.answer.status.value
                )
                self._on_recorded(row)
            else:  # another replica closed it meanwhile (a takeover): that closing stands
                logger.warning("request %s had been closed meanwhile as %s", request_id, row.status.value)
        return taken

    async def aclose(self) -> None:
        """A last attempt; what still fails is closed `abandoned` at the next start (or by another replica)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._closings:
            await self.write()
        if self._closings:
            logger.error("%d closed request(s) could not be recorded before the server stopped", len(self._closings))
