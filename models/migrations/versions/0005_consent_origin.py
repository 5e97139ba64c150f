"""who made each consent change: `origin` on suppressions and ledger entries

A patient's own opt-out (STOP by SMS, an email unsubscribe) may be lifted only by that patient, so each
suppression and ledger entry records who made it. Rows written before this revision are classified from
their `reason`/`source`: staff entries as staff, bounces as the provider's, everything else (replies,
provider-reported opt-outs, unsubscribes, SendGrid's drops, which may be either, anything unrecognised) as
the patient's own on that channel: the safe reading.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = {"suppression": "reason", "consentevent": "source"}


def _backfill(table: str, column: str) -> sa.Update:
    rows = sa.table(table, sa.column(column), sa.column("channel"), sa.column("origin"))
    origin = sa.case(
        (rows.c[column] == "staff", "staff"),
        (rows.c[column] == "sendgrid_bounce", "provider"),
        (rows.c.channel == "email", "patient_email"),
        else_="patient_sms",
    )
    return rows.update().values(origin=origin)


def upgrade() -> None:
    for table, column in _TABLES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("origin", sa.String(length=16), nullable=True))
        op.execute(_backfill(table, column))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("origin", existing_type=sa.String(length=16), nullable=False)


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("origin")
