"""SendGrid events end to end: a signed batch posted to the gateway is stored per event, dispatched as one
`email-events` run on the served runner, and applied to the campaign message and the suppression list; the
run is named after its events and leaves a summary table artifact."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text

from messaging.consent import may_send
from models import (
    Campaign,
    Channel,
    Contact,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    get_settings,
    session_scope,
)
from models.crypto import get_cipher
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.fakes.sendgrid_events import EventSigner, batch, event
from tests.integration.conftest import Rig
from tests.integration.helpers import TERMINAL, flow_run_state, inbox_rows, wait_until
from tests.servers import ThreadedServer
from webhook_gateway.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.db]

SIGNER = EventSigner()
EMAIL = "alex@example.com"


@pytest.fixture
def gateway(rig: Rig, sms: FakeMobileMessage) -> Iterator[str]:
    settings = get_settings().model_copy(update={"sendgrid_webhook_public_key": SIGNER.public_key})
    with ThreadedServer(create_app(settings, prefect_api_url=rig.prefect_api_url)) as server:
        yield server.url


@pytest.fixture
def message_id(sms: FakeMobileMessage) -> Iterator[int]:
    with session_scope() as session:
        campaign = Campaign(slug=f"spring-{uuid.uuid4().hex[:8]}", name="Spring", channel=Channel.EMAIL)
        contact = Contact(email=EMAIL, email_hash=get_cipher().blind_index("email", EMAIL))
        session.add_all([campaign, contact])
        session.flush()
        message = OutboundMessage(
            idempotency_key=f"campaign:{campaign.id}:{uuid.uuid4().hex}",
            channel=Channel.EMAIL,
            purpose=Purpose.MARKETING,
            kind=MessageKind.CAMPAIGN,
            contact_id=contact.id,
            recipient=EMAIL,
            body="Spring MRI special",
            status=MessageStatus.SENT,
            provider="sendgrid",
            campaign_id=campaign.id,
            variant="B",
        )
        session.add(message)
        session.flush()
        ids = (message.id, campaign.id)
    yield ids[0]  # type: ignore[misc]
    with session_scope() as session:
        session.execute(text("DELETE FROM outboundmessageevent"))
        session.execute(text("DELETE FROM outboundmessage"))
        session.execute(text("DELETE FROM campaign WHERE id = :id"), {"id": ids[1]})


def _deployment_served(api_url: str) -> bool:
    return httpx.get(f"{api_url}/deployments/name/email-events/email-events", timeout=5).status_code == 200


def test_a_signed_batch_is_applied_by_an_email_events_run(rig: Rig, gateway: str, message_id: int) -> None:
    wait_until(lambda: _deployment_served(rig.prefect_api_url), timeout=60)
    body = batch(
        event("delivered", outbox_id=message_id, campaign="spring", variant="B"),
        event("click", outbox_id=message_id, campaign="spring", variant="B", url="https://clinic.example"),
        event("unsubscribe", outbox_id=message_id, campaign="spring", variant="B"),
    )
    response = httpx.post(f"{gateway}/webhooks/sendgrid/events", content=body, headers=SIGNER.headers(body))
    assert response.json() == {"status": "accepted", "accepted": 3, "duplicate": 0}

    def applied() -> list[str] | None:
        rows = inbox_rows()
        if len(rows) != 3 or any(r.status != InboxStatus.PROCESSED for r in rows):
            return None
        runs = {r.flow_run_id for r in rows}
        return list(runs) if all(flow_run_state(run) in TERMINAL for run in runs if run) else None

    run_ids = wait_until(applied, timeout=90)
    assert len(run_ids) == 1  # one run for the batch, not one per event
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        assert message.status == MessageStatus.DELIVERED
        assert message.opened_at is not None and message.clicked_at is not None
        reason = may_send(Channel.EMAIL, Purpose.MARKETING).refusal(session, EMAIL, MessageKind.CAMPAIGN)
        assert reason == "sendgrid_unsubscribe"

    api = rig.prefect_api_url
    run = httpx.get(f"{api}/flow_runs/{run_ids[0]}", timeout=5).json()
    ids = sorted(r.id for r in inbox_rows())
    assert run["name"] == f"email-events-{ids[0]}-{ids[-1]}" and run["state_type"] == "COMPLETED"
    artifacts = httpx.post(
        f"{api}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run_ids[0]]}}},
        timeout=5,
    ).json()
    assert [a["key"] for a in artifacts] == ["email-events"]
    assert {row["event"] for row in _table(artifacts[0]["data"])} == {"delivered", "click", "unsubscribe"}


def _table(data: object) -> list[dict[str, object]]:
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]
