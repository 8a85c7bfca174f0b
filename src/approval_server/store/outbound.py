"""The store's part that records the messages sent for a request and their delivery reports (`outbound_messages`),
including a report that overtakes its send."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from approval_server.store.database import Database
from approval_server.store.tables import outbound_messages, requests


@dataclass(frozen=True)
class OutboundMessage:
    sid: str
    request_id: str
    recipient: str
    status: str
    error_code: str | None = None


def _row_to_outbound(row: sa.Row[Any]) -> OutboundMessage:
    return OutboundMessage(row.sid, row.request_id, row.recipient, row.status, row.error_code)


class OutboundMessages(Database):
    """Messages sent for requests, as the store records them."""

    def _upsert(self, table: sa.Table) -> Any:
        """An INSERT that can say what to do ON CONFLICT, in the dialect's own terms (both have the same API)."""
        dialect = postgresql if self.shared else sqlite
        return dialect.insert(table)

    async def record_outbound(
        self, sid: str, request_id: str, channel: str, recipient: str, status: str, at: datetime
    ) -> OutboundMessage:
        """Record a message sent for a request. Returns it as it now stands: failed already, when Twilio's report of
        the failure overtook the send (and was kept by `report_delivery`, on this replica or another)."""
        table = outbound_messages
        values = {
            "sid": sid,
            "request_id": request_id,
            "channel": channel,
            "recipient": recipient,
            "status": status,
            "created_at": at,
            "updated_at": at,
        }
        insert = (
            self._upsert(table)
            .values(values)
            .on_conflict_do_update(
                index_elements=[table.c.sid],
                set_={"request_id": request_id, "channel": channel, "recipient": recipient},
                where=table.c.request_id.is_(None),  # only a report waiting for its send, never another's message
            )
            .returning(table.c.status, table.c.error_code)
        )

        def work(c: Connection) -> OutboundMessage:
            row = c.execute(insert).first()
            status_now, error_code = (row.status, row.error_code) if row else (status, None)
            return OutboundMessage(sid, request_id, recipient, status_now, error_code)

        return await self._run(work)

    async def outbound(self, sid: str) -> OutboundMessage | None:
        query = outbound_messages.select().where(
            outbound_messages.c.sid == sid, outbound_messages.c.request_id.is_not(None)
        )

        def work(c: Connection) -> OutboundMessage | None:
            row = c.execute(query).first()
            return _row_to_outbound(row) if row else None

        return await self._run(work)

    async def report_delivery(
        self, sid: str, status: str, error_code: str | None, at: datetime, *, keep_unknown: bool = False
    ) -> list[OutboundMessage]:
        """Record a delivery report; returns every message sent for the same request, as they now stand.

        A report for a message not recorded yet returns nothing; with `keep_unknown` it is kept for the send to claim
        (`record_outbound`). The send may be recorded while this runs: then the report applies to it as usual.
        """
        table = outbound_messages
        changes = {"status": status, "error_code": error_code, "updated_at": at}
        keep = (
            self._upsert(table)
            .values(sid=sid, request_id=None, channel="", recipient="", created_at=at, **changes)
            .on_conflict_do_update(index_elements=[table.c.sid], set_=changes)
            .returning(table.c.request_id)
        )

        def lock(c: Connection, request_id: Any) -> None:
            # One request's reports are applied one at a time (its row locked), so that two failures reported at
            # once each see the other; PostgreSQL would otherwise let both read the other's message as not failed.
            # (SQLite runs one writer at a time anyway.)
            c.execute(sa.select(requests.c.id).where(requests.c.id.in_(request_id)).with_for_update(key_share=True))

        def work(c: Connection) -> list[OutboundMessage]:
            lock(c, sa.select(table.c.request_id).where(table.c.sid == sid))
            row = c.execute(
                table.update().where(table.c.sid == sid).values(changes).returning(table.c.request_id)
            ).first()
            if row is None and keep_unknown:
                row = c.execute(keep).first()  # its send, recorded meanwhile, is then found here after all
                if row is not None and row.request_id is not None:
                    lock(c, [row.request_id])
            if row is None or row.request_id is None:
                return []
            rows = c.execute(table.select().where(table.c.request_id == row.request_id))
            return [_row_to_outbound(r) for r in rows]

        return await self._run(work)
