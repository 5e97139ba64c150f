"""The clinic's own records: who the patients are and what they have booked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from models.crypto import EncryptedText
from models.types import UTCDateTime, utcnow


class Contact(SQLModel, table=True):
    """A patient. Phone and email are encrypted; `*_hash` columns are keyed hashes used to find them."""

    id: int | None = Field(default=None, primary_key=True)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, sa_column=Column(EncryptedText, nullable=True))
    email_hash: str | None = Field(default=None, max_length=64, index=True)
    phone: str | None = Field(default=None, sa_column=Column(EncryptedText, nullable=True))
    phone_hash: str | None = Field(default=None, max_length=64, index=True)
    wix_contact_id: str | None = Field(default=None, max_length=64, index=True)
    google_resource_name: str | None = Field(default=None, max_length=128, index=True)  # people/c123…
    # When the patient opted in to marketing on each channel (the consent ledger holds how and in what words);
    # campaigns go only to contacts with consent here and no suppression.
    email_marketing_consent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sms_marketing_consent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or "patient"


class Booking(SQLModel, table=True):
    """The newest known state of a Wix booking; `revision` decides which event is newest."""

    id: int | None = Field(default=None, primary_key=True)
    wix_booking_id: str = Field(max_length=64, unique=True)
    wix_instance_id: str | None = Field(default=None, max_length=64)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    status: str = Field(sa_type=String(16))
    revision: int = Field(default=0)
    service_name: str | None = Field(default=None, max_length=300)
    location: str | None = Field(default=None, max_length=500)
    timezone: str | None = Field(default=None, max_length=64)
    start_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    end_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_event_id: int | None = Field(default=None, foreign_key="webhookevent.id")
    patient_confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    staff_attention: str | None = Field(default=None, max_length=32, index=True)
    staff_attention_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The Google Calendar event mirrors the booking up to this revision (None: never synced).
    calendar_event_id: str | None = Field(default=None, max_length=1024)
    calendar_synced_revision: int | None = Field(default=None)
    calendar_synced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
