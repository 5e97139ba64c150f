"""The KPIs and the daily report, from a test day built through the real intake and the tables' own rows.

The day is 2026-11-17 in Brisbane (UTC+10, no daylight saving): [2026-11-16T14:00Z, 2026-11-17T14:00Z).
Each KPI is checked against a figure counted by hand from what the test put in; rows just outside the day
(the day before, the next midnight exactly) must not be counted.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from base64 import b64decode
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from deployments.cli import app as cli
from inbox import service as inbox
from models import (
    Campaign,
    Channel,
    ConsentEvent,
    DeliveryReceipt,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    WebhookEvent,
    WixReconciliation,
    session_scope,
)
from providers.wix_simulator import WixKeys
from reporting import charts
from reporting.kpis import TARGETS, FlowRunCounts, Kpis, Tally, Window, clinic_day, daily, kpis, percentile
from reporting.report import build
from tests.inbox_events import apply_wix, store_event

BRISBANE = ZoneInfo("Australia/Brisbane")
DAY = date(2026, 11, 17)
KEYS = WixKeys()
SVG = "{http://www.w3.org/2000/svg}"


def local(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BRISBANE).astimezone(UTC)


BEFORE = local(23, 30, DAY - timedelta(days=1))  # the evening before: outside the day
NEXT_MIDNIGHT = local(0, 0, DAY + timedelta(days=1))  # the window's end: outside (half-open)


def _set_inbox(event_id: int, **values: object) -> None:
    with session_scope() as session:
        session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(**values))  # type: ignore[arg-type]


def _message(channel: Channel, status: MessageStatus, sent_at: datetime | None, **values: object) -> int:
    with session_scope() as session:
        message = OutboundMessage(
            idempotency_key=f"test:{uuid.uuid4()}",
            channel=channel,
            purpose=values.pop("purpose", Purpose.TRANSACTIONAL),
            kind=values.pop("kind", MessageKind.CONFIRMATION),
            recipient="+61400000000" if channel == Channel.SMS else "patient@example.com",
            body="(test)",
            status=status,
            sent_at=sent_at,
            **values,
        )
        session.add(message)
        session.flush()
        return message.id  # type: ignore[return-value]


def _booking_events() -> None:
    """3 applied through booking intake, 1 failed, 1 still waiting, + 1 the day before; with latencies."""
    start = datetime.now(UTC) + timedelta(days=10)
    applied = [
        apply_wix(KEYS, "wix.bookings.v2.booking_created", str(uuid.uuid4()), 1, start) for _ in range(3)
    ]
    for n, event_id in enumerate(applied):  # committed 100/200/300 ms, processed 1/2/5 s after receipt
        arrived = local(9, 10 * n)
        _set_inbox(
            event_id,
            arrived_at=arrived,
            received_at=arrived + timedelta(milliseconds=100 * (n + 1)),
            processed_at=arrived + timedelta(seconds=(1, 2, 5)[n]),
        )
    failed = store_event("wix", b"{}", "wix.bookings.v2.booking_created")
    inbox.fail(failed, "unreadable")
    _set_inbox(
        failed,
        arrived_at=local(10),
        received_at=local(10) + timedelta(milliseconds=400),
        processed_at=local(10, 1),
    )
    waiting = store_event("wix", b"{}", "wix.bookings.v2.booking_updated")
    _set_inbox(waiting, arrived_at=local(11), received_at=local(11) + timedelta(milliseconds=500))
    fed = store_event("wix-reconcile", b"{}", "wix.bookings.v2.booking_created")  # no webhook: no latency
    _set_inbox(fed, received_at=local(12), status=InboxStatus.PROCESSED, processed_at=local(12, 1))
    earlier = store_event("wix", b"{}", "wix.bookings.v2.booking_created")
    _set_inbox(
        earlier, arrived_at=BEFORE, received_at=BEFORE, status=InboxStatus.PROCESSED, processed_at=BEFORE
    )
    # A delivery receipt received late in the day and processed after midnight: in the backlog at the end.
    late = store_event("mobilemessage-status", b"{}", "status")
    _set_inbox(
        late,
        arrived_at=local(23),
        received_at=local(23) + timedelta(milliseconds=600),
        status=InboxStatus.PROCESSED,
        processed_at=local(1, 0, DAY + timedelta(days=1)),
    )
    at_midnight = store_event("mobilemessage-status", b"{}", "status")
    _set_inbox(at_midnight, arrived_at=NEXT_MIDNIGHT, received_at=NEXT_MIDNIGHT)


def _reconciliation_runs() -> None:
    with session_scope() as session:
        for finished, status, total, matching in (
            (local(8), "completed", 10, 9),
            (local(9), "completed", 5, 5),
            (local(10), "failed", 7, 0),
            (BEFORE, "completed", 4, 0),
        ):
            session.add(
                WixReconciliation(
                    started_at=finished - timedelta(minutes=1),
                    finished_at=finished,
                    window_start=finished - timedelta(hours=1),
                    window_end=finished - timedelta(minutes=1),
                    status=status,
                    wix_total=total,
                    matching=matching,
                )
            )


def _messages() -> None:
    noon = local(12)
    for n in range(4):  # delivered, with their receipts
        message_id = _message(Channel.SMS, MessageStatus.DELIVERED, noon, provider="mobilemessage")
        with session_scope() as session:
            session.add(
                DeliveryReceipt(
                    message_id=message_id, provider_message_id=f"mm-{n}", status="delivered", reported_at=noon
                )
            )
    _message(Channel.SMS, MessageStatus.FAILED, noon, provider="mobilemessage")  # carrier failure
    _message(Channel.SMS, MessageStatus.SENT, noon, provider="mobilemessage")  # no receipt yet
    _message(Channel.SMS, MessageStatus.SENT, local(23, 59), provider="mobilemessage")
    _message(Channel.SMS, MessageStatus.FAILED, None, provider="mobilemessage", updated_at=noon)  # refused
    _message(
        Channel.SMS, MessageStatus.BLOCKED, None, provider="mobilemessage", updated_at=BEFORE
    )  # not today
    _message(Channel.SMS, MessageStatus.SANDBOXED, noon, provider="sandbox")
    _message(Channel.SMS, MessageStatus.SANDBOXED, noon, provider="sandbox")
    _message(Channel.SMS, MessageStatus.DELIVERED, BEFORE, provider="mobilemessage")
    _message(Channel.SMS, MessageStatus.DELIVERED, NEXT_MIDNIGHT, provider="mobilemessage")
    _message(Channel.SMS, MessageStatus.PENDING, None, updated_at=noon)  # not sent: not counted
    _message(Channel.OPS, MessageStatus.SENT, noon, provider="prefect-artifact")  # staff notice in the UI
    for _ in range(3):
        _message(Channel.EMAIL, MessageStatus.SENT, noon, provider="gmail")
    _message(Channel.EMAIL, MessageStatus.FAILED, None, provider="gmail", updated_at=noon)  # Gmail refused
    _message(Channel.EMAIL, MessageStatus.SANDBOXED, noon, provider="sandbox")
    with session_scope() as session:
        campaign = Campaign(slug=f"spring-{uuid.uuid4().hex[:6]}", name="Spring", channel=Channel.EMAIL)
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    engagement = [
        (local(13), local(14)),
        (local(13), None),
        (BEFORE, BEFORE),  # opened and clicked the day before: not today's
        (local(15), local(16)),
        (None, None),
    ]
    for opened, clicked in engagement:
        _message(
            Channel.EMAIL,
            MessageStatus.DELIVERED,
            noon,
            provider="sendgrid",
            campaign_id=campaign_id,
            purpose=Purpose.MARKETING,
            kind=MessageKind.CAMPAIGN,
            opened_at=opened,
            clicked_at=clicked,
        )
    _message(Channel.EMAIL, MessageStatus.BOUNCED, noon, provider="sendgrid", campaign_id=campaign_id)
    _message(
        Channel.EMAIL, MessageStatus.FAILED, noon, provider="sendgrid", campaign_id=campaign_id
    )  # dropped


def _consent() -> None:
    rows = [
        ("stop-1", Channel.SMS, Purpose.TRANSACTIONAL, "withdrawn", local(9)),  # one STOP, three ledger rows:
        ("stop-1", Channel.SMS, Purpose.MARKETING, "withdrawn", local(9)),  # SMS once,
        ("stop-1", Channel.EMAIL, Purpose.MARKETING, "withdrawn", local(9)),  # marketing email once
        ("unsub-2", Channel.EMAIL, Purpose.MARKETING, "withdrawn", local(10)),
        ("start-3", Channel.SMS, Purpose.TRANSACTIONAL, "granted", local(11)),
        ("staff-4", Channel.SMS, Purpose.TRANSACTIONAL, "refused", local(11)),  # nothing changed
        ("old-5", Channel.SMS, Purpose.TRANSACTIONAL, "withdrawn", BEFORE),
    ]
    with session_scope() as session:
        for address, channel, purpose, action, at in rows:
            session.add(
                ConsentEvent(
                    address_hash=address,
                    channel=channel,
                    purpose=purpose,
                    action=action,
                    source="test",
                    actor="test",
                    origin="patient_sms",
                    at=at,
                )
            )


@pytest.fixture
def test_day(db: str) -> str:
    _booking_events()
    _reconciliation_runs()
    _messages()
    _consent()
    return db


@pytest.mark.db
def test_each_kpi_of_the_test_day_equals_the_count_made_by_hand(test_day: str) -> None:
    window = clinic_day(DAY, BRISBANE)
    assert window == Window(datetime(2026, 11, 16, 14, tzinfo=UTC), datetime(2026, 11, 17, 14, tzinfo=UTC))
    day = kpis(window)
    t = day.tally

    assert (t.bookings_received, t.bookings_applied, t.bookings_failed) == (6, 4, 1)  # 3 + fed applied
    assert (t.reconcile_runs, t.reconcile_wix_total, t.reconcile_matching) == (2, 15, 14)
    assert day.booking_sync_rate == pytest.approx(14 / 15)

    assert (t.sms_sent, t.sms_delivered, t.sms_failed, t.sms_refused, t.sms_sandboxed) == (7, 4, 1, 1, 2)
    assert day.sms_delivery_rate == pytest.approx(4 / 7)

    assert (t.email_sent, t.email_sent_gmail, t.email_sent_sendgrid) == (10, 3, 7)
    assert (t.email_delivered, t.email_bounced, t.email_refused, t.email_sandboxed) == (5, 2, 1, 1)
    assert day.email_deliverability == pytest.approx(8 / 10)

    assert (t.campaign_opens, t.campaign_clicks) == (3, 2)
    assert (t.opt_outs, t.opt_ins) == (3, 1)  # stop-1 on SMS and on email, unsub-2 on email; start-3

    # Latency: the 6 gateway webhooks of the day (not the reconciliation's row, not the next midnight's).
    assert sorted(t.committed_ms) == pytest.approx([100, 200, 300, 400, 500, 600], abs=0.5)
    assert sorted(t.processed_ms) == pytest.approx([1000, 2000, 5000, 7_200_000], abs=0.5)
    assert day.committed_ms(50) == pytest.approx(300, abs=0.5)
    assert day.committed_ms(95) == pytest.approx(600, abs=0.5)
    assert day.processed_ms(50) == pytest.approx(2000, abs=0.5)
    assert day.processed_ms(99) == pytest.approx(7_200_000, abs=0.5)

    # At the end of the day: the waiting booking (since 11:00) and the receipt processed after midnight.
    assert day.backlog == 2
    assert day.backlog_oldest_seconds == pytest.approx(13 * 3600 - 0.5, abs=0.01)

    verdicts = {target.key: target.verdict(day.value(target.key)) for target in TARGETS}
    assert verdicts == {
        "booking_sync_rate": "not met",
        "sms_delivery_rate": "not met",
        "email_deliverability": "not met",
        "committed_p95": "met",
        "processed_p95": "not met",
        # No webhook answers recorded on the test day (its rows are written directly), no Prefect read here.
        "webhook_error_rate": "not measured",
        "flow_run_failure_rate": "not measured",
    }


@pytest.mark.db
def test_days_add_up_to_the_window_and_an_empty_window_is_not_measured(test_day: str) -> None:
    days = daily(DAY, 3, BRISBANE)
    assert days.days == [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    yesterday, before = days.tallies[-1], days.tallies[-2]
    single = kpis(clinic_day(DAY, BRISBANE)).tally
    assert yesterday.sms_sent == single.sms_sent and yesterday.bookings_received == single.bookings_received
    assert (before.sms_sent, before.bookings_received, before.opt_outs, before.reconcile_runs) == (1, 1, 1, 1)
    assert (before.campaign_opens, before.campaign_clicks, before.sms_refused) == (1, 1, 1)
    three = days.last(3)
    assert three.tally.sms_sent == 8 and three.tally.reconcile_wix_total == 19
    assert three.booking_sync_rate == pytest.approx(14 / 19)

    empty = kpis(clinic_day(DAY - timedelta(days=5), BRISBANE))
    assert empty.booking_sync_rate is None and empty.sms_delivery_rate is None
    assert {target.verdict(empty.value(target.key)) for target in TARGETS} == {"not measured"}


@pytest.mark.db
def test_the_report_says_met_and_not_met_beside_7_and_30_days(test_day: str) -> None:
    report = build(DAY)
    md = report.markdown
    assert md.startswith("# Daily report — Tuesday 17 November 2026 (Australia/Brisbane)")
    assert "| KPI | Target | Yesterday | 7 days | 30 days |" in md
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert (
        "57.1 % ❌ not met | 62.5 % ❌ not met | 62.5 % ❌ not met" in rows["SMS delivery rate"]
    )  # 4/7, 5/8
    assert "93.3 % ❌ not met" in rows["Booking sync rate"]  # 14/15 yesterday
    assert "73.7 % ❌ not met" in rows["Booking sync rate"]  # 14/19 over 7 and 30 days
    assert "600 ms ✅ met" in rows["Webhook receipt → committed, p95"]
    assert "❌ not met" in rows["Webhook receipt → processed, p95"]
    assert "| Bookings received | 6 | 7 | 7 |" in md
    assert report.summary == "1 of 5 measured targets met"
    assert "Inbox backlog at the end of the day: 2 event(s)" in md
    images = [line for line in md.splitlines() if line.startswith("![")]
    assert len(images) == 2 and all("](data:image/svg+xml;base64," in line for line in images)
    for forbidden in ("+614", "@example.com", "(test)"):
        assert forbidden not in md and forbidden not in report.text
    email = report.email(_clinic(), reference="report:2026-11-17:email")
    assert email.subject == "[Avatar Imaging] Daily report Tue 17 Nov 2026: 1 of 5 measured targets met"
    assert "SMS delivery rate" in email.text and "data:image" not in email.html and not email.track


def _clinic():  # type: ignore[no-untyped-def]
    from messaging.email_wording import ClinicIdentity

    return ClinicIdentity("Avatar Imaging")


def test_met_when_every_target_is_reached() -> None:
    tally = Tally(
        reconcile_runs=1,
        reconcile_wix_total=20,
        reconcile_matching=20,
        sms_sent=100,
        sms_delivered=99,
        email_sent=100,
        email_bounced=4,
        committed_ms=[50.0] * 99 + [2500.0],
        processed_ms=[900.0] * 96 + [1999.0] * 4,
        webhook_requests=1000,
        webhook_4xx=Counter(signature=5, too_large=2),
        webhook_5xx=Counter(server_error=2),
    )
    runs = {"booking-intake/booking-intake": FlowRunCounts(completed=995, failed=4, cancelled=3)}
    when = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    window = Kpis(when, tally, 0, None, flow_runs=runs)
    assert {t.key: t.verdict(window.value(t.key)) for t in TARGETS} == dict.fromkeys(
        (
            "booking_sync_rate",
            "sms_delivery_rate",
            "email_deliverability",
            "committed_p95",
            "processed_p95",
            "webhook_error_rate",
            "flow_run_failure_rate",
        ),
        "met",
    )
    assert window.webhook_error_rate == pytest.approx(9 / 1000)
    assert window.flow_run_failure_rate == pytest.approx(4 / 999)
    worse = Kpis(when, Tally(webhook_requests=100, webhook_5xx=Counter(server_error=1)), 0, None)
    assert [t.verdict(worse.value(t.key)) for t in TARGETS if t.key == "webhook_error_rate"] == ["not met"]
    assert window.committed_ms(99) == 50.0 and window.committed_ms(100) == 2500.0
    borderline = Kpis(window.window, Tally(sms_sent=100, sms_delivered=98), 0, None)
    assert TARGETS[1].verdict(borderline.sms_delivery_rate) == "not met"  # the plan says > 98 %
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # noqa: S314 (our own output)
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == "640" and root.get("height") == "260"
    return root


def test_charts_are_valid_svg_with_a_bar_segment_or_point_per_value() -> None:
    days = ["01 Dec", "02 Dec", "03 Dec", "04 Dec"]
    bars = charts.stacked_bars(
        "Messages <per> day & outcome",
        days,
        [
            charts.Series("delivered", "#2f9e44", [10, 0, 7, 3]),
            charts.Series("failed", "#e03131", [1, 0, 0, 2]),
        ],
    )
    root = _parse(bars)
    rects = root.findall(f".//{SVG}rect[@class='bar']")
    assert len(rects) == 5  # zero segments are not drawn
    assert [(r.get("data-series"), r.get("data-value")) for r in rects] == [
        ("delivered", "10"),
        ("failed", "1"),
        ("delivered", "7"),
        ("delivered", "3"),
        ("failed", "2"),
    ]
    # Stacked: the first day's failed segment sits right on top of its delivered one, and taller is more.
    delivered, failed = rects[0], rects[1]
    assert float(failed.get("y")) + float(failed.get("height")) == pytest.approx(
        float(delivered.get("y")), abs=0.11
    )
    assert float(delivered.get("height")) > float(rects[2].get("height"))
    assert root.find(f"{SVG}title").text == "Messages <per> day & outcome"

    line = charts.lines(
        "Latency",
        days,
        [
            charts.Series("p50", "#1c7ed6", [120.0, None, 80.0, 95.0]),
            charts.Series("p95", "#e8590c", [900.0] * 4),
        ],
    )
    root = _parse(line)
    points = root.findall(f".//{SVG}circle[@class='point']")
    assert len(points) == 7
    assert [p.get("data-value") for p in points if p.get("data-series") == "p50"] == ["120", "80", "95"]
    polylines = root.findall(f".//{SVG}polyline")
    assert [len(p.get("points").split()) for p in polylines] == [2, 4]  # p50 broken by the gap, then p95


@pytest.mark.db
def test_the_report_embeds_its_charts_as_images_of_the_30_days(test_day: str) -> None:
    report = build(DAY)
    encoded = [
        line.split("base64,", 1)[1].rstrip(")") for line in report.markdown.splitlines() if "base64," in line
    ]
    bars, latency = (_parse(b64decode(item).decode()) for item in encoded)
    segments = bars.findall(f".//{SVG}rect[@class='bar']")
    # The day: delivered 4 SMS + 5 email; accepted, no receipt 2 SMS + 3 Gmail; failed or bounced 1 + 2;
    # refused 1 + 1; sandboxed 2 + 1. The day before: 1 delivered SMS, 1 refused (blocked) SMS.
    values = {(s.get("data-series"), s.get("data-value")) for s in segments}
    assert len(segments) == 7
    assert values >= {
        ("delivered", "9"),
        ("accepted, no receipt", "5"),
        ("failed or bounced", "3"),
        ("refused", "2"),
        ("sandboxed", "3"),
        ("delivered", "1"),
        ("refused", "1"),
    }
    points = latency.findall(f".//{SVG}circle[@class='point']")
    # processed p50, p95 and committed p95, on the day and the day before (one webhook each).
    assert len(points) == 6


@pytest.mark.db
def test_avatar_crm_report_prints_the_day(test_day: str) -> None:
    result = CliRunner().invoke(cli, ["report", "--date", "2026-11-17"])
    assert result.exit_code == 0, result.output
    assert "Daily report — Tuesday 17 November 2026" in result.output
    assert "SMS delivery rate" in result.output and "57.1 %" in result.output and "not met" in result.output
    assert "Bookings received" in result.output
    markdown = CliRunner().invoke(cli, ["report", "--date", "2026-11-17", "--markdown"])
    assert markdown.exit_code == 0 and "data:image/svg+xml;base64," in markdown.output
    bad = CliRunner().invoke(cli, ["report", "--date", "17/11/2026"])
    assert bad.exit_code != 0 and "YYYY-MM-DD" in bad.output
