"""Several servers on one PostgreSQL database, behind one URL: any of them may take the MCP call, the webhook or the
dashboard click.

- **Wake-ups**: what a replica changes is announced with `NOTIFY` in the same transaction (see `Store`), and every
  replica `LISTEN`s on a connection of its own. A decision committed on replica B wakes the caller waiting on A in
  milliseconds, with no polling. After that connection comes back from a drop, the broker looks again at every
  request it waits for, so a notice lost meanwhile leaves nobody waiting until the expiry.
- **Leases**: each replica renews its lease every third of `APPROVAL_LEASE_SECONDS`, on the database's clock (see
  `leases`). One that stops (killed, frozen, cut off from the database) loses it, and the first live replica to notice
  closes its pending requests as `abandoned`, never `allowed`: their callers' connections went with it.
- **Handovers**: an answer given on one replica for an agent that waits on another is recorded by that other, only
  while its agent waits (see `handover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import timedelta

import psycopg

from approval_server.core.broker import Broker
from approval_server.core.handover import Handovers
from approval_server.core.leases import Leases
from approval_server.core.peers import Peers
from approval_server.decision import SERVER_ACTOR
from approval_server.errors import StoreError
from approval_server.notices import NOTICE_CHANNEL, Notice

logger = logging.getLogger(__name__)

RECONNECT_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)


class Replication:
    def __init__(self, broker: Broker, lease_seconds: float) -> None:
        self._broker = broker
        self._store = broker.store
        self._lease = timedelta(seconds=lease_seconds)
        self._leases = Leases(broker.store, self._lease)
        broker.handovers = Handovers(broker.store, self._leases)
        self._peers = Peers(broker, broker.handovers)
        self._host = socket.gethostname()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()

    async def start(self) -> None:
        await self._leases.register(self._host)
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._keep_lease())]
        # Serve only once announcements from the others arrive.
        async with asyncio.timeout(30):
            await self.listening.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._peers.aclose()
        with contextlib.suppress(StoreError):
            await self._leases.retire()

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._store.libpq_url,
                    autocommit=True,
                    application_name=f"approval-server listen {self._store.replica}",
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=3,
                ) as connection:
                    await connection.execute(f"LISTEN {NOTICE_CHANNEL}")
                    if failures:
                        logger.warning("listening to the other replicas again")
                    failures = 0
                    self.listening.set()
                    await self._peers.resync()  # anything decided while nobody listened
                    async for message in connection.notifies():
                        notice = Notice.from_payload(message.payload)
                        if notice is not None and notice.origin != self._store.replica:
                            await self._act_on(notice)
            except (psycopg.Error, OSError, StoreError) as exc:
                self.listening.clear()
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                logger.warning("lost the connection that hears the other replicas (%s); again in %gs", exc, delay)
                await asyncio.sleep(delay)

    async def _act_on(self, notice: Notice) -> None:
        try:
            await self._peers.on_notice(notice)
        except Exception:  # one notice that cannot be acted on must not deafen the replica to the next ones
            logger.exception("could not act on %s", notice)

    async def _keep_lease(self) -> None:
        period = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                if not await self._leases.renew(self._host):
                    logger.error("this replica's lease had run out; the others closed the requests it held")
                closed = await self._leases.take_over(SERVER_ACTOR)
                if closed:
                    logger.warning("closed %d request(s) of a replica that stopped as abandoned", len(closed))
                    for request_id in closed:
                        await self._peers.closed_elsewhere(request_id, taken_over=True)
            except StoreError as exc:
                logger.warning("could not renew this replica's lease: %s", exc)
