"""The gateway's answer to every webhook request, counted per minute in the CRM database (`webhookoutcome`):
what the daily report's webhook error rate is computed from (reporting/kpis.py).

Cheap on the acknowledgement path: the request only puts a tuple on a queue (no I/O, no lock held); a writer
thread sums what arrived and inserts one row per (minute, route, status, reason) about once a second, and
whatever is left when the gateway stops. A failed write is logged and dropped: the counts are for a report,
never worth holding up or failing a webhook. Refusals tell their reason (`refused`, called where the
gateway refuses); other answers are classed by status.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter
from datetime import UTC, datetime

from litestar.types import Scope
from sqlalchemy import Engine, insert

from models import WebhookOutcome
from webhook_gateway.queue_worker import QueueWorker

logger = logging.getLogger(__name__)

WEBHOOK_PREFIX = "/webhooks/"
_TABLE = WebhookOutcome.__table__  # type: ignore[attr-defined]
_REASON_KEY = "avatar_crm_rejection_reason"  # where a route leaves its reason in the request's scope
# What a status means when the code that answered it named no reason.
BY_STATUS = {
    400: "malformed",
    401: "signature",
    403: "wrong_site",
    413: "too_large",
    429: "rate_limited",
    431: "headers_too_large",
    500: "server_error",
    503: "storage_unavailable",
}


def reason_code(status: int, detail: str | None = None) -> str:
    """A short code for an answer: `accepted` (2xx), a refusal's reason, or the 5xx kind."""
    if status < 400:
        return "accepted"
    text = (detail or "").lower()
    if text.startswith("malformed"):
        return "malformed"
    if status == 401 and any(word in text for word in ("expired", "too old", "in the future", "not yet")):
        return "expired"
    return BY_STATUS.get(status, "client_error" if status < 500 else "server_error")


def note_reason(scope: Scope, detail: str) -> None:
    """Where a route refuses a webhook: remember why, for the outcome recorded when the answer goes out."""
    scope[_REASON_KEY] = detail  # type: ignore[literal-required]


def is_webhook(scope: Scope) -> bool:
    return str(scope.get("path_template") or scope.get("path", "")).startswith(WEBHOOK_PREFIX)


class OutcomeRecorder(QueueWorker[tuple[datetime, str, int, str]]):
    """Counts answers per minute on a writer thread; `record()` never waits."""

    def __init__(self, engine: Engine, flush_seconds: float = 1.0) -> None:
        super().__init__("webhook-outcomes")
        self._engine = engine
        self._flush_seconds = flush_seconds

    def record(self, scope: Scope, status: int) -> None:
        route = str(scope.get("path_template") or scope.get("path", ""))
        reason = reason_code(status, scope.get(_REASON_KEY))  # type: ignore[misc]
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        self._queue.put((now, route[:200], status, reason))

    def _run(self) -> None:
        """At most one insert per `flush_seconds`: what arrives within that time of the first is summed."""
        stopping = False
        while not stopping:
            item = self._queue.get()
            counts: Counter[tuple[datetime, str, int, str]] = Counter()
            deadline = time.monotonic() + self._flush_seconds
            while item is not None:
                counts[item] += 1
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
            stopping = item is None
            self._write(counts)

    def _write(self, counts: Counter[tuple[datetime, str, int, str]]) -> None:
        if not counts:
            return
        rows = [
            {"minute": minute, "route": route, "status": status, "reason": reason, "count": n}
            for (minute, route, status, reason), n in counts.items()
        ]
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(_TABLE), rows)
        except Exception as exc:
            lost = sum(counts.values())
            logger.warning("could not record %s webhook outcome(s): %s", lost, type(exc).__name__)
