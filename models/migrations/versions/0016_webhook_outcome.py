"""webhookoutcome: the gateway's answers to webhook requests per minute (the webhook error rate KPI)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-09 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhookoutcome",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("minute", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_webhookoutcome_minute"), "webhookoutcome", ["minute"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_webhookoutcome_minute"), table_name="webhookoutcome")
    op.drop_table("webhookoutcome")
