"""Noticing the bookings whose webhooks never arrived, and feeding them to booking intake (`wix-reconcile`).

Wix retries a webhook for a while and then gives up; the CRM would simply lack that change and the patient
hear nothing. The `wix-reconcile` flow (hourly, or `avatar-crm wix reconcile`) reads every booking Wix changed
since the last completed run (Query Extended Bookings, paged by cursor), compares each with the CRM's, and for
each booking the CRM lacks or holds at an older revision writes an inbox row: source `wix-reconcile`, dedupe
key `<booking id>:rev<n>`, the booking as Wix returned it (encrypted like every webhook body). The gateway's
dispatcher hands those rows to `booking-intake` exactly as it does webhooks, so the same rules hold: the
highest revision wins whichever path brought it first, an older one changes nothing, and a patient message
(keyed by booking, kind and revision) is queued once. The run records its window, totals and the sync rate in
`wixreconciliation`, and leaves a `wix-reconcile` artifact with counts and booking ids only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prefect.runtime import flow_run
from sqlmodel import Session, col, select

from models import Booking, InboxStatus, WebhookEvent, WixReconciliation, session_scope
from models.inbox import insert_new_events
from models.types import utcnow
from providers import wix
from providers.wix_api import WixBookingsClient

SOURCE = "wix-reconcile"
OFF = "Wix reconciliation is off: WIX_API_KEY and WIX_SITE_ID are not set"
# Wix's query index may show a change a little after its `updatedDate`: each run re-reads the previous
# run's last minutes. Re-reading costs nothing: a booking already fed or applied is not fed again.
WINDOW_OVERLAP = timedelta(minutes=10)
FIRST_WINDOW = timedelta(days=1)  # with no completed run and no --since
MAX_KEY = 128  # webhookevent.dedupe_key and .subject
ARTIFACT_IDS = 200  # booking ids listed per difference in the artifact


@dataclass
class Tally:
    """What one run found, by booking id (ids only: they identify a booking in Wix and the CRM, nothing
    about the patient)."""

    total: int = 0
    matching: int = 0
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    fed: int = 0
    requests: int = 0
    seen: set[str] = field(default_factory=set, repr=False)

    @property
    def sync_rate(self) -> float | None:
        return self.matching / self.total if self.total else None


def verdict(incoming: wix.WixBooking, held: Any) -> str:
    """How the CRM's copy (`revision`, `status`, `start_at`, or None) compares with what Wix says now."""
    if held is None:
        return "missing"
    if held.revision < (incoming.revision or 0):
        return "stale"
    if held.revision > (incoming.revision or 0):
        return "matching"  # the CRM already has a later change than this read saw
    if held.status != incoming.status or held.start_at != incoming.start_at:
        return "mismatched"  # same revision, different state: intake cannot fix it (it would be stale)
    return "matching"


def reconcile_page(bookings: list[dict[str, Any]], tally: Tally) -> None:
    """Compare one page of Wix bookings with the CRM and store an inbox row for each one it lacks or holds
    at an older revision, in one transaction."""
    events: list[tuple[wix.BookingEvent, bytes]] = []
    for raw in bookings:
        body = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            event = wix.parse_rest_booking(body)
            if len(event.dedupe_key) > MAX_KEY:
                raise wix.WixPayloadError("booking.id too long for the inbox")
            events.append((event, body))
        except wix.WixPayloadError:
            booking_id = raw.get("id")
            tally.unreadable.append(booking_id if isinstance(booking_id, str) else "?")
            tally.total += 1
    if not events:
        return
    with session_scope() as session:
        held = _held(session, [event.booking.booking_id for event, _ in events])
        now = utcnow()
        rows = []
        for event, body in events:
            booking_id = event.booking.booking_id
            outcome = verdict(event.booking, held.get(booking_id))
            if booking_id not in tally.seen:  # a booking changed while we paged shows up twice
                tally.seen.add(booking_id)
                tally.total += 1
                if outcome == "matching":
                    tally.matching += 1
                else:
                    getattr(tally, outcome).append(booking_id)
            if outcome in {"missing", "stale"}:
                rows.append(
                    {
                        "source": SOURCE,
                        "dedupe_key": event.dedupe_key,
                        "event_type": event.event_type,
                        "subject": booking_id,
                        "revision": event.booking.revision,
                        "body": body,
                        "status": InboxStatus.RECEIVED,
                        "dispatch_attempts": 0,
                        "received_at": now,
                        "next_dispatch_at": now,
                    }
                )
        if rows:
            # RETURNING gives back only the rows that were new: a revision already fed stays as it was.
            insert = insert_new_events(session.get_bind().dialect.name).returning(col(WebhookEvent.id))
            tally.fed += len(session.execute(insert, rows).all())


