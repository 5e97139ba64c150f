"""a connect ticket starts one sign-in: the ticket id each OAuth state was started with, unique

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauthstate", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ticket_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_oauthstate_ticket_id"), ["ticket_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("oauthstate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauthstate_ticket_id"))
        batch_op.drop_column("ticket_id")
