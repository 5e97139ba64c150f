"""The inbox as ops see it and act on it: a filtered, keyset-paged list of events (ids, source, kind, status,
times, attempts, last error; never a body), and the replay of an event, the one way both the console and
`avatar-crm events replay` run an event's flow again.

A replay hands the row back to the gateway's dispatcher as `received`, due now, and counts it as one more run
(`redispatches`), so the dispatcher creates the run under a new idempotency key (the old key names the run
that already ended) and, if that run dies, its dead-run recovery covers it as it covers any other. The row
shows where the replay is (`received` → `dispatched` → `processed` or `failed`), and if Prefect is down the
replay waits in the inbox like any new event. The flows are idempotent per event, so a replay changes nothing
twice. A purged event (retention emptied its body) has nothing left to replay.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from models import InboxStatus, WebhookEvent
from models.access_audit import Actor, record
from models.types import utcnow

PAGE = 50
# The sources the gateway stores (webhook_gateway/app.py DEPLOYMENTS), for the list's filter.
SOURCES = ("wix", "wix-reconcile", "mobilemessage", "mobilemessage-status", "sendgrid")
STATUSES = tuple(status.value for status in InboxStatus)
# What the console may replay: an event whose flow gave up (or whose runs kept dying: also `failed`).
FAILED_ONLY: frozenset[str] = frozenset({InboxStatus.FAILED.value})
# What the CLI may replay: anything not already waiting for a run (processing is idempotent).
NOT_WAITING: frozenset[str] = frozenset(STATUSES) - {InboxStatus.RECEIVED.value}

_TABLE = WebhookEvent.__table__  # type: ignore[attr-defined]
# Every column but the body (and the dedupe key and subject: a provider's ids, not needed to operate).
_LISTED = (
    "id",
    "source",
    "event_type",
    "status",
    "received_at",
    "processed_at",
    "dispatch_attempts",
    "redispatches",
    "flow_run_id",
    "last_error",
    "purged_at",
)


@dataclass(frozen=True)
class EventFilter:
    """What ops narrowed the list to; an empty field does not filter."""

    status: str | None = None
    source: str | None = None

    def as_form(self) -> dict[str, str]:
        return {k: v for k, v in (("status", self.status), ("source", self.source)) if v}


@dataclass(frozen=True)
class EventRow:
    id: int
    source: str
    event_type: str
    status: str
    received_at: datetime
    processed_at: datetime | None
    dispatch_attempts: int
    redispatches: int
    flow_run_id: str | None
    last_error: str | None
    purged_at: datetime | None

    @property
    def runs(self) -> int:
        """Flow runs the event has had (or is having): the first, and one per hand-back or replay."""
        return self.redispatches + (1 if self.flow_run_id else 0)

    @property
    def replayable(self) -> bool:
        return self.status in FAILED_ONLY and self.purged_at is None


@dataclass(frozen=True)
class EventPage:
    rows: list[EventRow]
    next_before: int | None  # the `before=` of the next (older) page; None on the last page


def page(session: Session, filters: EventFilter, before: int | None = None, size: int = PAGE) -> EventPage:
    """The newest `size` matching events older than id `before` (a keyset: paging never repeats or skips an
    event however many arrive meanwhile). Reads size + 1 rows to know whether more follow."""
    query = select(*(_TABLE.c[name] for name in _LISTED))
    if filters.status:
        query = query.where(_TABLE.c.status == filters.status)
    if filters.source:
        query = query.where(_TABLE.c.source == filters.source)
    if before is not None:
        query = query.where(_TABLE.c.id < before)
    rows = [EventRow(*row) for row in session.execute(query.order_by(_TABLE.c.id.desc()).limit(size + 1))]
    more = len(rows) > size
    rows = rows[:size]
    return EventPage(rows, rows[-1].id if more and rows else None)


class ReplayRefused(Exception):
    """Nothing was changed: the reason says why (no such event, purged, not in a state to replay)."""


@dataclass(frozen=True)
class Replayed:
    event_id: int
    source: str
    status_before: str
    run: int  # the run number the replay asks for (1 = the first run)


def replay(
    session: Session,
    event_id: int,
    *,
    actor: Actor,
    reason: str | None,
    allowed: Collection[str] = NOT_WAITING,
    **detail: Any,
) -> Replayed:
    """Queue the event for a new flow run (see the module docstring) and write the access-audit row
    `inbox_event.replayed` in the same transaction. Raises `ReplayRefused`, changing nothing."""
    row = session.get(WebhookEvent, event_id)
    if row is None:
        raise ReplayRefused(f"no inbox event {event_id}")
    if row.purged_at is not None:
        raise ReplayRefused(f"event {event_id}'s body was purged (retention): nothing to replay")
    if row.status == InboxStatus.RECEIVED:
        raise ReplayRefused(f"event {event_id} is already waiting for its flow run")
    if row.status not in allowed:
        only = ", ".join(sorted(allowed))
        raise ReplayRefused(f"event {event_id} is {row.status}; only {only} events are replayed here")
    before, runs = row.status, row.redispatches
    changed = session.execute(
        update(_TABLE)
        .where(_TABLE.c.id == event_id, _TABLE.c.status == before, _TABLE.c.redispatches == runs)
        .values(
            status=InboxStatus.RECEIVED,
            redispatches=runs + 1,
            dispatch_attempts=0,
            next_dispatch_at=utcnow(),
            dispatched_at=None,
            processed_at=None,
        )
    ).rowcount  # type: ignore[attr-defined]
    if not changed:  # its run finished or was handed back meanwhile: look again
        raise ReplayRefused(f"event {event_id} changed while it was being replayed; try again")
    session.expire(row)
    done = Replayed(event_id, row.source, before, runs + 2)
    record(
        session,
        actor,
        action="inbox_event.replayed",
        subject=f"inbox_event:{event_id}",
        reason=reason,
        source=done.source,
        status_before=before,
        run=done.run,
        **detail,
    )
    return done
