"""inbox rows count the flow runs found dead without an outcome

`webhookevent.redispatches`: how many times the event's flow run was found crashed, cancelled or stuck with
the row still `dispatched`, and the event handed to a new run (whose idempotency key carries the count).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhookevent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redispatches", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("webhookevent", schema=None) as batch_op:
        batch_op.drop_column("redispatches")
