"""The store's part that keeps grants (see `grants`): the one in force that allows a call again, the list, and
revoking one. Every time here is the store's clock (see `Database.clock`); a grant is recorded by `Store.resolve`,
in the transaction of the answer that remembers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from approval_server.grants import Grant
from approval_server.store.database import DB_NOW, Database
from approval_server.store.tables import grants


def _row_to_grant(row: sa.Row[Any]) -> Grant:
    return Grant(**row._asdict())


def _matching_grant(now: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """Asked for every call the policy leaves to a human: the oldest grant in force at `now` that allows it again."""
    return (
        grants.select()
        .where(
            grants.c.scope.in_(sa.bindparam("scopes", expanding=True)),
            grants.c.tool_name == sa.bindparam("tool_name"),
            grants.c.key == sa.bindparam("key"),
            grants.c.revoked_at.is_(None),
            grants.c.expires_at > now,
        )
        .order_by(grants.c.created_at, grants.c.id)
        .limit(1)
    )


_MATCHING_GRANT = _matching_grant(sa.bindparam("at"))
_MATCHING_GRANT_ON_DB_CLOCK = _matching_grant(DB_NOW)


class GrantRecords(Database):
    """Grants as the store keeps them."""

    async def matching_grant(
        self, scopes: list[str], tool_name: str, key: str, at: datetime | None = None
    ) -> Grant | None:
        """The oldest grant in force at `at` (by default now, on the store's clock) that allows `tool_name` with
        `key` in one of `scopes`."""
        params = {"scopes": scopes, "tool_name": tool_name, "key": key, "at": at or datetime.now(UTC)}
        query = _MATCHING_GRANT_ON_DB_CLOCK if at is None and self.shared else _MATCHING_GRANT

        def work(c: Connection) -> Grant | None:
            row = c.execute(query, params).first()
            return _row_to_grant(row) if row else None

        return await self._run(work)

    async def grants(self, *, active_at: datetime | None = None, limit: int = 200) -> list[Grant]:
        """Grants, newest first: only those still in force at `active_at` when it is given."""
        query = grants.select().order_by(grants.c.created_at.desc(), grants.c.id.desc()).limit(limit)
        if active_at is not None:
            query = query.where(grants.c.revoked_at.is_(None), grants.c.expires_at > active_at)
        return await self._run(lambda c: [_row_to_grant(row) for row in c.execute(query)])

    async def grants_from(self, request_id: str) -> list[Grant]:
        query = grants.select().where(grants.c.request_id == request_id).order_by(grants.c.created_at)
        return await self._run(lambda c: [_row_to_grant(row) for row in c.execute(query)])

    async def revoke_grant(self, grant_id: str, actor: str) -> tuple[bool, Grant | None]:
        """End a grant now, on the store's clock. Returns whether this call ended it (False: it had already ended),
        and the grant."""

        def work(c: Connection) -> tuple[bool, Grant | None]:
            at = self.clock(c, datetime.now(UTC))
            changed = c.execute(
                grants.update()
                .where(grants.c.id == grant_id, grants.c.revoked_at.is_(None), grants.c.expires_at > at)
                .values(revoked_at=at, revoked_by=actor)
            ).rowcount
            row = c.execute(grants.select().where(grants.c.id == grant_id)).first()
            return changed == 1, _row_to_grant(row) if row else None

        return await self._run(work)
