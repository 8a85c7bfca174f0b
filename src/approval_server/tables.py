"""The database schema, written once for SQLite and PostgreSQL. Migrations under `migrations/` create it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back timezone-aware, on every backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("tool_name", sa.Text, nullable=False),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("updated_input", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("tool_use_id", sa.Text, nullable=True),
    sa.Column("extra", sa.JSON, nullable=False),
    sa.Column("client", sa.Text, nullable=True),
    sa.Column("agent", sa.Text, nullable=True),
    sa.Column("session", sa.Text, nullable=True),
    sa.Column("cwd", sa.Text, nullable=True),
    sa.Column("rendered", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("decided_via", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("remembered", sa.String(16), nullable=True),
    sa.Column("replica", sa.String(16), nullable=True),  # the server whose caller waits (see `replicas`)
    # The history pages: newest first, in all or within one status or one tool. Each index ends with the id, the
    # tie-breaker of that order, so a page (however deep) is read in index order and never sorted.
    sa.Index("ix_requests_created_at_id", "created_at", "id"),
    sa.Index("ix_requests_status_created_at_id", "status", "created_at", "id"),
    sa.Index("ix_requests_tool_name_created_at_id", "tool_name", "created_at", "id"),
)

# Every answer given, the winning one and those that came too late.
answers = sa.Table(
    "answers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(16), sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("updated_input", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Index("ix_answers_request_id", "request_id"),
)

# Messages sent to approvers, so a reply or a delivery report can be tied back to its request.
outbound_messages = sa.Table(
    "outbound_messages",
    metadata,
    sa.Column("sid", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(16), sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("error_code", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_outbound_messages_request_id", "request_id"),
)

# Keys already used, each at most once: inbound webhook deliveries (a retried delivery is applied once) and
# request links (a link decides once).
seen_webhooks = sa.Table(
    "seen_webhooks",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
)

# Remembered allowances: an allow that also allows the same again (see `grants`), until it expires or is revoked.
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("tool_name", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("request_id", sa.String(16), sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("agent", sa.Text, nullable=True),
    sa.Column("session", sa.Text, nullable=True),
    sa.Column("cwd", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_via", sa.Text, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoked_by", sa.Text, nullable=True),
    sa.Index("ix_grants_scope_tool_name", "scope", "tool_name"),
    sa.Index("ix_grants_expires_at", "expires_at"),
)

# The servers sharing this database, each with a lease it renews: a replica that stops renewing is dead, and the
# requests it held are closed by another.
replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)
