"""Reconciliation on the real database against the fake Wix API over HTTP: what it finds, what it feeds into
the inbox, and that booking intake applying those rows brings the CRM to Wix's state once and only once.

The fed rows are applied as booking intake applies them (`apply_event`); the served path (dispatcher →
booking-intake run → fake MobileMessage) is exercised in tests/integration/test_wix_reconcile.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from bookings.intake import apply_event
from bookings.reconcile import OFF, SOURCE, WINDOW_OVERLAP, default_since, reconcile
from flows.wix_reconcile import wix_reconcile
from messaging.outbox import unapplied_revisions
from models import (
    Booking,
    Channel,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    WebhookEvent,
    WixReconciliation,
    get_settings,
    session_scope,
)
from providers import wix
from providers.wix_api import WixBookingsClient
from providers.wix_simulator import WixKeys, booking_payload
from tests.fakes.wix_api import FakeWixApi
from tests.inbox_events import apply_wix

pytestmark = pytest.mark.db

KEYS = WixKeys()
API_KEY, SITE_ID = "IST.reconcile-key", "c0ffee00-0000-4000-8000-0000000site1"
NOW = datetime.now(UTC).replace(microsecond=0)
SINCE, UNTIL = NOW - timedelta(hours=1), NOW + timedelta(minutes=1)


@pytest.fixture(scope="module")
def wix_api() -> Iterator[FakeWixApi]:
    with FakeWixApi(API_KEY, SITE_ID) as fake:
        yield fake


@pytest.fixture
def fake(db: str, wix_api: FakeWixApi, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWixApi]:
    wix_api.reset()
    for name, value in wix_api.env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield wix_api
    get_settings.cache_clear()


def wix_booking(booking_id: str, revision: int, start: datetime, status: str = "CONFIRMED") -> dict[str, Any]:
    """The booking as Wix holds it now: changed `revision - 1` minutes after it was made, half an hour ago."""
    return booking_payload(
        booking_id=booking_id,
        revision=revision,
        status=status,
        start=start,
        created=NOW - timedelta(minutes=30),
        phone=f"+6141{uuid.UUID(booking_id).int % 10**7:07d}",
    )


def run(fake: FakeWixApi, since: datetime = SINCE, until: datetime = UNTIL) -> tuple[WixReconciliation, Any]:
    async def go() -> tuple[WixReconciliation, Any]:
        async with WixBookingsClient.from_settings(get_settings()) as client:
            return await reconcile(client, since, until)

    return asyncio.run(go())


def fed_rows() -> list[WebhookEvent]:
    with session_scope() as session:
        rows = session.exec(
            select(WebhookEvent).where(WebhookEvent.source == SOURCE).order_by(col(WebhookEvent.id))
        )
        return list(rows.all())


def apply_fed() -> None:
    """What the dispatcher's booking-intake runs do with each fed row."""
    for row in fed_rows():
        if row.status == InboxStatus.RECEIVED:
            apply_event(row.id)  # type: ignore[arg-type]


def crm_state() -> dict[str, tuple[int, str, datetime]]:
    with session_scope() as session:
        return {
            b.wix_booking_id: (b.revision, b.status, b.start_at) for b in session.exec(select(Booking)).all()
        }


def wix_state(fake: FakeWixApi) -> dict[str, tuple[int, str, datetime]]:
    parsed = [wix.parse_rest_booking(wix_json(b)).booking for b in fake.bookings.values()]
    return {b.booking_id: (b.revision or 0, b.status.value, b.start_at) for b in parsed}


def wix_json(booking: dict[str, Any]) -> bytes:
    import json

    return json.dumps(booking).encode()


def notices(kind: MessageKind) -> list[tuple[int | None, int | None]]:
    """The SMS of this kind in the outbox (booking, revision); the email copies follow the same keys."""
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessage).where(
                OutboundMessage.kind == kind, OutboundMessage.channel == Channel.SMS
            )
        ).all()
        return [(row.booking_id, row.booking_revision) for row in rows]


def test_missing_and_stale_bookings_are_fed_once_and_applied_to_a_full_match(fake: FakeWixApi) -> None:
    start = NOW + timedelta(days=3)
    missing, moved, cancelled, in_sync, ahead = (str(uuid.uuid4()) for _ in range(5))
    # The CRM got some webhooks: rev 1 of `moved` and `cancelled`, rev 2 of `in_sync`, rev 3 of `ahead`.
    apply_wix(KEYS, "wix.bookings.v2.booking_created", moved, 1, start)
    apply_wix(KEYS, "wix.bookings.v2.booking_created", cancelled, 1, start)
    apply_wix(KEYS, "wix.bookings.v2.booking_confirmed", in_sync, 2, start)
    apply_wix(KEYS, "wix.bookings.v2.booking_rescheduled", ahead, 3, start + timedelta(hours=1))
    fake.put(
        wix_booking(missing, 1, start),  # its webhook never arrived
        wix_booking(moved, 3, start + timedelta(days=1)),  # rev 2 and 3 lost: moved a day
        wix_booking(cancelled, 2, start, status="CANCELED"),
        wix_booking(in_sync, 2, start),
        wix_booking(ahead, 2, start),  # the CRM already has a later change than Wix's answer showed
    )
    patients_told()

    first, tally = run(fake)

    assert (first.wix_total, first.matching, first.missing, first.stale, first.fed) == (5, 2, 1, 2, 3)
    assert first.status == "completed" and first.sync_rate == pytest.approx(2 / 5)
    assert tally.missing == [missing] and sorted(tally.stale) == sorted([moved, cancelled])
    assert {row.dedupe_key for row in fed_rows()} == {f"{missing}:rev1", f"{moved}:rev3", f"{cancelled}:rev2"}
    assert {row.event_type for row in fed_rows()} == {wix.REST_BOOKING_EVENT_TYPE}

    again_before_applied, _ = run(fake)  # the dispatcher has not run yet: nothing is fed twice
    assert again_before_applied.fed == 0 and len(fed_rows()) == 3

    apply_fed()

    held = crm_state()
    for booking_id, state in wix_state(fake).items():
        if booking_id != ahead:
            assert held[booking_id] == state
    assert notices(MessageKind.CONFIRMATION).count((held_id(missing), 1)) == 1
    assert notices(MessageKind.RESCHEDULE) == [(held_id(moved), 3)]
    assert notices(MessageKind.CANCELLATION) == [(held_id(cancelled), 2)]

    settled, _ = run(fake)
    assert (settled.wix_total, settled.matching, settled.fed, settled.sync_rate) == (5, 5, 0, 1.0)
    messages_before = sum(len(notices(kind)) for kind in MessageKind)
    apply_fed()
    assert sum(len(notices(kind)) for kind in MessageKind) == messages_before


