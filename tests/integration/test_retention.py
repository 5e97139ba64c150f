"""Retention: after a purge the database holds no stored webhook body, message text or old OAuth state past
its period, keeps the ids and dedupe keys, and a provider's redelivery of a purged event is still answered
`duplicate` and processed no second time. Run through `avatar-crm retention run` against the real Prefect."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select
from typer.testing import CliRunner

from deployments.cli import app
from models import InboxStatus, OutboundMessage, WebhookEvent, session_scope
from models.google import OAuthState
from models.types import utcnow
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    booking,
    inbox_rows,
    local_slot,
    messages,
    new_booking_id,
    post_wix,
    signed_event,
    wait_processed,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]


def _oauth_state(name: str, created_at: object) -> OAuthState:
    return OAuthState(
        state_hash=name * 64, session_hash="s" * 64, code_verifier="verifier-" + name, created_at=created_at
    )


def test_purge_empties_old_bodies_and_texts_keeps_ids_and_a_redelivery_stays_a_duplicate(
    rig: Rig, sms, gateway_url: str
) -> None:
    old_id, recent_id = new_booking_id(), new_booking_id()
    old_body = signed_event(
        rig.wix_keys, "wix.bookings.v2.booking_created", booking(old_id, 1, local_slot(4, 9))
    )
    recent_body = signed_event(
        rig.wix_keys, "wix.bookings.v2.booking_created", booking(recent_id, 1, local_slot(4, 11))
    )
    assert post_wix(gateway_url, old_body).json()["status"] == "accepted"
    assert post_wix(gateway_url, recent_body).json()["status"] == "accepted"
    wait_processed(2)
    assert len(sms.sent) == 2

    # Purge as if 200 days had passed for the first booking and one day for the second.
    moment = utcnow() + timedelta(days=200)
    recent_messages = [m.id for m in messages(recent_id, reminders=True, channel=None)]
    with session_scope() as session:
        old_event, recent_event = session.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        old_dedupe = old_event.dedupe_key
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == recent_event.id)  # type: ignore[arg-type]
            .values(received_at=moment - timedelta(days=1))
        )
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id.in_(recent_messages))  # type: ignore[union-attr]
            .values(created_at=moment - timedelta(days=1))
        )
        session.add(_oauth_state("a", moment - timedelta(days=2)))
        session.add(_oauth_state("b", moment - timedelta(minutes=5)))
    with session_scope() as session:
        messages_before = {m.id: (m.body, m.recipient) for m in session.exec(select(OutboundMessage)).all()}

    dry = CliRunner().invoke(app, ["retention", "run", "--dry-run", "--now", moment.isoformat()])
    assert dry.exit_code == 0, dry.output
    assert "would purge inbox_bodies: 1" in dry.output and "oauth_states: 1" in dry.output
    with session_scope() as session:
        assert all(row.body and row.purged_at is None for row in session.exec(select(WebhookEvent)).all())
        assert len(session.exec(select(OAuthState)).all()) == 2

    ran = CliRunner().invoke(app, ["retention", "run", "--now", moment.isoformat()])
    assert ran.exit_code == 0, ran.output
    assert "purged inbox_bodies: 1" in ran.output

    with session_scope() as session:
        old_event, recent_event = session.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        assert old_event.body == b"" and old_event.purged_at is not None
        assert old_event.dedupe_key == old_dedupe and old_event.status == InboxStatus.PROCESSED
        assert old_event.subject and old_event.flow_run_id
        assert recent_event.body == recent_body and recent_event.purged_at is None
        after = {m.id: m for m in session.exec(select(OutboundMessage)).all()}
        purged = [m for m in after.values() if m.purged_at is not None]
        kept = [m for m in after.values() if m.purged_at is None]
        assert purged and kept
        for message in purged:
            assert message.body == "" and message.recipient == messages_before[message.id][1]
            assert message.idempotency_key.startswith(f"booking:{old_id}:")
        for message in kept:
            assert message.body == messages_before[message.id][0] and message.body
        assert [s.state_hash for s in session.exec(select(OAuthState)).all()] == ["b" * 64]

    again = CliRunner().invoke(app, ["retention", "run", "--now", moment.isoformat()])
    assert "purged inbox_bodies: 0, message_texts: 0, oauth_states: 0" in again.output  # nothing twice

    redelivered = post_wix(gateway_url, old_body)
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "duplicate"
    time.sleep(3)  # what a second run would have had to send
    assert len(sms.sent) == 2
    assert [row.status for row in inbox_rows()] == [InboxStatus.PROCESSED, InboxStatus.PROCESSED]
