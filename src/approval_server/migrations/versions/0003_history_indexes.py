"""Indexes for the dashboard history: newest first within one status or one tool.

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
    op.drop_index("ix_requests_status", table_name="requests")
    op.create_index("ix_requests_status_created_at", "requests", ["status", "created_at"])
    op.create_index("ix_requests_tool_name_created_at", "requests", ["tool_name", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_tool_name_created_at", table_name="requests")
    op.drop_index("ix_requests_status_created_at", table_name="requests")
    op.create_index("ix_requests_status", "requests", ["status"])
