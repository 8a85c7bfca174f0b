"""Several servers on one database: each replica's lease, and which replica a pending request waits on.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from approval_server.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("replica", sa.String(16), nullable=True))
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replicas")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("replica")
