"""Which coding agent asked (`agent_kind`: claude-code, codex, gemini, …), its version, and whether it runs an
input the approver edited (`editable`); requests recorded before were all Claude Code's, which does.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("agent_kind", sa.String(32), nullable=True))
        batch.add_column(sa.Column("agent_version", sa.String(32), nullable=True))
        batch.add_column(sa.Column("editable", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("editable")
        batch.drop_column("agent_version")
        batch.drop_column("agent_kind")
