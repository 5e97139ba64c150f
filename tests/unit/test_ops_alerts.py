"""Ops alerts: each condition measured from rows in the real database, and a person told once per change.

The conditions are read from what the system recorded (inbox, outbox, Google connection, reconciliation
runs) and from what the `ops-alerts` flow read from Prefect (`PrefectFacts`); the notices are outbox rows
(the Prefect UI notice, the email, the SMS to OPS_ALERT_PHONE), de-duplicated by the `opsalert` state row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from deployments.automations import FAILED_RUNS_AUTOMATION, SWEEP_AUTOMATION, alert_automations
from messaging import consent
from models import (
    Channel,
    ConsentOrigin,
    Contact,
    GoogleConnection,
    GoogleConnectionStatus,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OpsAlert,
    OutboundMessage,
    Purpose,
    Settings,
    WebhookEvent,
    WixReconciliation,
    get_settings,
    session_scope,
)
from operations import conditions
from operations.alerts import Change, apply_readings, decide
from operations.conditions import PrefectFacts, Reading, evaluate

pytestmark = pytest.mark.db

NOW = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
OPS_PHONE = "0412 345 678"
OPS_PHONE_E164 = "+61412345678"


@pytest.fixture
def settings(db: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OPS_ALERT_PHONE", OPS_PHONE)
    monkeypatch.setenv("STAFF_NOTIFICATION_EMAIL", "ops@avatar-imaging.example")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _events(session: Session, status: InboxStatus, n: int, at: datetime) -> None:
    for _ in range(n):
        session.add(
            WebhookEvent(
                source="wix",
                dedupe_key=uuid.uuid4().hex,
                event_type="booking_created",
                body=b"{}",
                status=status,
                received_at=at - timedelta(seconds=5),
                processed_at=at if status in (InboxStatus.PROCESSED, InboxStatus.FAILED) else None,
            )
        )


def _messages(session: Session, channel: Channel, status: MessageStatus, n: int, at: datetime) -> None:
    for _ in range(n):
        session.add(
            OutboundMessage(
                idempotency_key=uuid.uuid4().hex,
                channel=channel,
                purpose=Purpose.TRANSACTIONAL,
                kind=MessageKind.CONFIRMATION,
                recipient="+61400000001" if channel == Channel.SMS else "pat@example.com",
                body="Hi Pat",
                status=status,
                updated_at=at,
            )
        )


def test_webhook_error_rate_counts_failed_events_in_the_window_above_the_threshold(
    settings: Settings,
) -> None:
    with session_scope() as session:
        _events(session, InboxStatus.PROCESSED, 99, NOW - timedelta(minutes=5))
        _events(session, InboxStatus.FAILED, 1, NOW - timedelta(minutes=5))
        _events(session, InboxStatus.FAILED, 50, NOW - timedelta(minutes=90))  # outside the 60-min window
        _events(session, InboxStatus.RECEIVED, 5, NOW)  # not finished: not counted
    with session_scope() as session:
        reading = conditions.webhook_error_rate(session, settings, NOW)
    assert not reading.firing  # 1 % is not above 1 %
    assert reading.detail.startswith("1 of 100 webhook events failed")
    with session_scope() as session:
        _events(session, InboxStatus.FAILED, 1, NOW - timedelta(minutes=1))
    with session_scope() as session:
        reading = conditions.webhook_error_rate(session, settings, NOW)
    assert (
        reading.firing
        and reading.detail == "2 of 101 webhook events failed in the last 60 min (2.0%; alert above 1.0%)"
    )


def test_a_rate_needs_the_minimum_sample(settings: Settings) -> None:
    with session_scope() as session:
        _messages(session, Channel.SMS, MessageStatus.SENT, 10, NOW)
        _messages(session, Channel.SMS, MessageStatus.FAILED, 5, NOW)
    with session_scope() as session:
        reading = conditions.sms_failure_rate(session, settings, NOW)
    assert not reading.firing and "counted from 20" in reading.detail


def test_sms_and_email_failure_rates_count_their_own_channel_and_failures(settings: Settings) -> None:
    with session_scope() as session:
        _messages(session, Channel.SMS, MessageStatus.DELIVERED, 30, NOW)
        _messages(session, Channel.SMS, MessageStatus.BLOCKED, 3, NOW)  # the patient's opt-out: no failure
        _messages(session, Channel.SMS, MessageStatus.SUPPRESSED, 9, NOW)  # never attempted
        _messages(session, Channel.EMAIL, MessageStatus.SENT, 40, NOW)
        _messages(session, Channel.EMAIL, MessageStatus.BOUNCED, 1, NOW)
    with session_scope() as session:
        sms = conditions.sms_failure_rate(session, settings, NOW)
        email = conditions.email_failure_rate(session, settings, NOW)
    assert not sms.firing and sms.detail.startswith("0 of 33 SMS sends failed")
    assert email.firing and email.detail.startswith("1 of 41 email sends failed")
    with session_scope() as session:
        _messages(session, Channel.SMS, MessageStatus.FAILED, 1, NOW)
    with session_scope() as session:
        assert conditions.sms_failure_rate(session, settings, NOW).firing


def test_inbox_backlog_fires_on_the_oldest_unprocessed_event(settings: Settings) -> None:
    with session_scope() as session:
        _events(session, InboxStatus.DISPATCHED, 2, NOW - timedelta(minutes=8))
        _events(session, InboxStatus.PROCESSED, 3, NOW - timedelta(minutes=30))
    with session_scope() as session:
        assert not conditions.inbox_backlog(session, settings, NOW).firing
    with session_scope() as session:
        _events(session, InboxStatus.RECEIVED, 1, NOW - timedelta(minutes=14))
    with session_scope() as session:
        reading = conditions.inbox_backlog(session, settings, NOW)
    assert reading.firing
    assert (
        reading.detail == "3 webhook event(s) not yet processed, the oldest 14 min old (alert after 10 min)"
    )


def test_google_disconnected_and_reconciliation_missing(settings: Settings) -> None:
    with session_scope() as session:
        assert not conditions.google_disconnected(session).firing
        assert not conditions.reconciliation_missing(session).firing
        session.add(
            GoogleConnection(
                account_email="front-desk@avatar.test",
                refresh_token="1//token",
                scopes="gmail.send",
                status=GoogleConnectionStatus.DISCONNECTED,
            )
        )
        window = {"window_start": NOW - timedelta(hours=2), "window_end": NOW - timedelta(hours=1)}
        session.add(
            WixReconciliation(**window, status="completed", finished_at=NOW - timedelta(minutes=59),
                              wix_total=40, matching=37, missing=2, stale=1, fed=3)
        )  # fmt: skip
    with session_scope() as session:
        google = conditions.google_disconnected(session)
        wix = conditions.reconciliation_missing(session)
    assert google.firing and "front-desk" not in google.detail
    assert wix.firing and "2 missing, 1 stale, 0 mismatched of 40 Wix bookings" in wix.detail
    with session_scope() as session:  # the next run finds what it fed applied
        window = {"window_start": NOW - timedelta(hours=1), "window_end": NOW}
        session.add(
            WixReconciliation(**window, status="completed", finished_at=NOW, wix_total=41, matching=41)
        )
        session.add(WixReconciliation(**window, status="failed", missing=9))  # a failed run says nothing
    with session_scope() as session:
        assert not conditions.reconciliation_missing(session).firing


def test_prefect_facts_conditions(settings: Settings) -> None:
    facts = PrefectFacts(
        failing={"wix-reconcile": "flow run calm-fox (1) ended Failed", "retention": None},
        sweep_completed_at=NOW - timedelta(minutes=11),
        sweep_watched_since=NOW - timedelta(days=3),
    )
    readings = {r.name: r for r in conditions.deployments_failing(facts)}
    assert readings["deployment-failed:wix-reconcile"].firing
    assert not readings["deployment-failed:retention"].firing
    stale = conditions.reminder_sweep_stale(facts, settings, NOW)
    assert stale is not None and stale.firing and "11 min ago" in stale.detail
    fresh = PrefectFacts(sweep_completed_at=NOW - timedelta(minutes=2), sweep_watched_since=NOW)
    assert not conditions.reminder_sweep_stale(fresh, settings, NOW).firing  # type: ignore[union-attr]
    never = PrefectFacts(sweep_watched_since=NOW - timedelta(minutes=12))  # deployed, never completed
    assert conditions.reminder_sweep_stale(never, settings, NOW).firing  # type: ignore[union-attr]
    assert conditions.reminder_sweep_stale(PrefectFacts(), settings, NOW) is None
    with session_scope() as session:  # without Prefect's facts those conditions are left alone
        names = {r.name for r in evaluate(session, settings, NOW, None)}
    assert names == {"webhook-error-rate", "sms-failure-rate", "email-failure-rate", "inbox-backlog",
                     "google-disconnected", "reconciliation-missing"}  # fmt: skip


def _notices() -> list[OutboundMessage]:
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessage)
            .where(OutboundMessage.kind == MessageKind.STAFF_NOTIFICATION)
            .order_by(OutboundMessage.id)  # type: ignore[arg-type]
        ).all()
        session.expunge_all()
        return list(rows)


def _apply(settings: Settings, reading: Reading, at: datetime) -> list:
    with session_scope() as session:
        return apply_readings(session, settings, [reading], at)


FIRING = Reading("inbox-backlog", True, "3 webhook event(s) not yet processed, the oldest 14 min old")
CLEAR = Reading("inbox-backlog", False, "no webhook event waiting")


def test_one_notice_per_condition_per_hour_and_one_resolved_when_it_clears(settings: Settings) -> None:
    assert _apply(settings, CLEAR, NOW) == []  # never fired: nothing, no state row
    first = _apply(settings, FIRING, NOW)
    assert [(n.change, n.sms) for n in first] == [(Change.FIRED, "queued")]
    assert _apply(settings, FIRING, NOW + timedelta(minutes=1)) == []  # the same minute after: nothing
    assert _apply(settings, FIRING, NOW + timedelta(minutes=59)) == []
    notices = _notices()
    assert [(n.channel, n.recipient) for n in notices] == [
        (Channel.OPS, "staff"),
        (Channel.EMAIL, "ops@avatar-imaging.example"),
        (Channel.SMS, OPS_PHONE_E164),
    ]
    assert "**Alert: Inbox backlog** - 3 webhook event(s)" in notices[0].body
    assert notices[2].body.startswith("Avatar Imaging ALERT: Inbox backlog: 3 webhook event(s)")
    # an hour on, still firing: told again, once
    again = _apply(settings, FIRING, NOW + timedelta(minutes=61))
    assert [n.change for n in again] == [Change.REPEATED]
    assert _apply(settings, FIRING, NOW + timedelta(minutes=62)) == []
    # it clears: one resolved notice, and nothing more while it stays clear
    resolved = _apply(settings, CLEAR, NOW + timedelta(minutes=70))
    assert [n.change for n in resolved] == [Change.RESOLVED]
    assert _apply(settings, CLEAR, NOW + timedelta(minutes=71)) == []
    notices = _notices()
    assert len(notices) == 9
    assert "Alert still firing: Inbox backlog" in notices[3].body
    assert notices[6].body.startswith(
        "**Resolved: Inbox backlog** - `inbox-backlog` cleared at 2026-12-10 20:10"
    )
    assert notices[8].body == "Avatar Imaging RESOLVED: Inbox backlog cleared after 70 min."
    with session_scope() as session:
        row = session.exec(select(OpsAlert)).one()
        assert (row.firing_since, row.notices, row.resolved_at) == (None, 3, NOW + timedelta(minutes=70))
    # firing again later is a new alert
    assert [n.change for n in _apply(settings, FIRING, NOW + timedelta(minutes=80))] == [Change.FIRED]


def test_the_state_survives_a_restart(settings: Settings) -> None:
    """De-duplication is the database's, not a process's: a fresh `decide` reads the row."""
    _apply(settings, FIRING, NOW)
    with session_scope() as session:
        row = session.exec(select(OpsAlert)).one()
        assert decide(row, FIRING, NOW + timedelta(minutes=30), timedelta(hours=1)) is None
        assert decide(row, CLEAR, NOW + timedelta(minutes=30), timedelta(hours=1)) == Change.RESOLVED


def test_a_suppressed_ops_phone_gets_no_sms_queued(settings: Settings) -> None:
    with session_scope() as session:
        why = consent.ConsentSource("sms_reply", "test", "STOP", origin=ConsentOrigin.PATIENT_SMS)
        consent.withdraw(session, phone=OPS_PHONE_E164, contact=None, scopes=consent.OPT_OUT_SCOPES, why=why)
    (notice,) = _apply(settings, FIRING, NOW)
    assert notice.sms.startswith("suppressed")
    assert [n.channel for n in _notices()] == [Channel.OPS, Channel.EMAIL]


def test_without_an_alert_phone_or_email_only_the_prefect_notice(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPS_ALERT_PHONE", raising=False)
    monkeypatch.delenv("STAFF_NOTIFICATION_EMAIL", raising=False)
    get_settings.cache_clear()
    (notice,) = _apply(get_settings(), FIRING, NOW)
    assert notice.sms == "not configured"
    assert [n.channel for n in _notices()] == [Channel.OPS]
    monkeypatch.setenv("OPS_ALERT_EMAIL", "on-call@avatar-imaging.example")  # the ops address wins
    monkeypatch.setenv("STAFF_NOTIFICATION_EMAIL", "front-desk@avatar-imaging.example")
    get_settings.cache_clear()
    _apply(get_settings(), CLEAR, NOW + timedelta(minutes=5))
    assert _notices()[-1].recipient == "on-call@avatar-imaging.example"
    get_settings.cache_clear()


def test_notices_name_no_patient(settings: Settings) -> None:
    """A failing SMS to a patient makes the rate fire; the notices say counts, never who."""
    with session_scope() as session:
        session.add(Contact(first_name="Priya", last_name="Natarajan", phone="+61400000001"))
        _messages(session, Channel.SMS, MessageStatus.SENT, 20, NOW)
        _messages(session, Channel.SMS, MessageStatus.FAILED, 2, NOW)
    with session_scope() as session:
        readings = evaluate(session, settings, NOW, None)
        apply_readings(session, settings, readings, NOW)
    bodies = " ".join(n.body for n in _notices())
    assert "SMS failure rate" in bodies
    for private in ("Priya", "Natarajan", "+61400000001", "0400000001", "Hi Pat"):
        assert private not in bodies


def test_the_automations_watch_every_deployment_but_ops_alerts_and_use_the_sweep_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALERT_REMINDER_SWEEP_MINUTES", "15")
    get_settings.cache_clear()
    ops, sweep, intake = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    wanted = alert_automations(ops, {"reminder-sweep": sweep, "booking-intake": intake}, get_settings())
    get_settings.cache_clear()
    failed = wanted[FAILED_RUNS_AUTOMATION]
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}  # type: ignore[union-attr]
    related = failed.trigger.match_related  # type: ignore[union-attr]
    watched = related["prefect.resource.id"]  # type: ignore[index]
    assert sorted(watched) == sorted(f"prefect.deployment.{i}" for i in (sweep, intake))
    assert f"prefect.deployment.{ops}" not in watched
    assert failed.actions[0].deployment_id == ops  # type: ignore[union-attr]
    assert failed.actions[0].parameters["failed_flow_run"] == "{{ event.resource.id }}"  # type: ignore[union-attr,index]
    stale = wanted[SWEEP_AUTOMATION]
    assert stale.trigger.posture == "Proactive"  # type: ignore[union-attr]
    assert stale.trigger.within == timedelta(minutes=15)  # type: ignore[union-attr]
