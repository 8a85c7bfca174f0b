"""What each approver was sent: every request's turn (sent, or held back by the rate limit), and an index to find
the last message an approver got.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from approval_server.store.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approver_sends",
        sa.Column("request_id", sa.String(16), sa.ForeignKey("requests.id"), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("recipient", sa.Text, primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("held", sa.Boolean, nullable=False),
        sa.Column("summarised", sa.Boolean, nullable=False),
    )
    op.create_index("ix_approver_sends_recipient_at", "approver_sends", ["channel", "recipient", "at"])
    op.create_index("ix_outbound_messages_recipient_created_at", "outbound_messages", ["recipient", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbound_messages_recipient_created_at", "outbound_messages")
    op.drop_table("approver_sends")
