"""stafftask: the console's staff task queue (patients who asked to cancel or move, unread replies, failed
messages)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.crypto
import models.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stafftask",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("inbox_event_id", sa.Integer(), nullable=True),
        sa.Column("outbound_message_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.String(length=200), nullable=False),
        sa.Column("reply_text", models.crypto.EncryptedText(), nullable=True),
        sa.Column("done_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_by", sa.String(length=254), nullable=True),
        sa.Column("done_note", models.crypto.EncryptedText(), nullable=True),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.ForeignKeyConstraint(["inbox_event_id"], ["webhookevent.id"]),
        sa.ForeignKeyConstraint(["outbound_message_id"], ["outboundmessage.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(op.f("ix_stafftask_status"), "stafftask", ["status"], unique=False)
    op.create_index(op.f("ix_stafftask_created_at"), "stafftask", ["created_at"], unique=False)
    op.create_index(op.f("ix_stafftask_contact_id"), "stafftask", ["contact_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_stafftask_contact_id"), table_name="stafftask")
    op.drop_index(op.f("ix_stafftask_created_at"), table_name="stafftask")
    op.drop_index(op.f("ix_stafftask_status"), table_name="stafftask")
    op.drop_table("stafftask")
