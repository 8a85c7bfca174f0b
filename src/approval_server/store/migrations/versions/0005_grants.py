"""Remembered allowances ("allow for session", "allow for 30 minutes") and which allows made them.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from approval_server.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("remembered", sa.String(16), nullable=True))
    op.create_table(
        "grants",
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
    )
    op.create_index("ix_grants_scope_tool_name", "grants", ["scope", "tool_name"])
    op.create_index("ix_grants_expires_at", "grants", ["expires_at"])


def downgrade() -> None:
    op.drop_table("grants")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("remembered")
