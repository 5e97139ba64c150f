"""`Retry-After`, as every provider client here reads it (RFC 9110 §10.2.3: delta-seconds or an HTTP date)."""

from __future__ import annotations

import email.utils
import random
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


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before retry number `attempt` (1-based): full jitter over an exponential backoff capped at
    `cap`, but never sooner than the provider's `Retry-After`."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return delay if retry_after is None else max(delay, retry_after)
