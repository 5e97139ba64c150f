"""The campaign's shape in Prefect: its batches are task runs on the flow run (what the Prefect UI shows),
and a batch group the provider could not take is retried by Prefect, with nobody sent anything twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.deployments import run_deployment

from campaigns.spec import CampaignSpec
from flows.campaign_send import campaign_send
from flows.tasks import campaign_batches
from models import MessageStatus, get_settings
from providers.sendgrid import SendGridClient
from tests.campaign_data import seed
from tests.fakes.sendgrid import FakeSendGrid
from tests.integration.conftest import Rig
from tests.integration.helpers import wait_until
from tests.integration.test_campaigns import campaign_rows

pytestmark = [pytest.mark.integration, pytest.mark.db]

TEMPLATE = "d-0123456789abcdef0123456789abcdef"


@pytest.fixture
def sendgrid(rig: Rig, sms: object) -> FakeSendGrid:
    """The rig's fake SendGrid, emptied for this test (the `sms` fixture empties the database and fakes)."""
    return rig.sendgrid


def spec(slug: str) -> dict[str, Any]:
    return {
        "name": "Winter recall",
        "slug": slug,
        "channel": "email",
        "variants": [{"name": "A", "template_id": TEMPLATE, "template_data": {"offer": "10% off"}}],
    }


def task_runs(flow_run_id: UUID, expected: int) -> list[TaskRun]:
    """The flow run's task runs as the server holds them (they arrive as events: wait for all of them to be
    final)."""

    def read() -> list[TaskRun] | None:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        final = [r for r in runs if r.state is not None and r.state.is_final()]
        return runs if len(runs) >= expected and len(final) == len(runs) else None

    return wait_until(read, timeout=60)


def test_a_campaign_run_shows_its_batch_groups_as_task_runs(rig: Rig, sendgrid: FakeSendGrid) -> None:
    addresses = seed(2500)  # three requests of 1,000, 1,000 and 500
    slug = f"winter-{uuid.uuid4().hex[:8]}"

    run = run_deployment("campaign-send/campaign-send", parameters={"spec": spec(slug)}, timeout=120)

    assert run.state is not None and run.state.is_completed(), run.state
    assert sorted(sendgrid.recipients()) == sorted(addresses)  # each once
    # SENDGRID_MAX_IN_FLIGHT is 4: four lanes, each one group (three batches are fewer than a group holds).
    runs = task_runs(run.id, expected=6)
    names = Counter(r.name for r in runs)
    assert names == Counter(
        [
            "settle-abandoned",
            "queue-audience",
            "send-batches-1",
            "send-batches-2",
            "send-batches-3",
            "send-batches-4",
        ]
    )
    assert {r.state.type.value for r in runs if r.state} == {"COMPLETED"}
    assert {r.flow_run_id for r in runs} == {run.id}


def test_a_batch_group_the_provider_refuses_for_now_is_retried_by_prefect_and_nobody_gets_two(
    rig: Rig, sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = seed(2500)
    slug = f"winter-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SENDGRID_MAX_IN_FLIGHT", "1")
    monkeypatch.setattr(campaign_batches, "GROUP_BATCHES", 2)
    # No wait between attempts here; the declared delays are the production ones.
    monkeypatch.setattr(
        campaign_batches,
        "send_batch_group",
        campaign_batches.send_batch_group.with_options(retry_delay_seconds=0, retry_jitter_factor=None),
    )
    api_key, url = rig.sendgrid.api_key, rig.sendgrid.url
    # The client itself gives up at once, so the outage reaches the task (its own retries are tested alone).
    monkeypatch.setattr(
        SendGridClient,
        "from_settings",
        classmethod(lambda cls, s: SendGridClient(api_key, url, max_attempts=1)),
    )
    get_settings.cache_clear()
    unavailable = (503, {"errors": [{"field": None, "message": "service unavailable"}]}, {"Retry-After": "0"})
    sendgrid.script(unavailable, unavailable)  # the first two posts: SendGrid down for a moment

    try:
        state = asyncio.run(campaign_send(CampaignSpec.model_validate(spec(slug)), return_state=True))
    finally:
        get_settings.cache_clear()

    assert state.is_completed(), state
    received = sendgrid.recipients()
    assert sorted(received) == sorted(addresses)  # everyone, and nobody twice
    assert len(sendgrid.accepted) == 3
    rows = campaign_rows(slug)
    assert len(rows) == 2500 and {r.status for r in rows} == {MessageStatus.SENT}

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    runs = {r.name: r for r in task_runs(flow_run_id, expected=4)}
    # Group 1 met the outage twice and was retried by Prefect (run three times); group 2 found the rest.
    first = runs["send-batches-1"]
    assert first.state is not None and first.state.is_completed()
    with get_client(sync_client=True) as client:
        history = [s.name for s in client.read_task_run_states(first.id)]
    assert history.count("Retrying") == 2, history  # (with a delay: AwaitingRetry, then Retrying)
    assert {name for name in runs if name.startswith("send-batches")} == {"send-batches-1", "send-batches-2"}
