"""Bookings whose whole life (created → rescheduled → cancelled) arrives shuffled, each event three times,
concurrently, through the gateway, the dispatcher and the served booking-intake flow (for half of them the
cancellation comes after the patient was told of the booking): every booking ends cancelled, and no patient
is texted "booked" or "moved" once the cancellation is stored."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlmodel import select

from models import BookingStatus, MessageStatus, OutboundMessage, OutboundMessageEvent, session_scope
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    booking,
    local_slot,
    new_booking_id,
    post_wix,
    signed_event,
    stored_booking,
    wait_processed,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]

BOOKINGS = 10
COPIES = 3
BOOKED = ("confirmation", "reschedule")


def _claimed_at() -> dict[str, float]:
    """When each outbox message was claimed for sending (its last move to `sending`), by idempotency key."""
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessage.idempotency_key, OutboundMessageEvent.at)
            .join(OutboundMessageEvent, OutboundMessageEvent.message_id == OutboundMessage.id)
            .where(OutboundMessageEvent.status == MessageStatus.SENDING)
            .order_by(OutboundMessageEvent.id)  # type: ignore[arg-type]
        ).all()
    return {key: at.timestamp() for key, at in rows}


def test_shuffled_triplicate_lifecycles_end_cancelled_with_no_stale_text(
    rig: Rig, sms, gateway_url: str, figures
) -> None:
    started = time.monotonic()
    lives: dict[str, dict[int, bytes]] = {}
    for i in range(BOOKINGS):
        bid, start = new_booking_id(), local_slot(3 + i % 4, 9 + i % 8)
        moved = start + timedelta(days=1)
        phone = f"+6141234{i:04d}"
        lives[bid] = {
            1: signed_event(
                rig.wix_keys, "wix.bookings.v2.booking_created", booking(bid, 1, start, phone=phone)
            ),
            2: signed_event(
                rig.wix_keys, "wix.bookings.v2.booking_rescheduled", booking(bid, 2, moved, phone=phone)
            ),
            3: signed_event(
                rig.wix_keys,
                "wix.bookings.v2.booking_canceled",
                booking(bid, 3, moved, phone=phone, status="CANCELED"),
            ),
        }
    # Half the bookings arrive whole in one shuffled burst; for the other half the cancellation (its three
    # copies) comes once the patient has been told of the booking.
    told_first = list(lives)[::2]
    burst = [
        (bid, rev)
        for bid, events in lives.items()
        for rev in events
        for _ in range(COPIES)
        if not (bid in told_first and rev == 3)
    ]
    chance = random.Random(12)
    chance.shuffle(burst)
    cancel_acked: dict[str, float] = {}

    def deliver(delivery: tuple[str, int]) -> None:
        bid, revision = delivery
        response = post_wix(gateway_url, lives[bid][revision])
        assert response.status_code == 200, response.text
        if revision == 3:  # committed before the answer: from here on the cancellation is stored
            cancel_acked.setdefault(bid, time.time())

    def texted(bid: str) -> bool:
        return any(
            r["headers"].get("idempotency-key", "").startswith(f"booking:{bid}:") for r in sms.requests
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(deliver, burst))
        wait_until(lambda: all(texted(bid) for bid in told_first), timeout=60)
        late_cancels = [(bid, 3) for bid in told_first for _ in range(COPIES)]
        chance.shuffle(late_cancels)
        list(pool.map(deliver, late_cancels))
    wait_processed(BOOKINGS * 3, timeout=90)
    drained = time.monotonic() - started

    claimed = _claimed_at()
    for bid in lives:
        saved = stored_booking(bid)
        assert saved is not None and (saved.status, saved.revision) == (BookingStatus.CANCELED, 3)
        keys = [
            r["headers"]["idempotency-key"]
            for r in sms.requests
            if r["path"] == "/v1/messages" and r["headers"]["idempotency-key"].startswith(f"booking:{bid}:")
        ]
        kinds = [key.split(":")[2] for key in dict.fromkeys(keys)]  # a retried request is one message
        # Told nothing, or told of the booking and then of its cancellation, once, last.
        assert kinds == [] or (kinds[-1] == "cancellation" and set(kinds[:-1]) <= set(BOOKED)), (bid, kinds)
        if bid in told_first:
            assert kinds[0] == "confirmation" and kinds[-1] == "cancellation", (bid, kinds)
        assert len(kinds) == len(set(kinds)), (bid, kinds)
        late = [key for key in keys if key.split(":")[2] in BOOKED and claimed[key] > cancel_acked[bid]]
        assert late == [], f"booked/moved text claimed after the cancellation was stored: {late}"
    sends = [r for r in sms.requests if r["path"] == "/v1/messages"]
    figures(
        f"{BOOKINGS} bookings x 3 revisions x {COPIES} copies shuffled: {len(burst) + len(late_cancels)} "
        f"events acknowledged, {len({r['headers']['idempotency-key'] for r in sends})} distinct texts, "
        f"0 stale, 0 twice; processed {drained:.0f}s after the first post"
    )