def _held(session: Session, booking_ids: list[str]) -> dict[str, Any]:
    query = select(Booking.wix_booking_id, Booking.revision, Booking.status, Booking.start_at).where(
        col(Booking.wix_booking_id).in_(booking_ids)
    )
    return {row.wix_booking_id: row for row in session.exec(query).all()}


def default_since(until: datetime) -> datetime:
    """Where the last completed run stopped (less the overlap), or a day back on the first run."""
    with session_scope() as session:
        last = session.exec(
            select(WixReconciliation.window_end)
            .where(WixReconciliation.status == "completed")
            .order_by(col(WixReconciliation.window_end).desc())
        ).first()
    return last - WINDOW_OVERLAP if last is not None else until - FIRST_WINDOW


def start_run(since: datetime, until: datetime) -> int:
    with session_scope() as session:
        run = WixReconciliation(
            window_start=since,
            window_end=until,
            flow_run_id=str(flow_run.id) if flow_run.id else None,
        )
        session.add(run)
        session.flush()
        return run.id  # type: ignore[return-value]


def finish_run(run_id: int, tally: Tally, error: str | None) -> WixReconciliation:
    with session_scope() as session:
        run = session.get(WixReconciliation, run_id)
        assert run is not None
        run.status = "failed" if error else "completed"
        run.error = error
        run.finished_at = utcnow()
        run.wix_total, run.matching, run.fed = tally.total, tally.matching, tally.fed
        run.missing, run.stale = len(tally.missing), len(tally.stale)
        run.mismatched, run.unreadable = len(tally.mismatched), len(tally.unreadable)
        run.sync_rate = tally.sync_rate
        run.wix_requests = tally.requests
        session.add(run)
        session.flush()
        session.expunge(run)
        return run


def summary(run: WixReconciliation) -> dict[str, object]:
    rate = f"{run.sync_rate:.2%}" if run.sync_rate is not None else "n/a (no bookings changed)"
    return {
        "status": run.status,
        "window": f"{run.window_start.isoformat()} .. {run.window_end.isoformat()}",
        "wix_total": run.wix_total,
        "matching": run.matching,
        "missing": run.missing,
        "stale": run.stale,
        "mismatched": run.mismatched,
        "unreadable": run.unreadable,
        "fed": run.fed,
        "sync_rate": rate,
        "wix_requests": run.wix_requests,
    }


def artifact_markdown(run: WixReconciliation, tally: Tally) -> str:
    lines = [
        f"## Wix reconciliation {run.window_start:%Y-%m-%d %H:%M} – {run.window_end:%Y-%m-%d %H:%M} UTC",
        "",
    ]
    lines += ["| | bookings |", "|---|---|"]
    lines += [
        f"| {key.replace('_', ' ')} | {value} |" for key, value in summary(run).items() if key != "window"
    ]
    for label, ids in (
        ("Missing from the CRM (fed to booking intake)", tally.missing),
        ("Older revision in the CRM (fed to booking intake)", tally.stale),
        ("Same revision, different status or time (not fed: needs a look)", tally.mismatched),
        ("Unreadable in Wix's answer", tally.unreadable),
    ):
        if ids:
            shown = ", ".join(f"`{booking_id}`" for booking_id in ids[:ARTIFACT_IDS])
            more = f" … and {len(ids) - ARTIFACT_IDS} more" if len(ids) > ARTIFACT_IDS else ""
            lines += ["", f"**{label}** ({len(ids)}): {shown}{more}"]
    return "\n".join(lines)


async def reconcile(
    client: WixBookingsClient, since: datetime, until: datetime
) -> tuple[WixReconciliation, Tally]:
    """Read, compare and feed one window, recording the run (also when Wix or the database fails it)."""
    run_id = await asyncio.to_thread(start_run, since, until)
    tally = Tally()
    try:
        async for page in client.bookings_updated(since, until):
            await asyncio.to_thread(reconcile_page, page, tally)
    except Exception as exc:
        tally.requests = client.requests
        await asyncio.to_thread(finish_run, run_id, tally, f"{type(exc).__name__}: {exc}"[:1000])
        raise
    tally.requests = client.requests
    return await asyncio.to_thread(finish_run, run_id, tally, None), tally
