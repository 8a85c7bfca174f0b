"""A delivery report that overtakes its send is kept until the send is recorded: its message has no request yet.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_messages") as batch:
        batch.alter_column("request_id", existing_type=sa.String(16), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM outbound_messages WHERE request_id IS NULL")
    with op.batch_alter_table("outbound_messages") as batch:
        batch.alter_column("request_id", existing_type=sa.String(16), nullable=False)
