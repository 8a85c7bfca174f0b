"""The database schema, written once for SQLite and PostgreSQL. Migrations under `migrations/` create it."""

from __future__ import annotations

import re
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


class AnyText(sa.TypeDecorator[str]):
    """Text that may hold any character, U+0000 included, on every backend.

    PostgreSQL's text types cannot store U+0000, which an agent's call or an API body can carry. There, text is
    stored with a reversible escape: `␀` (U+2400) is written `␀␀` and U+0000 is written `␀0`, so two different texts
    never store alike, and reads and comparisons (whose values are escaped the same way) see the original. (A search
    for U+0000 may also find a `␀` followed by `0`.) SQLite stores every text as it is.
    """

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or dialect.name != "postgresql":
            return value
        return value.replace(_MARK, _MARK * 2).replace("\x00", _MARK + "0")

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or dialect.name != "postgresql" or _MARK not in value:
            return value
        return _ESCAPED.sub(lambda match: _MARK if match.group(1) == _MARK else "\x00", value)


_MARK = "\u2400"
_ESCAPED = re.compile(f"{_MARK}([{_MARK}0])")


requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", AnyText(16), primary_key=True),
    sa.Column("tool_name", AnyText(), nullable=False),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("updated_input", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("tool_use_id", AnyText(), nullable=True),
    sa.Column("extra", sa.JSON, nullable=False),
    sa.Column("client", AnyText(), nullable=True),
    sa.Column("agent", AnyText(), nullable=True),
    sa.Column("session", AnyText(), nullable=True),
    sa.Column("cwd", AnyText(), nullable=True),
    sa.Column("agent_kind", AnyText(32), nullable=True),
    sa.Column("agent_version", AnyText(32), nullable=True),
    sa.Column("editable", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("rendered", AnyText(), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("status", AnyText(16), nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("decided_by", AnyText(), nullable=True),
    sa.Column("decided_via", AnyText(), nullable=True),
    sa.Column("reason", AnyText(), nullable=True),
    sa.Column("remembered", AnyText(16), nullable=True),
    sa.Column("replica", AnyText(16), nullable=True),  # the server whose caller waits (see `replicas`)
    # Set once a request is let wait for a human (see `fair_share`): the token it came with, and whose share it uses.
    sa.Column("credential", AnyText(), nullable=True),
    sa.Column("share", AnyText(), nullable=True),
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
    sa.Column("request_id", AnyText(16), sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("status", AnyText(16), nullable=False),
    sa.Column("actor", AnyText(), nullable=False),
    sa.Column("channel", AnyText(), nullable=False),
    sa.Column("message", AnyText(), nullable=True),
    sa.Column("updated_input", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("outcome", AnyText(16), nullable=False),
    sa.Column("remember", AnyText(16), nullable=True),  # `Remember.text`
    sa.Index("ix_answers_request_id", "request_id"),
)

# Messages sent to approvers, so a reply or a delivery report can be tied back to its request. A failure reported
# before the send was recorded (Twilio's callback can overtake the API's answer, and reach another replica) is kept
# with no request, until the send claims it.
outbound_messages = sa.Table(
    "outbound_messages",
    metadata,
    sa.Column("sid", AnyText(64), primary_key=True),
    sa.Column("request_id", AnyText(16), sa.ForeignKey("requests.id"), nullable=True),
    sa.Column("channel", AnyText(32), nullable=False),
    sa.Column("recipient", AnyText(), nullable=False),
    sa.Column("status", AnyText(32), nullable=False),
    sa.Column("error_code", AnyText(), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_outbound_messages_request_id", "request_id"),
    # What an approver was sent last (see `outbox`): a reply without an id is bound only when that leaves no doubt.
    sa.Index("ix_outbound_messages_recipient_created_at", "recipient", "created_at"),
)

# Each request's turn to be sent to each approver on a channel, taken before sending: sent, or held back by the rate
# limit (see `outbox`); `summarised` marks the held one whose turn sent the one message saying how many more wait.
approver_sends = sa.Table(
    "approver_sends",
    metadata,
    sa.Column("request_id", AnyText(16), sa.ForeignKey("requests.id"), primary_key=True),
    sa.Column("channel", AnyText(32), primary_key=True),
    sa.Column("recipient", AnyText(), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("held", sa.Boolean, nullable=False),
    sa.Column("summarised", sa.Boolean, nullable=False),
    sa.Index("ix_approver_sends_recipient_at", "channel", "recipient", "at"),
)

# Keys already used, each at most once: inbound webhook deliveries (a retried delivery is applied once) and
# request links (a link decides once).
seen_webhooks = sa.Table(
    "seen_webhooks",
    metadata,
    sa.Column("key", AnyText(128), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
)

# Remembered allowances: an allow that also allows the same again (see `grants`), until it expires or is revoked.
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", AnyText(16), primary_key=True),
    sa.Column("kind", AnyText(16), nullable=False),
    sa.Column("scope", AnyText(), nullable=False),
    sa.Column("tool_name", AnyText(), nullable=False),
    sa.Column("key", AnyText(), nullable=False),
    sa.Column("rule", AnyText(), nullable=False),
    sa.Column("request_id", AnyText(16), sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("agent", AnyText(), nullable=True),
    sa.Column("session", AnyText(), nullable=True),
    sa.Column("cwd", AnyText(), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("created_by", AnyText(), nullable=False),
    sa.Column("created_via", AnyText(), nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoked_by", AnyText(), nullable=True),
    sa.Index("ix_grants_scope_tool_name", "scope", "tool_name"),
    sa.Index("ix_grants_expires_at", "expires_at"),
)

# The servers sharing this database, each with a lease it renews: a replica that stops renewing is dead, and the
# requests it held are closed by another.
replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", AnyText(16), primary_key=True),
    sa.Column("host", AnyText(), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)

# Each person's own dashboard login links (`approval-server people link`): only a SHA-256 of the link's secret is
# kept, so a copy of the database signs no one in. A revoked login ends its sessions on every replica.
person_logins = sa.Table(
    "person_logins",
    metadata,
    sa.Column("id", AnyText(16), primary_key=True),
    sa.Column("person", AnyText(), nullable=False),
    sa.Column("secret_hash", AnyText(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", AnyText(), nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoked_by", AnyText(), nullable=True),
    sa.Index("ix_person_logins_person", "person"),
)
