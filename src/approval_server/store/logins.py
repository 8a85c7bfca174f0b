"""The store's part that keeps each person's dashboard logins (see `web_auth`): made by `approval-server people
link`, looked up by the SHA-256 of the link's secret when someone signs in with it, checked on every page a session
from it opens (so a revoke ends that session at once, on every replica), and revoked by `people revoke`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from approval_server.store.database import Database
from approval_server.store.tables import person_logins


@dataclass(frozen=True)
class PersonLogin:
    """One login link of one person (its secret is not kept, only its hash)."""

    id: str
    person: str
    created_at: datetime
    created_by: str
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None


def _login(row: sa.Row[Any]) -> PersonLogin:
    values = row._asdict()
    values.pop("secret_hash")
    return PersonLogin(**values)


_LIVE = person_logins.c.revoked_at.is_(None)


class LoginRecords(Database):
    """Person logins as the store keeps them."""

    async def add_login(self, login_id: str, person: str, secret_hash: str, created_by: str) -> PersonLogin:
        def work(c: Connection) -> PersonLogin:
            values = {
                "id": login_id,
                "person": person,
                "secret_hash": secret_hash,
                "created_at": self.clock(c, datetime.now(UTC)),
                "created_by": created_by,
            }
            c.execute(person_logins.insert().values(values))
            return _login(c.execute(person_logins.select().where(person_logins.c.id == login_id)).one())

        return await self._run(work)

    async def sign_in(self, secret_hash: str) -> PersonLogin | None:
        """The live login whose secret has this hash, now marked used; None if there is none (or it was revoked)."""

        def work(c: Connection) -> PersonLogin | None:
            query = person_logins.update().where(person_logins.c.secret_hash == secret_hash, _LIVE)
            changed = c.execute(query.values(used_at=self.clock(c, datetime.now(UTC)))).rowcount
            if changed != 1:
                return None
            return _login(c.execute(person_logins.select().where(person_logins.c.secret_hash == secret_hash)).one())

        return await self._run(work)

    async def live_login(self, login_id: str) -> PersonLogin | None:
        """The login, unless it does not exist or was revoked."""
        query = person_logins.select().where(person_logins.c.id == login_id, _LIVE)

        def work(c: Connection) -> PersonLogin | None:
            row = c.execute(query).first()
            return _login(row) if row else None

        return await self._run(work)

    async def logins(self, person: str | None = None, *, revoked: bool = False) -> list[PersonLogin]:
        """Logins, oldest first: of one person when `person` is given; the revoked ones too when `revoked`."""
        query = person_logins.select().order_by(person_logins.c.created_at, person_logins.c.id)
        if person is not None:
            query = query.where(person_logins.c.person == person)
        if not revoked:
            query = query.where(_LIVE)
        return await self._run(lambda c: [_login(row) for row in c.execute(query)])

    async def revoke_logins(self, person: str, actor: str, login_id: str | None = None) -> list[PersonLogin]:
        """End the person's live logins (only `login_id`, when it is given), and every session made with them.
        Returns the logins this call ended."""

        def work(c: Connection) -> list[PersonLogin]:
            where = [person_logins.c.person == person, _LIVE]
            if login_id is not None:
                where.append(person_logins.c.id == login_id)
            ids = [row.id for row in c.execute(sa.select(person_logins.c.id).where(*where))]
            if not ids:
                return []
            at = self.clock(c, datetime.now(UTC))
            c.execute(
                person_logins.update().where(person_logins.c.id.in_(ids), _LIVE).values(revoked_at=at, revoked_by=actor)
            )
            query = person_logins.select().where(person_logins.c.id.in_(ids)).order_by(person_logins.c.created_at)
            return [_login(row) for row in c.execute(query)]

        return await self._run(work)
