"""outbox claims name their process and carry a lease

A message a crash left `sending` waited a fixed 10 minutes before it was sent again. Now a claim records the
claiming process and a lease the sender renews while it sends: a claim whose process is gone is taken back
at the next sweep, one whose lease lapsed soon after. Claims made before this keep the 10 minutes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 19:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outboundmessage", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
        batch_op.add_column(sa.Column("lease_until", models.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outboundmessage", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("claimed_by")
