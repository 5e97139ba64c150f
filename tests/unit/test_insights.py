"""Booking insights over a seeded fortnight whose true rates are known.

This week is Mon 9 – Sun 15 November 2026 (Brisbane), the previous one Mon 2 – Sun 8. Seeded, this week:
MRI – Knee 60 appointments, 24 cancelled (40 %); CT – Chest 60, 6 cancelled (10 %); X-ray 10, 5 cancelled
(50 %, but below the minimum sample). Previous week: MRI 60 with 6 cancelled (10 %): a real week-on-week
rise; X-ray 10 with none: a rise to 50 % that is noise (too few) and must not be reported. Monday mornings
hold the most appointments kept. Every booking has a contact with a seeded name, phone and email that must
appear nowhere in the section.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
import xml.etree.ElementTree as ET
from base64 import b64decode
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import NormalDist
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from deployments.cli import app as cli
from models import (
    AuditLog,
    Booking,
    Channel,
    Contact,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    get_settings,
    session_scope,
)
from providers.wix_simulator import WixKeys
from reporting import charts, insights
from reporting.report import build
from reporting.stats import Proportion, compare, fisher_exact, holm, z_test
from tests.inbox_events import apply_wix

BRISBANE = ZoneInfo("Australia/Brisbane")
SUNDAY = date(2026, 11, 15)  # the day the Monday report covers: the week ends on it
MONDAY, PREVIOUS_MONDAY = date(2026, 11, 9), date(2026, 11, 2)
SVG = "{http://www.w3.org/2000/svg}"


def at(day: date, weekday: int, hour: int, minute: int = 0) -> datetime:
    moment = day + timedelta(days=weekday)
    return datetime(moment.year, moment.month, moment.day, hour, minute, tzinfo=BRISBANE).astimezone(UTC)


@dataclass(frozen=True)
class Group:
    monday: date
    service: str
    weekday: int
    hour: int
    count: int
    cancelled: int
    lead_days: float = 2.0
    reply_every: int = 2  # of the appointments kept (reminded), every n-th one replies and confirms
    confirm_after: str = "24h"  # which reminder the confirmation follows
    moved: int = 0  # of the kept ones, moved from the day before at 09:00


GROUPS = (
    # this week
    Group(MONDAY, "MRI – Knee", 0, 9, 36, 12),
    Group(MONDAY, "MRI – Knee", 2, 14, 24, 12, moved=6),
    Group(MONDAY, "CT – Chest", 0, 10, 20, 2, reply_every=1, confirm_after="2h"),
    Group(MONDAY, "CT – Chest", 1, 13, 20, 2, reply_every=1, confirm_after="2h"),
    Group(MONDAY, "CT – Chest", 3, 15, 20, 2, reply_every=1, confirm_after="2h"),
    Group(MONDAY, "X-ray", 4, 9, 10, 5, lead_days=10),
    # the week before
    Group(PREVIOUS_MONDAY, "MRI – Knee", 0, 9, 30, 3),
    Group(PREVIOUS_MONDAY, "MRI – Knee", 2, 14, 30, 3),
    Group(PREVIOUS_MONDAY, "CT – Chest", 1, 13, 55, 6, reply_every=1, confirm_after="2h"),
    Group(PREVIOUS_MONDAY, "CT – Chest", 5, 9, 5, 0, reply_every=1, confirm_after="2h"),
    Group(PREVIOUS_MONDAY, "X-ray", 4, 9, 10, 0, lead_days=10),
)
NAMES = [f"Quixote{n:03d}" for n in range(400)]


def _seed() -> None:
    n = 0
    with session_scope() as session:
        for group in GROUPS:
            for index in range(group.count):
                n += 1
                start = at(group.monday, group.weekday, group.hour)
                contact = Contact(
                    first_name="Zelda",
                    last_name=NAMES[n],
                    phone=f"+614{n:08d}",
                    email=f"zelda.{NAMES[n].lower()}@example.com",
                )
                session.add(contact)
                session.flush()
                cancelled = index < group.cancelled
                booking = Booking(
                    wix_booking_id=str(uuid.uuid4()),
                    contact_id=contact.id,
                    status="CANCELED" if cancelled else "CONFIRMED",
                    revision=2 if cancelled else 1,
                    service_name=group.service,
                    start_at=start,
                    created_at=start - timedelta(days=group.lead_days),
                )
                session.add(booking)
                session.flush()
                if cancelled:
                    continue
                kept = index - group.cancelled
                sent = {}
                for label, offset in (("24h", 24), ("2h", 2)):
                    sent[label] = start - timedelta(hours=offset)
                    session.add(
                        OutboundMessage(
                            idempotency_key=f"booking:{booking.wix_booking_id}:reminder-{label}:"
                            f"{start:%Y%m%dT%H%MZ}:rev1",
                            channel=Channel.SMS,
                            purpose=Purpose.TRANSACTIONAL,
                            kind=MessageKind.REMINDER,
                            contact_id=contact.id,
                            booking_id=booking.id,
                            recipient=contact.phone,
                            body=f"Hi Zelda {NAMES[n]}, see you soon",
                            status=MessageStatus.DELIVERED,
                            sent_at=sent[label],
                            appointment_at=start,
                        )
                    )
                if kept % group.reply_every == 0:
                    confirmed = sent[group.confirm_after] + timedelta(minutes=30)
                    booking.patient_confirmed_at = confirmed
                    for action, detail in (
                        ("sms.triaged", {"intent": "confirm", "confidence": 0.99}),
                        ("booking.patient_confirmed", {}),
                    ):
                        session.add(
                            AuditLog(
                                at=confirmed,
                                actor="sms-triage",
                                action=action,
                                entity_type="booking",
                                entity_id=booking.id,
                                detail=detail,
                            )
                        )
                if kept < group.moved:
                    old = start - timedelta(days=1) - timedelta(hours=start.astimezone(BRISBANE).hour - 9)
                    session.add(
                        AuditLog(
                            at=old - timedelta(days=3),
                            actor="booking-intake",
                            action="booking.updated",
                            entity_type="booking",
                            entity_id=booking.id,
                            detail={
                                "status": "CONFIRMED",
                                "previous_status": "CONFIRMED",
                                "start_at": start.isoformat(),
                                "previous_start_at": old.isoformat(),
                            },
                        )
                    )
                session.add(booking)


@pytest.fixture
def fortnight(db: str) -> str:
    _seed()
    return db


def _section(report_markdown: str) -> str:
    return report_markdown[report_markdown.index("## Booking insights") :]


def _finding(result: insights.Insights, key: str) -> insights.Finding:
    return next(f for f in result.findings if f.key == key)


@pytest.mark.db
def test_the_week_names_the_service_slot_and_change_a_manager_would_act_on(fortnight: str) -> None:
    result = insights.weekly(SUNDAY)
    assert result.title == "Booking insights — week Mon 09 Nov to Sun 15 Nov 2026"

    by_service = _finding(result, "cancellation-by-service").sentences
    # MRI 24/60; the rest: CT 6/60 + X-ray 5/10 = 11/70. Two groups eligible (X-ray has 10 < 30).
    assert by_service[0].startswith(
        "Highest cancellation rate by service: MRI – Knee, 40.0 % (24 of 60), against 15.7 % (11 of 70) "
        "for the rest — a real difference (two-proportion z-test, adjusted for the groups compared, p = 0.00"
    )
    assert "Not compared (fewer than 30 appointments): X-ray 50.0 % (5 of 10)." in by_service

    slots = _finding(result, "slots").sentences
    # Kept this week, 95: Mon morning 24 MRI + 18 CT = 42; Tue and Thu afternoon 18; Wed 12; Fri 5.
    assert slots[0] == (
        "Busiest: Mon morning (42 appointments, 44.2 %), Tue afternoon (18 appointments, 18.9 %), "
        "Thu afternoon (18 appointments, 18.9 %)."
    )
    assert slots[1].startswith(
        "Emptiest of the slots the clinic ran in the fortnight: Sat morning (0; previous"
    )

    changes = _finding(result, "week-on-week").sentences
    assert changes[0] == "130 appointments this week, 130 the week before."
    mri = [s for s in changes if s.startswith("The cancellation rate of MRI – Knee rose")]
    assert len(mri) == 1 and "from 10.0 % (6 of 60) to 40.0 % (24 of 60)" in mri[0]
    assert "a real difference (two-proportion z-test, Holm-adjusted" in mri[0]
    assert not any("X-ray" in s for s in changes)  # 0/10 → 5/10: too few to test, not reported
    xray = next(t for t in result.tests if t.about == "week on week: cancellation rate of X-ray")
    assert xray.result.test is None and not xray.real
    assert (xray.a, xray.b) == (Proportion(0, 10), Proportion(5, 10))
    ct = next(t for t in result.tests if t.about == "week on week: cancellation rate of CT – Chest")
    assert ct.result.test == "z" and not ct.real  # 6/60 both weeks: nothing changed

    reminders = _finding(result, "reminders").sentences
    # Kept MRI 36: every 2nd confirms after the 24h reminder (18); kept CT 54 all confirm after the 2h one;
    # X-ray 5 kept: every 2nd (3) after the 24h. 24h: 21 of 95 followed; 2h: 54 of 95.
    assert "The 24h reminder was followed by the patient's confirmation 22.1 % (21 of 95)" in reminders[0]
    assert reminders[1].startswith(
        "The 2h reminder was followed by the patient's confirmation 56.8 % (54 of 95)"
    )
    assert reminders[2].startswith(
        "The 2h reminder brings the most confirmations, 56.8 % (54 of 95), against"
    )

    moves = _finding(result, "reschedules").sentences
    assert moves[0] == "4.6 % (6 of 130) of this week's appointments had been moved at least once."
    assert moves[1] == (
        "6 move(s): 6 later, 0 earlier, by a median of 1.2 days; "
        "0 made less than 48 hours before the old time."
    )
    assert moves[2] == "Most often moved away from: Tue morning (6 of 6)."

    no_reply = _finding(result, "no-reply-by-service").sentences
    # Reminded (kept): MRI 36 of which 18 did not reply; CT 54, all replied; X-ray 5, 2 did not.
    assert no_reply[0].startswith("Highest no-reply rate by service: MRI – Knee, 50.0 % (18 of 36)")


@pytest.mark.db
def test_monday_report_carries_the_section_with_a_chart_each_and_no_patient_detail(fortnight: str) -> None:
    report = build(SUNDAY)  # Sunday's report, run on Monday morning: the week's insights are appended
    md = report.markdown
    assert "## Booking insights — week Mon 09 Nov to Sun 15 Nov 2026" in md
    section = _section(md)
    titles = [line for line in section.splitlines() if line.startswith("### ")]
    images = [line for line in section.splitlines() if line.startswith("![")]
    assert len(titles) == 12 and len(images) == 12  # a chart each: 1 + 4 + 4 + reminders, moves, slots
    for forbidden in ("Zelda", "Quixote", "+614", "@example.com", "see you soon"):
        assert forbidden not in md and forbidden not in report.text
    assert "Booking insights" in report.text and "data:image" not in report.text

    svg = b64decode(images[1].split("base64,", 1)[1].rstrip(")")).decode()  # cancellation by service
    root = ET.fromstring(svg)  # noqa: S314 (our own output)
    assert root.tag == f"{SVG}svg"
    bars = {
        (r.get("data-series"), r.get("data-category")): r.get("data-value")
        for r in root.findall(f".//{SVG}rect[@class='bar']")
    }
    assert bars == {
        ("this week", "CT – Chest"): "10",
        ("this week", "MRI – Knee"): "40",
        ("this week", "X-ray"): "50",
        ("previous week", "CT – Chest"): "10",
        ("previous week", "MRI – Knee"): "10",
        ("previous week", "X-ray"): "0",
    }
    tuesday = build(SUNDAY - timedelta(days=5))  # not a Monday run: no section unless asked
    assert "Booking insights" not in tuesday.markdown
    assert "Booking insights" in build(SUNDAY - timedelta(days=5), insights=True).markdown


@pytest.mark.db
def test_the_language_model_sees_aggregates_only(fortnight: str) -> None:
    from tests.fakes.llm import FakeChatModel

    result = insights.weekly(SUNDAY)
    with FakeChatModel() as model:
        model.content = json.dumps({"summary": "MRI – Knee cancellations rose to 40 %: call ahead."})
        settings = get_settings().model_copy(update={"sms_llm_url": model.url})
        summary = asyncio.run(insights.phrase_summary(result, settings))
        assert summary == "MRI – Knee cancellations rose to 40 %: call ahead."
        (request,) = model.requests
        prompt = json.dumps(request["json"]["messages"], ensure_ascii=False)
        assert "40.0 % (24 of 60)" in prompt and "MRI – Knee" in prompt
        for forbidden in ("Zelda", "Quixote", "+614", "@example.com", "see you soon"):
            assert forbidden not in prompt
        model.status = 500  # a failing model: no summary, the computed sentences stand
        assert asyncio.run(insights.phrase_summary(result, settings)) is None
    assert asyncio.run(insights.phrase_summary(result, get_settings())) is None  # not configured


@pytest.mark.db
def test_a_reschedule_through_booking_intake_is_seen(db: str) -> None:
    booking_id = str(uuid.uuid4())
    apply_wix(WixKeys(), "wix.bookings.v2.booking_created", booking_id, 1, at(MONDAY, 1, 9))
    apply_wix(WixKeys(), "wix.bookings.v2.booking_updated", booking_id, 2, at(MONDAY, 3, 15))
    result = insights.weekly(SUNDAY)
    moves = _finding(result, "reschedules").sentences
    assert moves[0] == "100.0 % (1 of 1) of this week's appointments had been moved at least once."
    assert moves[1].startswith("1 move(s): 1 later, 0 earlier, by a median of 2.2 days")
    assert moves[2] == "Most often moved away from: Tue morning (1 of 1)."


@pytest.mark.db
def test_avatar_crm_report_week_prints_the_section(fortnight: str) -> None:
    result = CliRunner().invoke(cli, ["report", "--date", "2026-11-15", "--week"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Booking insights — week Mon 09 Nov to Sun 15 Nov 2026")
    assert "Daily report" not in result.output and "MRI – Knee, 40.0 % (24 of 60)" in result.output
    both = CliRunner().invoke(cli, ["report", "--date", "2026-11-12", "--insights", "--markdown"])
    assert both.exit_code == 0 and "## Booking insights — week Fri 06 Nov to Thu 12 Nov 2026" in both.output


def test_the_tests_against_known_values() -> None:
    # 10 % vs 40 % of 60: pooled 0.25, z = 0.3 / sqrt(0.25 · 0.75 · 2/60) = 3.795; two-sided normal tail.
    z = 0.3 / math.sqrt(0.25 * 0.75 * 2 / 60)
    expected = 2 * (1 - NormalDist().cdf(z))
    assert z_test(Proportion(6, 60), Proportion(24, 60)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.000148, abs=1e-6)
    # Fisher's exact, the tea-tasting table 3/4 vs 1/4: two-sided p = 0.486.
    assert fisher_exact(Proportion(3, 4), Proportion(1, 4)) == pytest.approx(0.4857, abs=1e-4)
    assert fisher_exact(Proportion(0, 10), Proportion(5, 10)) == pytest.approx(0.0325, abs=1e-4)
    assert compare(Proportion(0, 10), Proportion(5, 10)).test is None  # below the minimum sample
    assert compare(Proportion(1, 40), Proportion(2, 40)).test == "fisher"  # expected counts under 5
    assert compare(Proportion(10, 40), Proportion(20, 40)).test == "z"
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_grouped_bars_draw_a_bar_per_value_side_by_side() -> None:
    svg = charts.grouped_bars(
        "Rates",
        ["A", "B"],
        [charts.Series("now", "#000", [40.0, None]), charts.Series("then", "#999", [0, 10])],
    )
    root = ET.fromstring(svg)  # noqa: S314 (our own output)
    rects = root.findall(f".//{SVG}rect[@class='bar']")
    assert [(r.get("data-category"), r.get("data-series"), r.get("data-value")) for r in rects] == [
        ("A", "now", "40"),
        ("A", "then", "0"),
        ("B", "then", "10"),
    ]
    assert float(rects[0].get("x")) < float(rects[1].get("x"))  # side by side, not stacked
