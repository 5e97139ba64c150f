"""wix reconciliation runs: one row per `wix-reconcile` run (window, totals, differences, sync rate)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 19:08:55.617763
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wixreconciliation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("window_start", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("window_end", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("wix_total", sa.Integer(), nullable=False),
        sa.Column("matching", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("stale", sa.Integer(), nullable=False),
        sa.Column("mismatched", sa.Integer(), nullable=False),
        sa.Column("unreadable", sa.Integer(), nullable=False),
        sa.Column("fed", sa.Integer(), nullable=False),
        sa.Column("sync_rate", sa.Float(), nullable=True),
        sa.Column("wix_requests", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("wixreconciliation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wixreconciliation_window_end"), ["window_end"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wixreconciliation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wixreconciliation_window_end"))

    op.drop_table("wixreconciliation")
