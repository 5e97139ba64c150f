"""Marketing campaigns. Each recipient of a campaign is an outbox row (`OutboundMessage.campaign_id`), so a
crashed or re-run campaign resumes from the outbox instead of sending anyone a second copy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.enums import CampaignStatus
from models.types import UTCDateTime, utcnow


class Campaign(SQLModel, table=True):
    """One launch of a campaign; `slug` (from its name) makes a repeated launch the same campaign."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=120, unique=True)
    name: str = Field(max_length=200)
    channel: str = Field(sa_type=String(16))
    status: str = Field(default=CampaignStatus.SENDING, sa_type=String(20), index=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    winner_variant: str | None = Field(default=None, max_length=8)
    winner_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    flow_run_id: str | None = Field(default=None, max_length=64)
    send_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    test_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ContactTag(SQLModel, table=True):
    """A marketing tag on a contact (campaign audiences filter on them)."""

    __table_args__ = (UniqueConstraint("contact_id", "tag", name="uq_contacttag_contact_tag"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    tag: str = Field(max_length=100, index=True)
