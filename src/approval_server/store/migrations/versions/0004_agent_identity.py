"""Which agent asked: the name its owner gave it, its session and its working directory.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("agent", sa.Text, nullable=True))
        batch.add_column(sa.Column("session", sa.Text, nullable=True))
        batch.add_column(sa.Column("cwd", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("cwd")
        batch.drop_column("session")
        batch.drop_column("agent")
