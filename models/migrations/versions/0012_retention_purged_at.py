"""retention: `purged_at` on inbox events and outbox messages (their bodies emptied, ids and dedupe keys kept)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhookevent") as batch:
        batch.add_column(sa.Column("purged_at", models.types.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("outboundmessage") as batch:
        batch.add_column(sa.Column("purged_at", models.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outboundmessage") as batch:
        batch.drop_column("purged_at")
    with op.batch_alter_table("webhookevent") as batch:
        batch.drop_column("purged_at")
