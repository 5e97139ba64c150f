"""`Retry-After`, as every provider client here reads it (RFC 9110 §10.2.3: delta-seconds or an HTTP date)."""

from __future__ import annotations

import email.utils
import time

MAX_RETRY_AFTER_SECONDS = 120.0


def retry_after_seconds(value: str | None, cap: float = MAX_RETRY_AFTER_SECONDS) -> float | None:
    """Seconds to wait, capped so a bad header cannot stall a send for hours; None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), cap)
