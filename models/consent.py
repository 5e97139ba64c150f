"""Who may be contacted, on which channel, for what: the suppression list and the consent ledger.

Suppressions are keyed on the address's blind index (the same keyed hash contacts are found by), not on
the contact: a STOP from a number we hold no contact for, or a number that later moves to another contact,
is still honoured. The consent ledger is append-only because the Spam Act puts the burden of proof on the
sender: it records how and when consent was given or withdrawn, by whom, and in what words.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.crypto import EncryptedText
from models.types import UTCDateTime, utcnow


class Suppression(SQLModel, table=True):
    """One address must not receive messages of `purpose` on `channel`. Lifting it deletes the row (the
    ledger keeps the history). A `transactional` suppression means nothing at all on the channel (a STOP)."""

    __table_args__ = (
        UniqueConstraint("address_hash", "channel", "purpose", name="uq_suppression_address_channel_purpose"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(max_length=64, index=True)
    channel: str = Field(sa_type=String(16))
    purpose: str = Field(sa_type=String(16))
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    reason: str = Field(max_length=64)  # opt_out_reply, provider_unsubscribe, provider_blocked, staff, …
    # Who suppressed it (`ConsentOrigin`): a patient's own opt-out is lifted only by that patient.
    origin: str = Field(sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ConsentEvent(SQLModel, table=True):
    """An entry in the consent ledger: consent `granted` or `withdrawn` for a channel and purpose."""

    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(max_length=64, index=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    channel: str = Field(sa_type=String(16))
    purpose: str = Field(sa_type=String(16))
    action: str = Field(sa_type=String(16))  # granted | withdrawn | refused
    source: str = Field(max_length=64)  # sms_reply, provider_unsubscribe, provider_blocked, sendgrid_…, staff
    # The patient's words, or staff's note of them
    wording: str | None = Field(
        default=None, sa_column=Column(EncryptedText("consentevent.wording"), nullable=True)
    )
    webhook_event_id: int | None = Field(default=None, foreign_key="webhookevent.id")
    actor: str = Field(max_length=64)
    origin: str = Field(sa_type=String(16))  # `ConsentOrigin`: who made the change
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
