"""A provider outage delays a patient's SMS but never drops it: the scheduled `outbox-flush` deployment
sends it once the provider is back, through the same served runner `make up` uses."""

from __future__ import annotations

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import text

from models import MessageStatus, session_scope
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    local_slot,
    messages,
    post_new_booking,
    wait_processed,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]

UNAVAILABLE = (503, {"message": "Service temporarily unavailable"}, {"Retry-After": "0"})


def run_deployment_and_wait(name: str, timeout: float = 120) -> dict:
    """Create a run of a served deployment (as its schedule would) and wait for it to finish."""
    api = PREFECT_API_URL.value()
    flow_name, deployment_name = name.split("/")
    deployment = httpx.get(f"{api}/deployments/name/{flow_name}/{deployment_name}", timeout=10).json()
    run = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10).json()

    def finished() -> dict | None:
        state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()
        return state if state["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

    return wait_until(finished, timeout=timeout)


def test_an_sms_delayed_by_a_provider_outage_is_sent_by_the_outbox_flush(
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
        session.exec(text("UPDATE outboundmessage SET send_after = created_at"))  # type: ignore[call-overload]
    run = run_deployment_and_wait("outbox-flush/outbox-flush")

    assert run["state"]["type"] == "COMPLETED", run["state"]
    [sent] = sms.sent
    assert sent["idempotency_key"] == f"booking:{booking_id}:confirmation:rev1"
    [message] = messages(booking_id)
    assert message.status == MessageStatus.SENT and message.provider_message_id == sent["message_id"]
    artifacts = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}},
        timeout=10,
    ).json()
    assert [a["key"] for a in artifacts] == ["outbox-flush"]
