"""What the gateway answered to webhook requests, counted per minute: the webhook error rate's record.

Kept in the CRM database, not in logs, so the daily report can count it. One row per (minute, route, status,
reason) with how many requests got that answer in that minute: accepted ones (reason `accepted`) are the
rate's denominator; refused ones carry a reason code (`signature`, `expired`, `wrong_site`, `malformed`,
`too_large`, `headers_too_large`, `rate_limited`, `client_error`) and failed ones (5xx) `server_error` or
`storage_unavailable`. Nothing about the request itself: no body, no client address, no request id.
Minutes divide every clinic-local day (whole-minute offsets), so per-day counts are exact.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.types import UTCDateTime


class WebhookOutcome(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    minute: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)  # UTC, start of the minute
    route: str = Field(max_length=200)  # the path template, e.g. /webhooks/wix/bookings
    status: int
    reason: str = Field(max_length=32)
    count: int = Field(default=1)
