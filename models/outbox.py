"""The outbox: one row per message we intend to send, so nothing is sent twice or silently lost."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from models.crypto import EncryptedText
from models.enums import MessageStatus
from models.types import UTCDateTime, utcnow


class OutboundMessage(SQLModel, table=True):
    """A message to a patient. `idempotency_key` is unique and is also sent to the provider.

    Recipient and text are encrypted: the text names the patient and their procedure.
    """

    # The sweeps ask "pending and due, oldest first" of a table that holds every scheduled reminder. Campaign
    # rows stay out of it: the campaign flow finds its own through `campaign_id`, and a 100,000-recipient
    # campaign would otherwise rewrite this index three times per recipient and fill the sweep's scan. Every
    # other lookup by status also names a booking or a campaign, so status has no index of its own.
    # A campaign claims its rows in id order from a cursor (`campaign_id = ? AND id > ? ORDER BY id LIMIT n`):
    # (campaign_id, id) answers that from where the cursor stands. A campaign_id-only index did on SQLite (its
    # entries end with the rowid) but not on PostgreSQL, where each claim read every row of the campaign and
    # sorted them: quadratic, 1.7 s a claim at 1,000,000 recipients (docs/benchmarks.md, migration 0019).
    __table_args__ = (
        Index(
            "ix_outboundmessage_due",
            "status",
            "send_after",
            sqlite_where=text("campaign_id IS NULL"),
            postgresql_where=text("campaign_id IS NULL"),
        ),
        Index("ix_outboundmessage_campaign", "campaign_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    channel: str = Field(sa_type=String(16))
    purpose: str = Field(sa_type=String(16))
    kind: str = Field(sa_type=String(32))
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    booking_id: int | None = Field(default=None, foreign_key="booking.id", index=True)
    recipient: str = Field(
        sa_column=Column(
            EncryptedText("outboundmessage.recipient", also=("contact.email", "contact.phone")),
            nullable=False,
        )
    )
    body: str = Field(sa_column=Column(EncryptedText("outboundmessage.body"), nullable=False))
    status: str = Field(default=MessageStatus.PENDING, sa_type=String(16))
    provider: str | None = Field(default=None, max_length=32)
    provider_message_id: str | None = Field(default=None, max_length=100, index=True)
    attempts: int = Field(default=0)
    # While `sending`: the process holding the claim and until when it holds it (renewed while it sends), so
    # a claim whose process died is taken back at once, and one whose lease lapsed soon after.
    claimed_by: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    send_after: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # What a booking message was written about, so it can be re-checked against the booking before sending.
    booking_revision: int | None = Field(default=None)
    appointment_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Campaign messages: which campaign and A/B variant; engagement as the provider or our tracking saw it.
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id")  # indexed with id, above
    variant: str | None = Field(default=None, max_length=8)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    clicked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # `body` emptied by retention


class OutboundMessageEvent(SQLModel, table=True):
    """The status history of an outbound message: what happened, when, and why."""

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="outboundmessage.id", index=True)
    status: str = Field(sa_type=String(16))
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class DeliveryReceipt(SQLModel, table=True):
    """One provider delivery receipt: MobileMessage posts one per message part and status."""

    __table_args__ = (
        UniqueConstraint(
            "provider_message_id", "part_number", "status", name="uq_deliveryreceipt_message_part_status"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: int | None = Field(default=None, foreign_key="outboundmessage.id", index=True)
    provider_message_id: str = Field(max_length=100, index=True)
    part_number: int = Field(default=1)
    total_parts: int | None = Field(default=None)
    status: str = Field(sa_type=String(16))
    reported_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
