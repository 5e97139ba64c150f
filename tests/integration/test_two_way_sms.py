"""Two-way SMS through the whole system: a patient's signed reply reaches the gateway, becomes an `sms-triage`
run on the served runner, changes the CRM and answers the patient through the fake MobileMessage; delivery
receipts update the outbox through `delivery-receipts` runs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from sqlmodel import select
from typer.testing import CliRunner

from deployments.cli import app as cli
from models import (
    MessageKind,
    MessageStatus,
    StaffAttention,
    Suppression,
    session_scope,
)
from tests.fakes.mobilemessage import sign_webhook
from tests.integration.conftest import MM_WEBHOOK_SECRET, SENDER, Rig
from tests.integration.helpers import (
    BRISBANE,
    local_slot,
    messages,
    post_new_booking,
    stored_booking,
    wait_processed,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]

PATIENT = "61412345678"  # how MobileMessage writes the patient's number (booking_payload's default phone)


def _post(gateway_url: str, path: str, payload: dict[str, object]) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **sign_webhook(body, MM_WEBHOOK_SECRET.encode())}
    url = f"{gateway_url}/webhooks/mobilemessage/{path}"
    return httpx.post(url, content=body, headers=headers, timeout=10)


def reply(gateway_url: str, text: str, *, ref: str = "", at: datetime | None = None) -> dict:
    payload = {
        "to": SENDER,
        "sender": PATIENT,
        "message": text,
        "received_at": (at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S"),
        "type": "inbound",
        "original_message_id": "",
        "original_custom_ref": ref,
    }
    response = _post(gateway_url, "incoming", payload)
    assert response.status_code == 200, response.text
    return response.json()


def booked_and_confirmed(rig: Rig, sms, gateway_url: str) -> tuple[str, dict]:
    """A new booking whose confirmation SMS has gone out; returns its id and what the patient received."""
    booking_id = post_new_booking(gateway_url, rig.wix_keys, local_slot(5, 10))
    wait_processed(1)
    [confirmation] = sms.sent
    return booking_id, confirmation


def test_a_yes_confirms_the_booking_and_thanks_the_patient(rig: Rig, sms, gateway_url: str) -> None:
    booking_id, confirmation = booked_and_confirmed(rig, sms, gateway_url)
    reply(gateway_url, "Yep see you then 👍", ref=confirmation["custom_ref"])
    wait_processed(2)

    booking = stored_booking(booking_id)
    assert booking is not None and booking.patient_confirmed_at is not None
    thanks = sms.sent[1]
    assert thanks["to"] == "+61412345678"
    assert "is confirmed" in thanks["message"] and "Avatar Imaging" in thanks["message"]


def test_stop_suppresses_at_once_confirms_once_and_no_reminder_follows(
    rig: Rig, sms, gateway_url: str
) -> None:
    booking_id, _ = booked_and_confirmed(rig, sms, gateway_url)
    reply(gateway_url, "STOP")
    wait_processed(2)
    reply(gateway_url, "stop!!", at=datetime.now(UTC) + timedelta(seconds=5))  # a second STOP
    wait_processed(3)

    with session_scope() as session:
        scopes = {(s.channel, s.purpose) for s in session.exec(select(Suppression)).all()}
    assert scopes == {("sms", "transactional"), ("sms", "marketing"), ("email", "marketing")}
    confirmations = [s for s in sms.sent if "unsubscribed" in s["message"]]
    assert len(confirmations) == 1 and "Avatar Imaging" in confirmations[0]["message"]
    # Staff cannot override it (issue 13): the grant is refused with the reason and changes nothing.
    grant = ["consent", "grant", "--phone", "0412 345 678", "--note", "ticked the paper form"]
    refused = CliRunner().invoke(cli, grant)
    assert refused.exit_code == 1 and "texted STOP" in refused.output, refused.output
    with session_scope() as session:
        assert {(s.channel, s.purpose) for s in session.exec(select(Suppression)).all()} == scopes

    from prefect.deployments import run_deployment

    reminder = next(m for m in messages(booking_id, reminders=True) if m.kind == MessageKind.REMINDER)
    sent_before = len(sms.sent)
    run = run_deployment(
        "reminder-sweep/reminder-sweep", parameters={"now": reminder.send_after.isoformat()}, timeout=120
    )
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.name == f"reminder-sweep-{reminder.send_after.astimezone(BRISBANE):%Y-%m-%d-%H%M}"
    assert len(sms.sent) == sent_before
    suppressed = [m for m in messages(booking_id, reminders=True) if m.status == MessageStatus.SUPPRESSED]
    assert [m.kind for m in suppressed] == [MessageKind.REMINDER]
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    description = artifact.description or ""
    assert "suppressed: 1" in description and "<" not in description  # not `<MessageStatus.SUPPRESSED: …>`

    reply(gateway_url, "Y", at=datetime.now(UTC) + timedelta(seconds=10))  # the answer is suppressed too
    wait_processed(4)
    assert len(sms.sent) == sent_before
    answers = [m for m in messages(booking_id, reminders=True) if m.kind == MessageKind.REPLY]
    assert [m.status for m in answers] == [MessageStatus.SUPPRESSED]


def test_a_request_to_move_goes_to_staff_and_the_patient_is_told(rig: Rig, sms, gateway_url: str) -> None:
    booking_id, _ = booked_and_confirmed(rig, sms, gateway_url)
    started = datetime.now(UTC)
    reply(gateway_url, "can I move to thursday?")
    wait_processed(2)

    booking = stored_booking(booking_id)
    assert booking is not None and booking.staff_attention == StaffAttention.RESCHEDULE_REQUESTED
    assert booking.start_at == local_slot(5, 10)  # nothing moved by a machine's reading of a text
    assert "team will contact you" in sms.sent[1]["message"]
    with get_client(sync_client=True) as client:
        notices = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["staff-notifications"]))
        )
    latest = [a for a in notices if a.created and a.created >= started - timedelta(seconds=5)]
    assert latest and booking_id in str(latest[-1].data)
    assert "+614" not in str(latest[-1].data)  # the notice names records, not the patient's number


def test_the_same_reply_delivered_twice_is_answered_once(rig: Rig, sms, gateway_url: str) -> None:
    booked_and_confirmed(rig, sms, gateway_url)
    at = datetime.now(UTC)
    first = reply(gateway_url, "HELP", at=at)
    again = reply(gateway_url, "HELP", at=at)
    assert (first["status"], again["status"]) == ("accepted", "duplicate")
    wait_processed(2)
    time.sleep(1)
    assert [s["message"].startswith("Avatar Imaging appointment messages") for s in sms.sent[1:]] == [True]


def test_delivery_receipts_update_the_outbox(rig: Rig, sms, gateway_url: str) -> None:
    booking_id, confirmation = booked_and_confirmed(rig, sms, gateway_url)
    receipt = {
        "to": "61412345678",
        "sender": SENDER,
        "message": confirmation["message"],
        "custom_ref": confirmation["custom_ref"],
        "status": "delivered",
        "message_id": confirmation["message_id"],
        "received_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "part_number": 1,
        "total_parts": 1,
    }
    assert _post(gateway_url, "status", receipt).json()["status"] == "accepted"
    assert _post(gateway_url, "status", receipt).json()["status"] == "duplicate"
    [message] = wait_until(
        lambda: [m for m in messages(booking_id) if m.status == MessageStatus.DELIVERED], timeout=90
    )
    assert message.delivered_at is not None
    late_sent = {**receipt, "status": "sent"}  # arrives after "delivered": must not move it back
    _post(gateway_url, "status", late_sent)
    wait_processed(3)
    [message] = messages(booking_id)
    assert message.status == MessageStatus.DELIVERED


def test_a_reply_in_another_language_is_answered_in_english_and_that_language(
    rig: Rig, sms, gateway_url: str
) -> None:
    booking_id, _ = booked_and_confirmed(rig, sms, gateway_url)
    reply(gateway_url, "Quiero cancelar la cita")
    wait_processed(2)
    booking = stored_booking(booking_id)
    assert booking is not None and booking.staff_attention == StaffAttention.CANCEL_REQUESTED
    english, spanish = sms.sent[1]["message"].split("\n\n")
    assert "will contact you shortly to cancel" in english
    assert "se pondrá en contacto con usted pronto para cancelar su cita" in spanish


def test_an_uncertain_opt_out_is_honoured_and_confirmed_with_the_way_back(
    rig: Rig, sms, gateway_url: str
) -> None:
    booked_and_confirmed(rig, sms, gateway_url)
    reply(gateway_url, "not interested")
    wait_processed(2)
    with session_scope() as session:
        scopes = {(s.channel, s.purpose) for s in session.exec(select(Suppression)).all()}
    assert ("sms", "transactional") in scopes and ("sms", "marketing") in scopes
    [confirmation] = sms.sent[1:]
    assert "we read your message as a request to stop" in confirmation["message"]
    assert "reply START to resubscribe" in confirmation["message"]
