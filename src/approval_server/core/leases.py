"""The replicas' leases, kept on PostgreSQL's clock (see `replicas`).

Every time here is the database's `now()`, never a replica's own wall clock: one whose clock runs behind must not
look dead to the others (and have its agents' requests abandoned), and one whose clock runs ahead must not delay the
takeover of a dead one. A lease is held while its replica renewed it within `lease` of the database's now.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from approval_server.models import Status
from approval_server.store import Store
from approval_server.store.database import DB_NOW
from approval_server.store.tables import replicas, requests

TAKEOVER_REASON = "the server the agent waited on stopped renewing its lease (it died or lost the database)"


class Leases:
    def __init__(self, store: Store, lease: timedelta) -> None:
        self._store = store
        self._lease = sa.literal(lease, sa.Interval)
        self._replica = store.replica

    def _live(self) -> sa.ColumnElement[bool]:
        return replicas.c.heartbeat_at >= DB_NOW - self._lease

    async def register(self, host: str) -> None:
        values = {"id": self._replica, "host": host, "started_at": DB_NOW, "heartbeat_at": DB_NOW}
        await self._store.transaction(lambda c: c.execute(replicas.insert().values(values)))

    async def renew(self, host: str) -> bool:
        """Renew this replica's lease; False when another replica had taken it as dead (its lease is then new)."""

        def work(c: Connection) -> bool:
            renew = replicas.update().where(replicas.c.id == self._replica).values(heartbeat_at=DB_NOW)
            if c.execute(renew).rowcount == 1:
                return True
            values = {"id": self._replica, "host": host, "started_at": DB_NOW, "heartbeat_at": DB_NOW}
            c.execute(replicas.insert().values(values))
            return False

        return await self._store.transaction(work)

    async def holds(self, replica: str | None) -> bool:
        """Whether `replica` holds its lease now."""
        query = sa.select(sa.func.count()).where(replicas.c.id == replica, self._live())
        return bool(await self._store.transaction(lambda c: c.execute(query).scalar_one()))

    async def take_over(self, actor: str) -> list[str]:
        """Close as abandoned every pending request whose replica holds no lease, and forget those replicas; returns
        the ids closed. Several replicas may do this at once: each row closes once."""

        def work(c: Connection) -> list[str]:
            live = sa.select(replicas.c.id).where(self._live())
            closed = [
                row.id
                for row in c.execute(
                    requests.update()
                    .where(
                        requests.c.status == Status.PENDING.value,
                        sa.or_(requests.c.replica.is_(None), requests.c.replica.not_in(live)),
                    )
                    .values(
                        status=Status.ABANDONED.value,
                        decided_at=DB_NOW,
                        decided_by=actor,
                        decided_via="takeover",
                        reason=TAKEOVER_REASON,
                    )
                    .returning(requests.c.id)
                )
            ]
            c.execute(replicas.delete().where(sa.not_(self._live())))
            for request_id in closed:
                self._store.announce_in(c, "closed", request_id)
            return closed

        return await self._store.transaction(work)

    async def retire(self) -> None:
        await self._store.transaction(lambda c: c.execute(replicas.delete().where(replicas.c.id == self._replica)))
