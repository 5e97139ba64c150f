"""inbox rows name what they are about (a Wix booking id) and its revision

So a notice about an older revision is dropped while a newer event for the same booking is stored but not yet
applied, instead of reaching the patient after the cancellation that made it obsolete.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 19:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhookevent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.add_column(sa.Column("revision", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_webhookevent_subject", ["source", "subject", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhookevent", schema=None) as batch_op:
        batch_op.drop_index("ix_webhookevent_subject")
        batch_op.drop_column("revision")
        batch_op.drop_column("subject")
