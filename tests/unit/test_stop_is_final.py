"""A patient's STOP is final until the patient says START, whatever staff record meanwhile (issue 13).

Played through the code that runs in production, on the real database with the fake MobileMessage over HTTP:
booking intake, SMS triage of the patient's replies (`apply_reply`, the body of the `sms-triage` flow), the
outbox's senders (`send_message` and the reminder sweep's `send_due`, as their task bodies), the
`avatar-crm` CLI, and SMS campaigns (the `campaign-send` flow's body), as tests/unit/test_reminders.py and
test_campaign_send.py do; the served deployments are exercised by the integration rig.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, text
from sqlmodel import col, select
from typer.testing import CliRunner

from campaigns.spec import CampaignSpec
from deployments.cli import app as cli
from flows.campaign_send import campaign_send
from flows.tasks.send import send_due, send_message
from messaging.replies import apply_reply
from messaging.sms_classifier import classify
from models import (
    Campaign,
    ConsentEvent,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    session_scope,
)
from models.access_audit import AccessAudit, shell_actor, verify
from providers.wix_simulator import WixKeys
from tests.campaign_data import seed
from tests.fakes.mobilemessage import FakeMobileMessage, inbound_payload
from tests.inbox_events import apply_wix, store_event
from tests.sms_env import mobilemessage

pytestmark = pytest.mark.db

KEYS = WixKeys()
BRISBANE = ZoneInfo("Australia/Brisbane")
PHONE = "+61412345678"  # the booking's patient (the Wix simulator's default)
OTHER = "+61410000000"  # another patient with SMS marketing consent (tests/campaign_data.py)


@pytest.fixture
def sms(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMobileMessage]:
    with mobilemessage(monkeypatch, SMS_QUIET_HOURS="", REMINDER_OFFSETS="24h,2h") as fake:
        yield fake
    with session_scope() as session:
        session.execute(text("UPDATE outboundmessage SET campaign_id = NULL"))
        session.execute(delete(Campaign))


def texted(fake: FakeMobileMessage) -> list[str]:
    """Every number the fake MobileMessage was asked to text."""
    return [m["to"] for r in fake.requests for m in r["json"]["messages"]]


def patient_says(words: str) -> list[int]:
    """An SMS from the patient, triaged; returns the ids of what triage queued for the patient."""
    body = json.dumps(inbound_payload(words, sender=PHONE.removeprefix("+"))).encode()
    event_id = store_event("mobilemessage", body, "sms.inbound")
    apply_reply(event_id, classify(words))
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboundMessage.id).where(OutboundMessage.idempotency_key == f"sms-reply:{event_id}")
            ).all()
        )


def answer(message_ids: list[int]) -> list[str]:
    """Send triage's answers as the `sms-triage` flow does (one `send_message` each); their statuses."""
    return [asyncio.run(send_message.fn(message_id)) for message_id in message_ids]


def campaign(name: str) -> dict[str, Any]:
    spec = CampaignSpec.model_validate(
        {"name": name, "channel": "sms", "variants": [{"body": "Hi {{ first_name }}, we now do MRI."}]}
    )
    return asyncio.run(campaign_send.fn(spec))


def staff(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_stop_then_a_staff_grant_then_nothing_by_sms_until_the_patient_texts_start(
    sms: FakeMobileMessage,
) -> None:
    seed(1, channel="sms")
    with session_scope() as session:  # the access audit is append-only: earlier tests' rows stay
        audited_before = session.exec(select(func.max(AccessAudit.id))).one() or 0
    start = datetime.now(BRISBANE).replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=3)
    apply_wix(KEYS, "wix.bookings.v2.booking_created", str(uuid.uuid4()), 1, start)
    granted = staff("consent", "grant", "--phone", PHONE, "--note", "ticked SMS offers on the booking form")
    assert granted.exit_code == 0, granted.output
    asyncio.run(send_due.fn(datetime.now(UTC), 100))  # the booking confirmation
    assert texted(sms) == [PHONE]

    # The patient texts STOP: suppressed at once; the one confirmation of it still goes.
    assert answer(patient_says("STOP")) == [MessageStatus.SENT]
    sms.reset()

    # Staff record the paper form's tick again: refused, plainly, and nothing changes.
    regrant = staff("consent", "grant", "--phone", "0412 345 678", "--note", "paper form ticked")
    assert regrant.exit_code == 1
    assert "refused, nothing changed" in regrant.output and "texted STOP" in regrant.output
    assert "START" in regrant.output
    lifted = staff("suppress", "remove", PHONE, "--note", "patient said it was fine")
    assert lifted.exit_code == 1 and "texted STOP" in lifted.output
    with session_scope() as session:
        refusals = session.exec(select(ConsentEvent).where(ConsentEvent.action == "refused")).all()
        assert {(e.origin, e.wording) for e in refusals} == {
            ("staff", "paper form ticked"),
            ("staff", "patient said it was fine"),
        }
        # Each change and each refusal made at the shell is in the access audit, as the OS user.
        audit = session.exec(
            select(AccessAudit).where(col(AccessAudit.id) > audited_before).order_by(col(AccessAudit.id))
        ).all()
        assert [(a.action, a.outcome, a.reason) for a in audit] == [
            ("consent.granted", "allowed", "ticked SMS offers on the booking form"),
            ("consent.granted", "denied", "paper form ticked"),
            ("suppression.lifted", "denied", "patient said it was fine"),
        ]
        assert {a.actor for a in audit} == {shell_actor().email} and {a.role for a in audit} == {"cli"}
        assert len({a.subject for a in audit}) == 1 and audit[0].subject.startswith("contact:")
        assert verify(session).intact

    # Nothing reaches the patient by SMS: not a campaign, not a reminder, not an answer to their text.
    campaign("MRI now open")
    assert texted(sms) == [OTHER]
    due = asyncio.run(send_due.fn((start - timedelta(hours=24) + timedelta(minutes=1)).astimezone(UTC), 100))
    with session_scope() as session:
        reminders = select(OutboundMessage).where(OutboundMessage.kind == MessageKind.REMINDER)
        reminder = session.exec(reminders.order_by(OutboundMessage.send_after)).first()  # 24 h before
    assert reminder is not None and due[reminder.id] == MessageStatus.SUPPRESSED  # type: ignore[index]
    assert answer(patient_says("Y")) == [MessageStatus.SUPPRESSED]
    assert texted(sms) == [OTHER]

    # START by SMS: the patient's own word lifts it, and the next campaign includes them again.
    sms.reset()
    assert answer(patient_says("START")) == [MessageStatus.SENT]
    campaign("Open on Saturdays")
    assert sorted(texted(sms)) == sorted([PHONE, PHONE, OTHER])  # START's confirmation, then the campaign


def test_after_start_a_patient_who_never_consented_to_marketing_still_gets_no_campaign(
    sms: FakeMobileMessage,
) -> None:
    seed(1, channel="sms")
    apply_wix(
        KEYS,
        "wix.bookings.v2.booking_created",
        str(uuid.uuid4()),
        1,
        datetime.now(BRISBANE) + timedelta(days=3),
    )
    answer(patient_says("STOP"))
    answer(patient_says("START"))
    sms.reset()
    campaign("MRI now open")
    assert texted(sms) == [OTHER]
