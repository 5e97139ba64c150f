"""Reminders end to end on the real database and a fake MobileMessage over HTTP: booking intake schedules
them, changes move or cancel them, and the sweep sends each at most once, re-checked just before it goes.

The sweep is run as its task body (`send_due.fn`) at a chosen `now`, so a whole reminder schedule can be
walked through in a test; the served deployment is exercised in tests/integration.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from flows.reminder_sweep import artifact_rows
from flows.tasks.send import send_due
from messaging import outbox
from messaging.sms_wording import format_local_time
from models import (
    Booking,
    BookingStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    session_scope,
)
from providers.wix_simulator import WixKeys
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.inbox_events import apply_wix
from tests.sms_env import mobilemessage

pytestmark = pytest.mark.db

KEYS = WixKeys()
BRISBANE = ZoneInfo("Australia/Brisbane")
SYDNEY = ZoneInfo("Australia/Sydney")
PHONE = "+61412345678"


@pytest.fixture
def sms(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMobileMessage]:
    """A fake MobileMessage the sweep really talks to; settings pointed at it for this test."""
    with mobilemessage(monkeypatch, SMS_QUIET_HOURS="20:00-08:00", REMINDER_OFFSETS="24h,2h") as fake:
        yield fake


def _slot(days: int, hour: int, minute: int = 0, tz: ZoneInfo = BRISBANE) -> datetime:
    day = (datetime.now(tz) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def deliver(event_type: str, booking_id: str, revision: int, start: datetime, **fields: object) -> None:
    apply_wix(KEYS, event_type, booking_id, revision, start, **fields)


def created(booking_id: str, start: datetime, **fields: object) -> None:
    deliver("wix.bookings.v2.booking_created", booking_id, 1, start, **fields)


def reminders(booking_id: str) -> list[OutboundMessage]:
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboundMessage)
                .join(Booking, Booking.id == OutboundMessage.booking_id)
                .where(Booking.wix_booking_id == booking_id, OutboundMessage.kind == MessageKind.REMINDER)
                .order_by(OutboundMessage.id)
            ).all()
        )


def pending(booking_id: str) -> list[OutboundMessage]:
    return [m for m in reminders(booking_id) if m.status == MessageStatus.PENDING]


def sweep(now: datetime) -> dict[int, str]:
    return asyncio.run(send_due.fn(now.astimezone(UTC), 1000))


def skip_notices() -> None:
    """Mark the booking notices (confirmation etc.) as sent, so only reminders are due in a sweep."""
    with session_scope() as session:
        for message in session.exec(
            select(OutboundMessage).where(OutboundMessage.kind != MessageKind.REMINDER)
        ).all():
            message.status = MessageStatus.SENT
            session.add(message)


def last_detail(message_id: int) -> str | None:
    with session_scope() as session:
        return session.exec(
            select(OutboundMessageEvent.detail)
            .where(OutboundMessageEvent.message_id == message_id)
            .order_by(OutboundMessageEvent.id.desc())  # type: ignore[union-attr]
        ).first()


def test_a_new_booking_schedules_24h_and_2h_reminders_with_deadlines(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    day_before, same_day = pending(bid)
    assert day_before.send_after == start - timedelta(hours=24)
    assert day_before.deadline == start - timedelta(hours=12)
    assert same_day.send_after == start - timedelta(hours=2)
    assert same_day.deadline == start - timedelta(hours=1)
    assert f"on {format_local_time(start, 'Australia/Brisbane')}" in day_before.body
    assert "Reply Y to confirm" in same_day.body and "STOP" not in same_day.body.upper()


def test_the_sweep_sends_each_reminder_when_due_and_only_then(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    skip_notices()

    assert sweep(start - timedelta(hours=25)) == {}
    sweep(start - timedelta(hours=24))
    [first] = sms.sent
    assert first["to"] == PHONE
    assert format_local_time(start, "Australia/Brisbane") in first["message"]
    assert first["idempotency_key"].startswith(f"booking:{bid}:reminder-24h:")
    sweep(start - timedelta(hours=24) + timedelta(minutes=1))  # a later sweep finds nothing new
    assert len(sms.requests) == 1
    sweep(start - timedelta(hours=2))
    assert [s["idempotency_key"].split(":")[2] for s in sms.sent] == ["reminder-24h", "reminder-2h"]
    assert {m.status for m in reminders(bid)} == {MessageStatus.SENT}


def test_a_reschedule_moves_both_reminders_and_the_text_shows_the_new_time(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    old, new = _slot(4, 14), _slot(6, 10, 30)
    created(bid, old)
    deliver("wix.bookings.v2.booking_rescheduled", bid, 2, new)

    rows = reminders(bid)
    assert [m.status for m in rows[:2]] == [MessageStatus.DROPPED] * 2
    assert all("booking moved" in (last_detail(m.id) or "") for m in rows[:2])  # type: ignore[arg-type]
    moved = pending(bid)
    assert [m.send_after for m in moved] == [new - timedelta(hours=24), new - timedelta(hours=2)]
    assert all(format_local_time(new, "Australia/Brisbane") in m.body for m in moved)

    skip_notices()
    sweep(old - timedelta(hours=2))  # the old times come and go: nothing
    assert sms.sent == []
    sweep(new - timedelta(hours=24))
    [sent] = sms.sent
    assert format_local_time(new, "Australia/Brisbane") in sent["message"]


def test_cancel_removes_reminders_and_a_stale_revision_changes_nothing(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    before = [(m.id, m.status) for m in reminders(bid)]
    deliver("wix.bookings.v2.booking_updated", bid, 1, _slot(5, 9))  # stale (same revision)
    assert [(m.id, m.status) for m in reminders(bid)] == before

    deliver("wix.bookings.v2.booking_canceled", bid, 2, start, status="CANCELED")
    assert pending(bid) == []
    assert {m.status for m in reminders(bid)} == {MessageStatus.DROPPED}
    skip_notices()
    sweep(start - timedelta(hours=2))
    assert sms.sent == []


def test_a_sweep_three_hours_late_drops_the_stale_2h_reminder(
    sms: FakeMobileMessage, caplog: pytest.LogCaptureFixture
) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    skip_notices()
    sweep(start - timedelta(hours=24))
    sms.reset()

    with caplog.at_level(logging.INFO, logger="flows.tasks.send"):
        results = sweep(start - timedelta(hours=2) + timedelta(hours=3))  # the scheduler was down for 3 hours
    assert sms.requests == []
    assert list(results.values()) == ["dropped"] and type(next(iter(results.values()))) is str
    assert "1 due: dropped: 1" in caplog.text  # values, not `<MessageStatus.DROPPED: 'dropped'>`
    [late] = [m for m in reminders(bid) if m.send_after == start - timedelta(hours=2)]
    assert late.status == MessageStatus.DROPPED
    assert "deadline" in (last_detail(late.id) or "")  # type: ignore[arg-type]
    [row] = asyncio.run(artifact_rows(results))  # what ops read in the sweep's table artifact
    assert (row["kind"], row["result"]) == ("reminder", "dropped") and "deadline" in str(row["reason"])


def test_a_booking_made_three_hours_ahead_gets_no_24h_reminder(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    created(bid, start)
    # The 2 h one is planned unless it falls in quiet hours at the moment this test runs; never the 24 h one.
    assert [m.idempotency_key.split(":")[2] for m in reminders(bid)] in (["reminder-2h"], [])
    assert all(m.send_after == start - timedelta(hours=2) for m in reminders(bid))


def test_quiet_hours_move_a_reminder_earlier_or_skip_it(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 7, 30)  # 07:30: the 24 h reminder would go at 07:30 the day before, inside quiet hours
    created(bid, start)
    [day_before] = pending(bid)  # the 2 h one (05:30) cannot move without losing its point
    local = day_before.send_after.astimezone(BRISBANE)
    assert (local.hour, local.minute) == (19, 45)
    assert local.date() == (start - timedelta(days=2)).date()


def test_a_reminder_found_due_in_quiet_hours_waits_for_the_morning(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    skip_notices()
    with session_scope() as session:  # as if a reschedule of the clock (or a bug) put it at night
        message = session.exec(select(OutboundMessage).where(OutboundMessage.kind == "reminder")).first()
        assert message is not None
        message.send_after = start - timedelta(hours=36)  # 02:00 local, the night before
        session.add(message)
    night = start - timedelta(hours=35, minutes=30)  # the sweep finds it due at 02:30
    results = sweep(night)
    assert list(results.values()) == ["deferred"] and sms.requests == []
    [deferred] = [m for m in pending(bid) if m.send_after.astimezone(BRISBANE).hour == 8]
    assert deferred.send_after.astimezone(BRISBANE).date() == night.date()


def test_the_sweep_rechecks_the_booking_just_before_sending(sms: FakeMobileMessage) -> None:
    moved, cancelled = str(uuid.uuid4()), str(uuid.uuid4())
    start = _slot(4, 14)
    created(moved, start)
    created(cancelled, start, phone="+61412345679")
    skip_notices()
    with session_scope() as session:  # the booking changed, and intake has not run yet
        for booking in session.exec(select(Booking)).all():
            if booking.wix_booking_id == moved:
                booking.start_at = start + timedelta(hours=1)
            else:
                booking.status = BookingStatus.CANCELED
            session.add(booking)
    sweep(start - timedelta(hours=24))
    assert sms.requests == []
    [moved_24h, _] = reminders(moved)
    [cancelled_24h, _] = reminders(cancelled)
    assert moved_24h.status == cancelled_24h.status == MessageStatus.DROPPED
    assert "booking moved" in (last_detail(moved_24h.id) or "")  # type: ignore[arg-type]
    assert "booking is canceled" in (last_detail(cancelled_24h.id) or "")  # type: ignore[arg-type]


def test_two_concurrent_sweeps_send_each_reminder_once(sms: FakeMobileMessage) -> None:
    start = _slot(4, 14)
    bookings = [str(uuid.uuid4()) for _ in range(12)]
    for i, bid in enumerate(bookings):
        created(bid, start, phone=f"+614123450{i:02d}")
    skip_notices()
    sms.latency = 0.02  # keep both sweeps in flight together
    barrier = threading.Barrier(2)
    results: list[dict[int, str]] = []

    def run() -> None:
        barrier.wait()
        results.append(sweep(start - timedelta(hours=24)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    keys = [r["headers"]["idempotency-key"] for r in sms.requests]
    assert len(keys) == len(set(keys)) == 12  # each reminder went to the provider exactly once
    sent = [mid for result in results for mid, status in result.items() if status == MessageStatus.SENT]
    assert len(sent) == len(set(sent)) == 12


def test_a_sweep_run_as_of_a_later_time_leaves_another_senders_fresh_claim_alone(
    sms: FakeMobileMessage,
) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    skip_notices()
    day_before = reminders(bid)[0]
    claimed = outbox.claim(day_before.id, now=start - timedelta(hours=24))  # type: ignore[arg-type]
    assert not isinstance(claimed, str)  # another sweep holds it and is talking to the provider

    sweep(start - timedelta(hours=24))  # `--now` days ahead of the wall clock
    assert sms.requests == []
    assert reminders(bid)[0].status == MessageStatus.SENDING


def test_a_booking_moved_away_and_back_gets_the_reminders_of_the_time_it_kept(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    kept, away = _slot(4, 14), _slot(6, 10, 30)
    created(bid, kept)
    deliver("wix.bookings.v2.booking_rescheduled", bid, 2, away)
    deliver("wix.bookings.v2.booking_rescheduled", bid, 3, kept)  # back where it was

    assert [m.send_after for m in pending(bid)] == [kept - timedelta(hours=24), kept - timedelta(hours=2)]
    skip_notices()
    for moment in sorted(t - timedelta(hours=h) for t in (kept, away) for h in (24, 2)):
        sweep(moment)
    assert [s["idempotency_key"].split(":")[2] for s in sms.sent] == ["reminder-24h", "reminder-2h"]
    assert all(format_local_time(kept, "Australia/Brisbane") in s["message"] for s in sms.sent)


def test_a_pending_request_gets_no_reminders_until_it_is_confirmed(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start, status="PENDING")
    assert reminders(bid) == []
    deliver("wix.bookings.v2.booking_confirmed", bid, 2, start, status="CONFIRMED")
    assert [m.send_after for m in pending(bid)] == [start - timedelta(hours=24), start - timedelta(hours=2)]


def test_the_sweep_drops_a_reminder_whose_booking_became_a_request_again(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    skip_notices()
    with session_scope() as session:  # the booking changed, and intake has not run yet
        booking = session.exec(select(Booking).where(Booking.wix_booking_id == bid)).one()
        booking.status = BookingStatus.PENDING
        session.add(booking)
    sweep(start - timedelta(hours=24))
    assert sms.requests == []
    assert "booking is pending" in (last_detail(reminders(bid)[0].id) or "")  # type: ignore[arg-type]


# The times a booking may be at: afternoons a few days ahead, so every 24 h and 2 h reminder is plannable and
# outside quiet hours, and a few of them so that random edits often come back to a time they left.
_TIMES = [(3, 14), (4, 11), (5, 16)]
_STATUSES = ["CONFIRMED", "CONFIRMED", "CONFIRMED", "PENDING", "CANCELED"]
_EDITS = st.lists(
    st.tuples(st.sampled_from(_STATUSES), st.sampled_from(range(len(_TIMES)))), min_size=1, max_size=6
)


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[int]]:
    """Revisions 1..n of a booking (status, time), and the order Wix delivers them in: each at least once,
    some twice, shuffled."""
    edits = draw(_EDITS)
    revisions = list(range(1, len(edits) + 1))
    repeats = draw(st.lists(st.sampled_from(revisions), max_size=len(revisions)))
    return edits, draw(st.permutations(revisions + repeats))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_deliveries())
def test_any_sequence_of_edits_reminds_once_of_the_time_finally_kept(
    sms: FakeMobileMessage, deliveries: tuple[list[tuple[str, int]], list[int]]
) -> None:
    edits, order = deliveries
    bid = str(uuid.uuid4())
    times = [_slot(days, hour) for days, hour in _TIMES]
    for revision in order:
        status, at = edits[revision - 1]
        action = "booking_created" if revision == 1 else "booking_updated"
        deliver(f"wix.bookings.v2.{action}", bid, revision, times[at], status=status)
    final_status, final_at = edits[-1]

    skip_notices()
    for moment in sorted(t - timedelta(hours=h) for t in times for h in (24, 2)):
        sweep(moment)
    sent = [s for s in sms.sent if s["idempotency_key"].startswith(f"booking:{bid}:")]
    labels = [s["idempotency_key"].split(":")[2] for s in sent]
    if final_status == "PENDING" or final_status == "CANCELED":
        assert labels == []
    else:
        assert labels == ["reminder-24h", "reminder-2h"]
        shown = format_local_time(times[final_at], "Australia/Brisbane")
        assert all(shown in s["message"] for s in sent)
    rows = [m for m in reminders(bid) if m.status == MessageStatus.SENT]
    assert len(rows) == len(labels) and all(m.appointment_at == times[final_at] for m in rows)


def test_a_claim_whose_process_died_is_sent_at_the_next_sweep_with_the_same_key(
    sms: FakeMobileMessage,
) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    skip_notices()
    day_before = reminders(bid)[0]
    due = (start - timedelta(hours=24)).isoformat()
    crash = "from datetime import datetime; from messaging import outbox; import os; "
    crash += f"outbox.claim({day_before.id}, now=datetime.fromisoformat({due!r})); os._exit(9)"
    subprocess.run([sys.executable, "-c", crash], check=False, timeout=60)  # claimed, then killed mid-send
    assert reminders(bid)[0].status == MessageStatus.SENDING

    sweep(start - timedelta(hours=24))  # the first sweep after the crash, not 10 minutes later
    [sent] = sms.sent
    assert sent["idempotency_key"] == day_before.idempotency_key
    assert "its process is gone" in " ".join(_details(day_before.id))  # type: ignore[arg-type]


def test_a_claim_whose_lease_lapsed_is_taken_back_and_one_renewed_is_kept(sms: FakeMobileMessage) -> None:
    bid = str(uuid.uuid4())
    start = _slot(4, 14)
    created(bid, start)
    skip_notices()
    day_before, same_day = reminders(bid)
    for message, hours in ((day_before, 24), (same_day, 2)):
        assert not isinstance(outbox.claim(message.id, now=start - timedelta(hours=hours)), str)  # type: ignore[arg-type]

    async def sending() -> None:  # this process keeps sending the 2 h one a little while
        async with outbox.leases_kept([same_day.id], every=timedelta(seconds=0.05)):  # type: ignore[list-item]
            await asyncio.sleep(0.3)

    leased = reminders(bid)[1].lease_until
    asyncio.run(sending())
    assert reminders(bid)[1].lease_until > leased  # type: ignore[operator]
    with session_scope() as session:  # the 24 h one's sender stopped renewing (hung, or on a lost machine)
        row = session.get(OutboundMessage, day_before.id)
        assert row is not None
        row.lease_until = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)

    assert outbox.release_abandoned() == 1
    assert [m.status for m in reminders(bid)] == [MessageStatus.PENDING, MessageStatus.SENDING]
    assert "its lease lapsed" in " ".join(_details(day_before.id))  # type: ignore[arg-type]


def _details(message_id: int) -> list[str]:
    with session_scope() as session:
        return [
            detail or ""
            for detail in session.exec(
                select(OutboundMessageEvent.detail).where(OutboundMessageEvent.message_id == message_id)
            ).all()
        ]
