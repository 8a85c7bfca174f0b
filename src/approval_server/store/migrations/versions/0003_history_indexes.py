"""Indexes for the dashboard history: newest first (then by id), in all or within one status or one tool.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each index ends with the id, the history's tie-breaker (newest first, then id), so that SQLite reads a page in
    # index order instead of sorting every row before it (a deep page of 10,000 requests took 15-35 ms that way).
    op.drop_index("ix_requests_status", table_name="requests")
    op.drop_index("ix_requests_created_at", table_name="requests")
    op.create_index("ix_requests_created_at_id", "requests", ["created_at", "id"])
    op.create_index("ix_requests_status_created_at_id", "requests", ["status", "created_at", "id"])
    op.create_index("ix_requests_tool_name_created_at_id", "requests", ["tool_name", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_requests_tool_name_created_at_id", table_name="requests")
    op.drop_index("ix_requests_status_created_at_id", table_name="requests")
    op.drop_index("ix_requests_created_at_id", table_name="requests")
    op.create_index("ix_requests_created_at", "requests", ["created_at"])
    op.create_index("ix_requests_status", "requests", ["status"])
