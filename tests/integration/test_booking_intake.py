"""Booking webhooks end to end: gateway → inbox → Prefect flow run → CRM → MobileMessage (fake, real HTTP)."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from models import BookingStatus, InboxStatus, MessageStatus, get_engine, session_scope
from providers.wix_simulator import sign_hmac, simple_event
from tests.fakes.tcp_proxy import TcpProxy
from tests.integration.conftest import SENDER, SMS_PASSWORD, SMS_USERNAME, WIX_SECRET, Rig
from tests.integration.helpers import (
    booking,
    local_slot,
    messages,
    new_booking_id,
    post_new_booking,
    post_wix,
    signed_event,
    spoken,
    stored_booking,
    wait_processed,
    wait_until,
)
from tests.servers import ThreadedServer

pytestmark = [pytest.mark.integration, pytest.mark.db]


def test_one_booking_webhook_sends_exactly_one_confirmation(rig: Rig, sms, gateway_url: str) -> None:
    booking_id = new_booking_id()
    start = local_slot(days_ahead=5, hour=9)
    body = signed_event(rig.wix_keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, start))

    response = post_wix(gateway_url, body)
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    [event] = wait_processed(1)
    assert event.status == InboxStatus.PROCESSED and event.flow_run_id

    [sent] = sms.sent
    assert sent["to"] == "+61412345678"
    assert sent["sender"] == SENDER
    assert sent["message"] == (
        f"Hi Alex, your MRI – Knee with Avatar Imaging is booked for {spoken(start, '9:00am')} "
        "at Bondi Junction. "
        "Reply Y to confirm, R to reschedule or N to cancel."
    )
    for word in ("STOP", "UNSUBSCRIBE", "QUIT", "END"):
        assert word not in sent["message"].upper().split()
    [request] = [r for r in sms.requests if r["path"] == "/v1/messages"]
    expected_auth = "Basic " + base64.b64encode(f"{SMS_USERNAME}:{SMS_PASSWORD}".encode()).decode()
    assert request["headers"]["authorization"] == expected_auth
    assert request["headers"]["idempotency-key"] == f"booking:{booking_id}:confirmation:rev1"

    [message] = messages(booking_id)
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id == sent["message_id"]
    assert message.idempotency_key == f"booking:{booking_id}:confirmation:rev1"
    saved = stored_booking(booking_id)
    assert saved is not None and saved.revision == 1 and saved.status == BookingStatus.CONFIRMED
    assert saved.start_at == start

    # Patient contact details are encrypted at rest: the raw column never holds the number or the email.
    with get_engine().connect() as connection:
        raw_phone, raw_email = connection.execute(text("SELECT phone, email FROM contact")).one()
        raw_body = connection.execute(text("SELECT body FROM webhookevent")).scalar_one()
    assert b"+61412345678" not in bytes(raw_phone) and b"alex@example.com" not in bytes(raw_email)
    assert b"alex@example.com" not in bytes(raw_body)


def test_the_same_webhook_delivered_three_times_sends_one_sms(rig: Rig, sms, gateway_url: str) -> None:
    booking_id = new_booking_id()
    body = signed_event(
        rig.wix_keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, local_slot(4, 10, 30))
    )

    answers = [post_wix(gateway_url, body).json() for _ in range(3)]

    assert [a["status"] for a in answers] == ["accepted", "duplicate", "duplicate"]
    assert len({a["event_id"] for a in answers}) == 1
    wait_processed(1)
    assert len(sms.sent) == 1
    assert "10:30am" in sms.sent[0]["message"]


def test_an_update_before_its_create_ends_with_the_newest_state_and_no_stale_text(
    rig: Rig, sms, gateway_url: str
) -> None:
    booking_id = new_booking_id()
    first_time, moved_time = local_slot(6, 9), local_slot(7, 14, 15)
    created = signed_event(
        rig.wix_keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, first_time)
    )
    rescheduled = signed_event(
        rig.wix_keys, "wix.bookings.v2.booking_rescheduled", booking(booking_id, 2, moved_time)
    )

    assert post_wix(gateway_url, rescheduled).status_code == 200
    wait_processed(1)
    assert post_wix(gateway_url, created).status_code == 200
    wait_processed(2)

    saved = stored_booking(booking_id)
    assert saved is not None and saved.revision == 2 and saved.start_at == moved_time
    texts = [s["message"] for s in sms.sent]
    assert len(texts) == 1, texts
    assert spoken(moved_time, "2:15pm") in texts[0] and "is booked for" in texts[0]
    assert spoken(first_time, "9:00am") not in texts[0]


def test_a_late_reschedule_after_the_cancellation_changes_nothing(rig: Rig, sms, gateway_url: str) -> None:
    booking_id = new_booking_id()
    start = local_slot(8, 11)
    events = {
        1: signed_event(rig.wix_keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, start)),
        2: signed_event(
            rig.wix_keys,
            "wix.bookings.v2.booking_rescheduled",
            booking(booking_id, 2, start + timedelta(days=1)),
        ),
        3: signed_event(
            rig.wix_keys,
            "wix.bookings.v2.booking_canceled",
            booking(booking_id, 3, start + timedelta(days=1), status="CANCELED"),
        ),
    }
    for count, revision in enumerate((1, 3, 2), start=1):
        assert post_wix(gateway_url, events[revision]).status_code == 200
        wait_processed(count)

    saved = stored_booking(booking_id)
    assert saved is not None and saved.status == BookingStatus.CANCELED and saved.revision == 3
    kinds = [m.kind for m in messages(booking_id)]
    assert kinds == ["confirmation", "cancellation"]
    assert len(sms.sent) == 2
    assert "has been cancelled" in sms.sent[1]["message"]
    assert not any("has moved" in s["message"] for s in sms.sent)


def test_hmac_signed_simple_json_is_processed_too(rig: Rig, sms, gateway_url: str) -> None:
    booking_id = new_booking_id()
    body = simple_event("bookings/created", booking_id, start=local_slot(3, 15, 45), phone="0412 345 678")
    response = post_wix(gateway_url, body, {"X-Wix-Webhook-Signature": sign_hmac(body, WIX_SECRET.encode())})
    assert response.status_code == 200, response.text
    wait_processed(1)
    [sent] = sms.sent
    assert sent["to"] == "+61412345678" and "3:45pm" in sent["message"]


def test_a_webhook_accepted_while_prefect_is_down_is_processed_once_it_is_back(rig: Rig, sms) -> None:
    host, port = httpx.URL(rig.prefect_api_url).host, httpx.URL(rig.prefect_api_url).port
    proxy = TcpProxy(host, port).start(up=False)
    from webhook_gateway.app import create_app

    try:
        with ThreadedServer(create_app(prefect_api_url=f"{proxy.url}/api")) as gateway:
            booking_id = new_booking_id()
            body = signed_event(
                rig.wix_keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, local_slot(5, 8, 30))
            )
            response = post_wix(gateway.url, body)
            assert response.status_code == 200 and response.json()["status"] == "accepted"

            def failed_dispatch() -> bool:
                with session_scope() as session:
                    attempts, status = session.exec(
                        text("SELECT dispatch_attempts, status FROM webhookevent")  # type: ignore[call-overload]
                    ).one()
                return attempts >= 1 and status == InboxStatus.RECEIVED

            wait_until(failed_dispatch, timeout=30)
            assert sms.sent == []

            proxy.come_up()
            with session_scope() as session:  # skip the remaining backoff rather than wait it out
                session.exec(text("UPDATE webhookevent SET next_dispatch_at = received_at"))  # type: ignore[call-overload]
            [event] = wait_processed(1)
            assert event.status == InboxStatus.PROCESSED
            assert len(sms.sent) == 1
    finally:
        proxy.stop()


def test_provider_503_then_200_sends_one_sms(rig: Rig, sms, gateway_url: str) -> None:
    sms.script((503, {"message": "Service temporarily unavailable"}, {}))
    booking_id = post_new_booking(gateway_url, rig.wix_keys, local_slot(5, 9))
    wait_processed(1)

    assert len(sms.sent) == 1
    posts = [r for r in sms.requests if r["path"] == "/v1/messages"]
    assert [r["status"] for r in posts] == [503, 200]
    assert len({r["headers"]["idempotency-key"] for r in posts}) == 1
    [message] = messages(booking_id)
    assert message.status == MessageStatus.SENT


def test_provider_400_fails_the_message_with_its_reason_and_does_not_retry(
    rig: Rig, sms, gateway_url: str
) -> None:
    sms.script((400, {"message": "Invalid recipient number"}, {}))
    booking_id = post_new_booking(gateway_url, rig.wix_keys, local_slot(5, 9))
    wait_processed(1)
    [message] = wait_until(lambda: [m for m in messages(booking_id) if m.status == MessageStatus.FAILED])

    assert "Invalid recipient number" in (message.last_error or "")
    assert [r["status"] for r in sms.requests if r["path"] == "/v1/messages"] == [400]
    assert sms.sent == []


def test_a_batch_run_applies_each_booking_once_and_a_bad_event_fails_only_itself(rig: Rig, sms) -> None:
    """What the gateway hands over when a burst builds a backlog (`event_ids`): every booking applied and its
    patient texted once, a task run per booking; a malformed event in the batch fails alone; the batch handed
    over again (its run died) redoes nothing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    from tests.inbox_events import store_event

    bookings = [(new_booking_id(), f"+6141100{n:04d}") for n in range(6)]
    ids = [
        store_event(
            "wix",
            signed_event(
                rig.wix_keys,
                "wix.bookings.v2.booking_created",
                booking(booking_id, 1, local_slot(days_ahead=5, hour=9 + n), phone=phone, email=None),
            ),
            "wix.bookings.v2.booking_created",
        )
        for n, (booking_id, phone) in enumerate(bookings)
    ]
    bad = store_event("wix", b"not a wix token", "wix.bookings.v2.booking_created")
    batch = [*ids[:3], bad, *ids[3:]]

    run = run_deployment("booking-intake/booking-intake", parameters={"event_ids": batch}, timeout=180)
    assert run.state is not None and run.state.is_failed()  # one event could not be applied: said on the run
    rows = {row.id: row for row in wait_processed(len(batch))}
    assert [rows[i].status for i in ids] == [InboxStatus.PROCESSED] * len(ids)
    assert rows[bad].status == InboxStatus.FAILED and rows[bad].last_error
    texted = sorted(m["to"] for m in sms.sent)
    assert texted == sorted(phone for _, phone in bookings)  # each patient once, nobody else
    assert all((stored := stored_booking(b)) is not None and stored.revision == 1 for b, _ in bookings)
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    applied = sorted(t.name for t in tasks if t.name.startswith("booking-event-"))
    assert applied == sorted(
        f"booking-event-{i}" for i in ids
    )  # a task run per booking (the bad one failed being read)

    again = run_deployment("booking-intake/booking-intake", parameters={"event_ids": batch}, timeout=180)
    assert again.state is not None and again.state.is_completed()  # nothing left to do
    assert sorted(m["to"] for m in sms.sent) == texted  # nothing sent twice
