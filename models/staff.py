"""The clinic's staff who may use the console, and the role each acts in (the first admin from the CLI)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class StaffMember(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True)  # lower case: the verified email of the Google sign-in
    role: str = Field(sa_type=String(16))  # a StaffRole
    added_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    added_by: str = Field(max_length=254)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
