"""When each key and secret was first seen in use: what the key-age check measures ages from.

Keys are named by a short id derived from them (never the key itself), per purpose ("encryption",
"blind-index", "WIX_WEBHOOK_SECRET", ...). A key in use before this table existed counts from the day it was
first recorded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class CryptoKey(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("purpose", "key_id", name="uq_cryptokey_purpose_key_id"),)

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(max_length=64)
    key_id: str = Field(max_length=16)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
