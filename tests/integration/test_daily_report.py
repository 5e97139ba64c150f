"""The `daily-report` flow on the session's Prefect server: its markdown artifact (charts embedded), the
staff email through the fake Gmail once per day reported, and a run that completes, saying why, when no
Google account is connected."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from flows.daily_report import daily_report
from models import Channel, MessageKind, MessageStatus, OutboundMessage, Purpose, get_settings, session_scope
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.google_env import connect, disconnect_all
from tests.integration.conftest import Rig

pytestmark = [pytest.mark.integration, pytest.mark.db]

DAY = date(2026, 11, 17)
STAFF = "ops@avatar-imaging.test"


def _latest_report(rig: Rig) -> str:
    response = httpx.post(
        f"{rig.prefect_api_url}/artifacts/filter",
        json={"artifacts": {"key": {"any_": ["daily-report"]}}, "sort": "CREATED_DESC", "limit": 1},
        timeout=10,
    )
    response.raise_for_status()
    [artifact] = response.json()
    return artifact["data"]


def test_the_report_is_an_artifact_and_emailed_to_staff_once(
    rig: Rig, sms: FakeMobileMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAFF_NOTIFICATION_EMAIL", STAFF)
    get_settings.cache_clear()
    noon = datetime(2026, 11, 17, 12, tzinfo=ZoneInfo("Australia/Brisbane")).astimezone(UTC)
    with session_scope() as session:
        for n, status in enumerate((MessageStatus.DELIVERED, MessageStatus.DELIVERED, MessageStatus.FAILED)):
            session.add(
                OutboundMessage(
                    idempotency_key=f"report-test:{n}",
                    channel=Channel.SMS,
                    purpose=Purpose.TRANSACTIONAL,
                    kind=MessageKind.REMINDER,
                    recipient="+61400000001",
                    body="(test)",
                    status=status,
                    provider="mobilemessage",
                    sent_at=noon,
                )
            )
    disconnect_all()
    connect(rig.google)
    try:
        first = asyncio.run(daily_report(day=DAY))
        again = asyncio.run(daily_report(day=DAY))  # a re-run of the day: the same email, not a second one
    finally:
        disconnect_all()
        get_settings.cache_clear()

    assert first["email"] == "email sent" and again["email"] == "email sent"
    assert first["sms_delivery_rate"] == "not met"  # 2 of 3
    markdown = _latest_report(rig)
    assert "# Daily report — Tuesday 17 November 2026" in markdown
    assert "| SMS delivery rate | > 98 % | 66.7 % ❌ not met |" in markdown
    assert markdown.count("](data:image/svg+xml;base64,") == 2
    [sent] = rig.google.sent_emails
    assert sent["message"]["To"].addresses[0].addr_spec == STAFF
    assert sent["subject"].strip().startswith("[Avatar Imaging] Daily report Tue 17 Nov 2026:")
    assert "66.7 %" in sent["text"] and "+614" not in sent["text"] and "/t/o/" not in sent["html"]


def test_without_a_connected_account_the_report_is_not_emailed_and_the_run_completes(
    rig: Rig, sms: FakeMobileMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAFF_NOTIFICATION_EMAIL", STAFF)
    get_settings.cache_clear()
    disconnect_all()
    try:
        result = asyncio.run(daily_report(day=date(2026, 11, 18)))
        plain = _latest_report(rig)
        asyncio.run(daily_report(day=date(2026, 11, 18), insights=True))  # as `report --insights` asks
        with_insights = _latest_report(rig)
    finally:
        get_settings.cache_clear()
    assert result["email"] == "not emailed: no Google account is connected (`avatar-crm google connect`)"
    assert rig.google.sent_emails == []
    assert "# Daily report — Wednesday 18 November 2026" in plain
    assert "## Booking insights" not in plain  # a Wednesday: the weekly section is Monday's
    assert "## Booking insights — week Thu 12 Nov to Wed 18 Nov 2026" in with_insights
