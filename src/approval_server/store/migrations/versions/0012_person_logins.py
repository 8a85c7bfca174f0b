"""Each person's own dashboard login links: who they sign in as, when made and by whom, last used, revoked.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from approval_server.store.tables import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_logins",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("person", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("revoked_by", sa.Text, nullable=True),
    )
    op.create_index("ix_person_logins_person", "person_logins", ["person"])


def downgrade() -> None:
    op.drop_index("ix_person_logins_person", "person_logins")
    op.drop_table("person_logins")