def test_a_late_webhook_after_reconciliation_changes_nothing(fake: FakeWixApi) -> None:
    start = NOW + timedelta(days=2)
    booking_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", booking_id, 1, start)
    fake.put(wix_booking(booking_id, 2, start + timedelta(hours=2)))
    patients_told()
    run(fake)
    apply_fed()
    before = sms_of(booking_id)

    # Wix's own rev-2 webhook finally arrives: the same revision, so booking intake ignores it.
    apply_wix(KEYS, "wix.bookings.v2.booking_rescheduled", booking_id, 2, start + timedelta(hours=2))

    assert crm_state()[booking_id][0] == 2
    assert sms_of(booking_id) == before and (MessageKind.RESCHEDULE, 2, "pending") in before


def patients_told() -> None:
    """The confirmations the webhooks queued went out (as the send task would record it)."""
    with session_scope() as session:
        for message in session.exec(
            select(OutboundMessage).where(
                OutboundMessage.kind == MessageKind.CONFIRMATION,
                OutboundMessage.status == MessageStatus.PENDING,
            )
        ).all():
            message.status = MessageStatus.SENT
            session.add(message)


def sms_of(wix_booking_id: str) -> list[tuple[str, int | None, str]]:
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessage)
            .where(
                OutboundMessage.booking_id == held_id(wix_booking_id), OutboundMessage.channel == Channel.SMS
            )
            .order_by(col(OutboundMessage.id))
        ).all()
        return [(row.kind, row.booking_revision, row.status) for row in rows]


def test_same_revision_with_a_different_state_is_reported_not_fed(fake: FakeWixApi) -> None:
    start = NOW + timedelta(days=2)
    booking_id, unreadable = str(uuid.uuid4()), str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", booking_id, 1, start)
    broken = wix_booking(unreadable, 1, start)
    del broken["startDate"], broken["bookedEntity"]["slot"]["startDate"]
    fake.put(wix_booking(booking_id, 1, start + timedelta(hours=1)), broken)

    result, tally = run(fake)

    assert (result.wix_total, result.mismatched, result.unreadable, result.fed) == (2, 1, 1, 0)
    assert tally.mismatched == [booking_id] and tally.unreadable == [unreadable]
    assert result.sync_rate == 0.0


def test_wix_failing_the_run_records_it_failed_and_the_next_run_starts_from_the_last_completed(
    fake: FakeWixApi,
) -> None:
    fake.put(wix_booking(str(uuid.uuid4()), 1, NOW + timedelta(days=1)))
    completed, _ = run(fake)
    fake.script(*[(503, {"message": "unavailable"}, {})] * 6)

    with pytest.raises(Exception, match="Wix 503"):
        run(fake, since=UNTIL, until=UNTIL + timedelta(hours=1))

    with session_scope() as session:
        statuses = [
            r.status for r in session.exec(select(WixReconciliation).order_by(col(WixReconciliation.id)))
        ]
    assert statuses == ["completed", "failed"]
    assert default_since(UNTIL + timedelta(hours=2)) == completed.window_end - WINDOW_OVERLAP


def test_off_without_credentials(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WIX_API_KEY", "WIX_SITE_ID"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        assert asyncio.run(wix_reconcile.fn()) == {"status": "off", "reason": OFF}
    finally:
        get_settings.cache_clear()
    with session_scope() as session:
        assert session.exec(select(WixReconciliation)).first() is None


def held_id(wix_booking_id: str) -> int | None:
    with session_scope() as session:
        return session.exec(select(Booking.id).where(Booking.wix_booking_id == wix_booking_id)).first()


def test_a_fed_revision_waiting_for_intake_holds_back_the_notices_it_makes_obsolete(fake: FakeWixApi) -> None:
    """The send-time newest-state check sees a fed row like a webhook: a rev-1 confirmation is not sent
    while the cancellation reconciliation found (rev 2) waits to be applied."""
    start = NOW + timedelta(days=2)
    booking_id = str(uuid.uuid4())
    apply_wix(KEYS, "wix.bookings.v2.booking_created", booking_id, 1, start)
    fake.put(wix_booking(booking_id, 2, start, status="CANCELED"))

    run(fake)

    crm_id = held_id(booking_id)
    with session_scope() as session:
        assert unapplied_revisions(session, [crm_id]) == {crm_id: 2}  # type: ignore[list-item]
