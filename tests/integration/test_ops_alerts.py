"""Ops alerts end to end: a deployment's run fails, the installed Prefect automation starts `ops-alerts`, and
one alert reaches the on-call phone (the fake MobileMessage) and the alert email outbox; once a run of that
deployment passes, the next evaluation sends one "resolved". The real Prefect server, the real runner (which
installed the automations), the real gateway; the rig keeps alerts paused for every other test."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from sqlalchemy import delete, update
from sqlmodel import col, select

from deployments.automations import AUTOMATIONS, FAILED_RUNS_AUTOMATION, SWEEP_AUTOMATION
from models import (
    Channel,
    GoogleConnection,
    GoogleConnectionStatus,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OpsAlert,
    OutboundMessage,
    Purpose,
    WebhookEvent,
    WixReconciliation,
    session_scope,
)
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.google_env import connect
from tests.integration.conftest import OPS_ALERT_EMAIL, SWEEP_ALERT_MINUTES, Rig
from tests.integration.helpers import (
    booking,
    local_slot,
    new_booking_id,
    post_wix,
    signed_event,
    wait_processed,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]

OPS_DIGITS = "61491570156"


@pytest.fixture
def alerts_on(rig: Rig) -> Iterator[None]:
    """The alert automations resumed for this test only (the rig pauses them: see `alerts_off`)."""
    with get_client(sync_client=True) as client:
        ids = [a.id for name in AUTOMATIONS for a in client.read_automations_by_name(name)]
        for automation_id in ids:
            client.resume_automation(automation_id)
        time.sleep(3)  # the server's triggers service reloads automations when they change
        try:
            yield
        finally:
            for automation_id in ids:
                client.pause_automation(automation_id)


@pytest.fixture
def sweep_fresh(rig: Rig) -> None:
    """A reminder sweep has just completed: the rig's Prefect schedules no runs, so without one the sweep
    would look stale (SWEEP_ALERT_MINUTES) to a test about another condition."""
    run = run_deployment("reminder-sweep/reminder-sweep", timeout=120)
    assert run.state is not None and run.state.is_completed()


def _alert_texts(sms: FakeMobileMessage) -> list[str]:
    return [m["message"] for m in sms.sent if re.sub(r"\D", "", m["to"]) == OPS_DIGITS]


def _wait_texts(sms: FakeMobileMessage, count: int, timeout: float = 120.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(texts := _alert_texts(sms)) < count:
        assert time.monotonic() < deadline, f"{count} alert SMS expected, got {texts}"
        time.sleep(0.5)
    return texts


def _alert_emails() -> list[OutboundMessage]:
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessage).where(
                OutboundMessage.kind == MessageKind.STAFF_NOTIFICATION,
                OutboundMessage.channel == Channel.EMAIL,
            )
        ).all()
        session.expunge_all()
        return list(rows)


def test_a_failing_deployment_run_alerts_once_and_resolves_once(
    rig: Rig, sms: FakeMobileMessage, gateway_url: str, sweep_fresh: None, alerts_on: None
) -> None:
    failed = run_deployment("booking-intake/booking-intake", parameters={"event_id": 987654321}, timeout=120)
    assert failed.state is not None and failed.state.is_failed()

    # The automation (not a schedule: it is paused in the rig) started ops-alerts, which texted on-call.
    (alert,) = _wait_texts(sms, 1)
    assert alert.startswith("Avatar Imaging ALERT: Deployment runs failing (booking-intake): flow run ")
    assert str(failed.id) in alert
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(FAILED_RUNS_AUTOMATION)
        assert automation.enabled
    (email,) = _alert_emails()
    assert email.recipient == OPS_ALERT_EMAIL and "deployment-failed:booking-intake" in email.body

    # Evaluated again (as the minute schedule would) while it still fails: nobody is told twice.
    again = run_deployment("ops-alerts/ops-alerts", timeout=120)
    assert again.state is not None and again.state.is_completed()
    assert len(_alert_texts(sms)) == 1 and len(_alert_emails()) == 1

    # A booking-intake run that passes clears it: the next evaluation says so, once.
    booking_id = new_booking_id()
    body = signed_event(
        rig.wix_keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, local_slot(3, 10))
    )
    assert post_wix(gateway_url, body).json()["status"] == "accepted"
    wait_processed(1)
    time.sleep(2)  # the run's end is recorded after its inbox row is processed
    for _ in range(2):
        run_deployment("ops-alerts/ops-alerts", timeout=120)
    alert_texts = _wait_texts(sms, 2)
    assert len(alert_texts) == 2
    assert re.fullmatch(
        r"Avatar Imaging RESOLVED: Deployment runs failing \(booking-intake\) cleared after \d+ min\.",
        alert_texts[1],
    )
    assert len(_alert_emails()) == 2
    with session_scope() as session:
        state = session.exec(
            select(OpsAlert).where(OpsAlert.name == "deployment-failed:booking-intake")
        ).one()
        assert state.firing_since is None and state.notices == 2


def test_google_disconnected_alerts_once_and_the_resolved_notice_arrives_by_gmail(
    rig: Rig, sms: FakeMobileMessage, sweep_fresh: None
) -> None:
    """A condition measured from the CRM database, evaluated by the real `ops-alerts` deployment (as its
    minute schedule would); once Google is back, the resolved notice reaches the fake Gmail."""
    connect(rig.google)
    with session_scope() as session:
        session.execute(update(GoogleConnection).values(status=GoogleConnectionStatus.DISCONNECTED))
    for _ in range(2):
        run = run_deployment("ops-alerts/ops-alerts", timeout=120)
        assert run.state is not None and run.state.is_completed()
    (alert,) = _wait_texts(sms, 1)
    assert alert.startswith("Avatar Imaging ALERT: Google disconnected: Google connection ")
    assert rig.google.account_email not in alert

    with session_scope() as session:
        session.execute(update(GoogleConnection).values(status=GoogleConnectionStatus.CONNECTED))
    run_deployment("ops-alerts/ops-alerts", timeout=120)
    _, resolved = _wait_texts(sms, 2)
    assert re.fullmatch(r"Avatar Imaging RESOLVED: Google disconnected cleared after [01] min\.", resolved)
    deadline = time.monotonic() + 30
    while not [
        e
        for e in rig.google.sent_emails
        if e["subject"].endswith("Resolved: Google disconnected") and OPS_ALERT_EMAIL in e["to"]
    ]:
        assert time.monotonic() < deadline, rig.google.sent_emails
        time.sleep(0.5)
    assert len(_alert_emails()) == 2


def _now() -> datetime:
    return datetime.now(UTC)


def _events(status: InboxStatus, count: int, *, minutes_ago: float = 1.0) -> None:
    at = _now() - timedelta(minutes=minutes_ago)
    with session_scope() as session:
        for _ in range(count):
            session.add(
                WebhookEvent(
                    source="wix",
                    dedupe_key=uuid.uuid4().hex,
                    event_type="wix.bookings.v2.booking_created",
                    body=b"{}",
                    status=status,
                    received_at=at,
                    processed_at=at if status in (InboxStatus.PROCESSED, InboxStatus.FAILED) else None,
                )
            )


def _sends(channel: Channel, status: MessageStatus, count: int) -> None:
    with session_scope() as session:
        for _ in range(count):
            session.add(
                OutboundMessage(
                    idempotency_key=f"alert-test:{uuid.uuid4().hex}",
                    channel=channel,
                    purpose=Purpose.TRANSACTIONAL,
                    kind=MessageKind.CONFIRMATION,
                    recipient="+61400000001" if channel == Channel.SMS else "pat@example.com",
                    body="Hi Pat",
                    status=status,
                    updated_at=_now() - timedelta(minutes=1),
                )
            )


def _clear_events() -> None:
    with session_scope() as session:
        session.execute(delete(WebhookEvent))


def _clear_sends() -> None:
    with session_scope() as session:
        session.execute(
            delete(OutboundMessage).where(col(OutboundMessage.idempotency_key).startswith("alert-test:"))
        )


def _reconciled(missing: int) -> None:
    now = _now()
    with session_scope() as session:
        session.add(
            WixReconciliation(
                window_start=now - timedelta(hours=1), window_end=now, status="completed", finished_at=now,
                wix_total=40, matching=40 - missing, missing=missing, fed=missing,
            )
        )  # fmt: skip


PROVOKED = {
    # condition title: (make it fire, make it clear)
    "Webhook error rate": (
        lambda: (_events(InboxStatus.PROCESSED, 17), _events(InboxStatus.FAILED, 3)),
        _clear_events,
    ),
    "SMS failure rate": (
        lambda: (_sends(Channel.SMS, MessageStatus.SENT, 17), _sends(Channel.SMS, MessageStatus.FAILED, 3)),
        _clear_sends,
    ),
    "Email failure rate": (
        lambda: (
            _sends(Channel.EMAIL, MessageStatus.SENT, 17),
            _sends(Channel.EMAIL, MessageStatus.BOUNCED, 3),
        ),
        _clear_sends,
    ),
    "Inbox backlog": (lambda: _events(InboxStatus.RECEIVED, 2, minutes_ago=30), _clear_events),
    "Wix bookings missing from the CRM": (lambda: _reconciled(3), lambda: _reconciled(0)),
}


@pytest.mark.parametrize("title", list(PROVOKED))
def test_each_measured_condition_alerts_once_and_resolves_once(
    rig: Rig, sms: FakeMobileMessage, sweep_fresh: None, title: str
) -> None:
    """Provoked in the CRM database, evaluated by the real `ops-alerts` deployment (as its minute schedule
    would): one alert to on-call however often it is evaluated while it lasts, one resolved when it clears."""
    provoke, clear = PROVOKED[title]
    provoke()
    for _ in range(2):
        run = run_deployment("ops-alerts/ops-alerts", timeout=120)
        assert run.state is not None and run.state.is_completed()
    (alert,) = _wait_texts(sms, 1)
    assert alert.startswith(f"Avatar Imaging ALERT: {title}: "), alert

    clear()
    run_deployment("ops-alerts/ops-alerts", timeout=120)
    _, resolved = _wait_texts(sms, 2)
    assert resolved.startswith(f"Avatar Imaging RESOLVED: {title} cleared after "), resolved
    run_deployment("ops-alerts/ops-alerts", timeout=120)
    time.sleep(1)
    assert len(_alert_texts(sms)) == 2
    assert len(_alert_emails()) == 2


def _sweep_runs(
    client: SyncPrefectClient, deployment_id: uuid.UUID, states: list[StateType]
) -> list[FlowRun]:
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states))),
    )


def test_a_reminder_sweep_that_stops_completing_alerts_through_the_proactive_automation(
    rig: Rig, sms: FakeMobileMessage
) -> None:
    """The sweep's schedule stops (as when its runs hang or the runner is gone): the installed proactive
    automation, not a schedule, starts `ops-alerts` once ALERT_REMINDER_SWEEP_MINUTES pass without a
    completed sweep; on-call is told once; the next completed sweep clears it, with one "resolved".
    Last in this file: it waits the limit out (SWEEP_ALERT_MINUTES in the rig)."""
    with get_client(sync_client=True) as client:
        sweep = client.read_deployment_by_name("reminder-sweep/reminder-sweep")
        ops = client.read_deployment_by_name("ops-alerts/ops-alerts")
        (automation,) = client.read_automations_by_name(SWEEP_AUTOMATION)
        assert automation.trigger.within == timedelta(minutes=SWEEP_ALERT_MINUTES)
        for schedule in sweep.schedules:
            client.update_deployment_schedule(sweep.id, schedule.id, active=False)
        try:
            for run in _sweep_runs(client, sweep.id, [StateType.SCHEDULED]):
                client.delete_flow_run(run.id)
            deadline = time.monotonic() + 120
            while _sweep_runs(client, sweep.id, [StateType.PENDING, StateType.RUNNING]):
                assert time.monotonic() < deadline, "a reminder-sweep run never finished"
                time.sleep(1)
            client.resume_automation(automation.id)  # its window starts now, with no sweep to come
            try:
                (alert,) = _wait_texts(sms, 1, timeout=SWEEP_ALERT_MINUTES * 60 + 180)
            finally:
                client.pause_automation(automation.id)
            # The rig's Prefect schedules no runs: no sweep may have completed since the runner deployed it.
            stale = r"reminder-sweep (last completed|has not completed since it was deployed,) \d+ min ago"
            assert re.fullmatch(
                rf"Avatar Imaging ALERT: Reminder sweep not completing: {stale} "
                rf"\(alert after {SWEEP_ALERT_MINUTES} min\)",
                alert,
            ), alert
            started = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[ops.id]))
            )
            # Started by the automation (which may fire again while the test waits; the notice is still one).
            assert "reminder-sweep-stale" in [r.parameters.get("reason") for r in started]
            (email,) = _alert_emails()
            assert email.recipient == OPS_ALERT_EMAIL and "reminder-sweep-stale" in email.body

            # Still stale when evaluated again (as the minute schedule would): nobody is told twice.
            run_deployment("ops-alerts/ops-alerts", timeout=120)
            assert len(_alert_texts(sms)) == 1
        finally:
            for schedule in sweep.schedules:
                client.update_deployment_schedule(sweep.id, schedule.id, active=True)

    # A sweep completes again: the next evaluation says it cleared, once.
    completed = run_deployment("reminder-sweep/reminder-sweep", timeout=120)
    assert completed.state is not None and completed.state.is_completed()
    run_deployment("ops-alerts/ops-alerts", timeout=120)
    _, resolved = _wait_texts(sms, 2)
    assert re.fullmatch(
        r"Avatar Imaging RESOLVED: Reminder sweep not completing cleared after \d+ min\.", resolved
    )
    run_deployment("ops-alerts/ops-alerts", timeout=120)
    time.sleep(1)
    assert len(_alert_texts(sms)) == 2 and len(_alert_emails()) == 2
