"""Reconciliation runs: how many of Wix's bookings the CRM held right, per window (the booking sync rate)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class WixReconciliation(SQLModel, table=True):
    """One `wix-reconcile` run over the bookings Wix changed in `[window_start, window_end)`.

    `matching` counts the bookings the CRM already held at Wix's revision (or newer) with the same status and
    time; `missing`, `stale` (an older revision) and `mismatched` (same revision, different status or time)
    are the differences, and `fed` the new inbox rows that send the first two through booking intake.
    `sync_rate` = matching / wix_total (None for an empty window). The next run over the same bookings finds
    the fed ones matching once booking intake has applied them.
    """

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    window_start: datetime = Field(sa_type=UTCDateTime, nullable=False)
    window_end: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    status: str = Field(default="running", max_length=16)  # running, completed, failed
    wix_total: int = Field(default=0)
    matching: int = Field(default=0)
    missing: int = Field(default=0)
    stale: int = Field(default=0)
    mismatched: int = Field(default=0)
    unreadable: int = Field(default=0)
    fed: int = Field(default=0)
    sync_rate: float | None = Field(default=None)
    wix_requests: int = Field(default=0)
    flow_run_id: str | None = Field(default=None, max_length=36)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
