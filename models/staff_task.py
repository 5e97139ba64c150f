"""The staff task queue: what a person must do about a patient, created in the same transaction as the
decision that calls for it (SMS triage routing a reply to staff, a patient message failing for good).

The reply's text and the note a person writes when done are patient details: encrypted at rest like the
contact's own. The patient's number is not copied here; the console reads it from the contact on an explicit,
audited request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from models.crypto import EncryptedText
from models.types import UTCDateTime, utcnow


class StaffTask(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)  # "reply:<inbox event>" / "message:<outbox id>": once each
    kind: str = Field(sa_type=String(32))  # a StaffTaskKind
    status: str = Field(default="open", sa_type=String(8), index=True)  # a StaffTaskStatus
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    booking_id: int | None = Field(default=None, foreign_key="booking.id")
    inbox_event_id: int | None = Field(default=None, foreign_key="webhookevent.id")
    outbound_message_id: int | None = Field(default=None, foreign_key="outboundmessage.id")
    summary: str = Field(default="", max_length=200)  # how the system read it; never patient words
    reply_text: str | None = Field(default=None, sa_column=Column(EncryptedText("stafftask.reply_text")))
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_by: str | None = Field(default=None, max_length=254)
    done_note: str | None = Field(default=None, sa_column=Column(EncryptedText("stafftask.done_note")))
