"""What the ops alerts last told a person, per condition, so de-duplication survives a restart.

One row per alert condition (`operations/conditions.py`), e.g. `inbox-backlog` or
`deployment-failed:reminder-sweep`. While `firing_since` is set the condition is firing and staff were told
at `last_notified_at`; it is told again only an hour (`ALERT_REPEAT_MINUTES`) later, and once, with a
"resolved" notice, when it clears (`resolved_at`, `firing_since` back to None).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class OpsAlert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    firing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # What the last evaluation measured (counts, ids, deployment names: never a patient).
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    notices: int = Field(default=0)  # notices sent for this condition, fired and resolved, ever
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
