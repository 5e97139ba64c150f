"""The clinic's own records: who the patients are and what they have booked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, String, event
from sqlmodel import Field, SQLModel

from models.crypto import EncryptedText, get_cipher
from models.types import UTCDateTime, utcnow


class Contact(SQLModel, table=True):
    """A patient. Names, phone and email are encrypted; `*_hash` columns are keyed hashes used to find them
    (names are never looked up, so they have none)."""

    id: int | None = Field(default=None, primary_key=True)
    first_name: str | None = Field(default=None, sa_column=Column(EncryptedText("contact.first_name")))
    last_name: str | None = Field(default=None, sa_column=Column(EncryptedText("contact.last_name")))
    email: str | None = Field(default=None, sa_column=Column(EncryptedText("contact.email"), nullable=True))
    email_hash: str | None = Field(default=None, max_length=64, index=True)
    phone: str | None = Field(default=None, sa_column=Column(EncryptedText("contact.phone"), nullable=True))
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
    """The newest known state of a Wix booking; `revision` decides which event is newest.

    The service booked ("MRI – Knee") and where are encrypted; campaigns select by them through
    `service_key` / `location_key`, keyed hashes of the name as compared (`name_key`), set on every write."""

    id: int | None = Field(default=None, primary_key=True)
    wix_booking_id: str = Field(max_length=64, unique=True)
    wix_instance_id: str | None = Field(default=None, max_length=64)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    status: str = Field(sa_type=String(16))
    revision: int = Field(default=0)
    service_name: str | None = Field(default=None, sa_column=Column(EncryptedText("booking.service_name")))
    service_key: str | None = Field(default=None, max_length=64, index=True)
    location: str | None = Field(default=None, sa_column=Column(EncryptedText("booking.location")))
    location_key: str | None = Field(default=None, max_length=64, index=True)
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


DASHES = ("\u2013", "\u2014", "\u2212")  # en dash, em dash, minus: written as "-" in a campaign file


def name_key(name: str) -> str:
    """A Wix name as compared: any case, any dash (Wix writes "MRI – Knee", people type "MRI - Knee")."""
    for dash in DASHES:
        name = name.replace(dash, "-")
    return name.strip().lower()


def name_index(kind: str, name: str | None) -> str | None:
    """The blind index a booking's service ("service") or location ("location") is found by."""
    return None if name is None else get_cipher().blind_index(kind, name_key(name))


@event.listens_for(Booking, "before_insert")
@event.listens_for(Booking, "before_update")
def _index_names(mapper: Any, connection: Any, booking: Booking) -> None:
    """Keep the lookup hashes in step with the encrypted names, whoever writes the booking."""
    booking.service_key = name_index("service", booking.service_name)
    booking.location_key = name_index("location", booking.location)
