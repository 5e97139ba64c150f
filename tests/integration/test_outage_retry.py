"""A provider outage delays a patient's SMS but never drops it: the scheduled `reminder-sweep` deployment
sends it once the provider is back, through the same served runner `make up` uses."""

from __future__ import annotations

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment
from sqlalchemy import text

from models import MessageStatus, session_scope
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    BRISBANE,
    local_slot,
    messages,
    post_new_booking,
    wait_processed,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]

UNAVAILABLE = (503, {"message": "Service temporarily unavailable"}, {"Retry-After": "0"})


def test_an_sms_delayed_by_a_provider_outage_is_sent_by_the_next_sweep(
    rig: Rig, sms, gateway_url: str
) -> None:
    sms.script(*[UNAVAILABLE] * 5)  # every attempt the client makes during intake
    booking_id = post_new_booking(gateway_url, rig.wix_keys, local_slot(5, 9))
    wait_processed(1)
    [message] = messages(booking_id)
    assert message.status == MessageStatus.PENDING
    assert "503" in (message.last_error or "")
    assert sms.sent == []

    with session_scope() as session:  # the provider is back; skip the rest of the backoff
        # Only this message: the booking's 24h reminder is not due yet, and whether the sweep may send it
        # would depend on the clinic's quiet hours at the moment the test runs.
        due_now = text("UPDATE outboundmessage SET send_after = created_at WHERE id = :id")
        session.exec(due_now.bindparams(id=message.id))  # type: ignore[call-overload]
    # As its schedule would; Prefect's own client, which rides out the SQLite server's transient 503s.
    run = run_deployment("reminder-sweep/reminder-sweep", timeout=120)

    assert run.state is not None and run.state.is_completed(), run.state
    # Named after the moment it swept, on the clinic's clock (not `reminder-sweep-None` for every run).
    assert run.expected_start_time is not None
    assert run.name == f"reminder-sweep-{run.expected_start_time.astimezone(BRISBANE):%Y-%m-%d-%H%M}"
    [sent] = sms.sent
    assert sent["idempotency_key"] == f"booking:{booking_id}:confirmation:rev1"
    [message] = messages(booking_id)
    assert message.status == MessageStatus.SENT and message.provider_message_id == sent["message_id"]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    assert [a.key for a in artifacts] == ["reminder-sweep"]
    assert (artifacts[0].description or "").endswith(": sent: 1")
