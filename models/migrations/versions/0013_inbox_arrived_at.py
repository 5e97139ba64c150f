"""inbox: `arrived_at`, when the gateway began reading the webhook's request (receipt → committed latency)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhookevent") as batch:
        batch.add_column(sa.Column("arrived_at", models.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhookevent") as batch:
        batch.drop_column("arrived_at")
