"""One retry policy for every provider call and the dispatcher: exponential backoff with jitter, never
sooner than the provider's `Retry-After`, and per provider which answers are worth another try, as data.

`Retry-After` is read as RFC 9110 §10.2.3 has it: delta-seconds or an HTTP date, capped so a bad header
cannot stall a send for hours.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Literal

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


@dataclass(frozen=True)
class Backoff:
    """`base * 2**n` seconds, capped, then jittered: `full` draws from [0, d] (many clients retrying one
    provider spread out), `half` from [d/2, d] (a minimum pause is kept), `none` waits exactly d."""

    base: float
    cap: float
    jitter: Literal["full", "half", "none"] = "full"
    max_doublings: int = 16

    def delay(
        self, doublings: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after `doublings` doublings (0 for the first retry), never less than a provider's
        `Retry-After`. `rng`: a caller whose jitter must not share the global generator's state."""
        ceiling = min(self.cap, self.base * 2 ** min(max(doublings, 0), self.max_doublings))
        draw = (rng or random).uniform
        if self.jitter == "full":
            delay = draw(0, ceiling)
        elif self.jitter == "half":
            delay = ceiling * draw(0.5, 1.0)
        else:
            delay = ceiling
        return delay if retry_after is None else max(delay, retry_after)


@dataclass(frozen=True)
class RetryableStatuses:
    """Which HTTP answers a provider may be asked again after: the request did nothing (or nothing twice,
    given an idempotency key). Everything else is the provider's final word."""

    codes: frozenset[int] = frozenset({429})
    server_errors: bool = True  # every 5xx

    def __contains__(self, status: object) -> bool:
        if not isinstance(status, int):
            return False
        return status in self.codes or (self.server_errors and 500 <= status <= 599)


# Which statuses each caller may retry: the rules, as data.
# MobileMessage: throttled or a server error; a resend carries the same Idempotency-Key, so nothing is sent
# twice. Every other 4xx is its final word (bad number, no credit, bad credentials).
MOBILEMESSAGE = RetryableStatuses()
# SendGrid has no idempotency key: only answers that mean it did not act (429, 5xx). A timeout or a lost
# connection mid-request is not a status and is never retried (`providers/sendgrid.py`).
SENDGRID = RetryableStatuses()
# Wix's REST API: reads, so throttling and server errors are safe to ask again.
WIX_API = RetryableStatuses()
# Google's APIs: request timeout, rate limit and the server errors its documentation calls transient.
GOOGLE = RetryableStatuses(frozenset({408, 429, 500, 502, 503, 504}), server_errors=False)
# A SQLite-backed Prefect server answers 503 while another writer holds its lock (the dispatcher).
PREFECT_BUSY = RetryableStatuses(frozenset({503}), server_errors=False)


@dataclass(frozen=True)
class RetryPolicy:
    """How one caller retries: how many attempts in all, how long between them, which statuses qualify."""

    attempts: int
    backoff: Backoff
    retryable: RetryableStatuses

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds before the retry that follows failed attempt number `attempt` (1-based)."""
        return self.backoff.delay(attempt - 1, retry_after, rng)
