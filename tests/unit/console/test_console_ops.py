"""The ops pages through Litestar's TestClient, signed in through the fake Google OIDC as the ops user: the
inbox list filters and pages without showing a body, a replay re-queues a failed event for the dispatcher (the
row's state) and is audited, a refused one too; a patient's own STOP cannot be lifted (refused, a denied audit
row, the suppression still there) while a staff marketing suppression can; the KPI page shows the counts
seeded; the runs page says when Prefect does not answer."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlmodel import select

from messaging import consent
from messaging.contacts import ContactInput, upsert_contact
from models import (
    Channel,
    ConsentAction,
    ConsentEvent,
    ConsentOrigin,
    Contact,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    StaffRole,
    Suppression,
    WebhookEvent,
    session_scope,
)
from tests.console_env import BASE, STAFF, audit_count, audit_rows, csrf, sign_in
from tests.fakes.google_oidc import FakeGoogleOIDC

pytestmark = pytest.mark.db
OPS = STAFF[StaffRole.OPS]
SECRET_BODY = b'{"contact": {"name": {"first": "Zelda"}, "phone": "+61499888777"}}'
BRISBANE = ZoneInfo("Australia/Brisbane")
DAY = date(2026, 11, 17)


@pytest.fixture
def ops(app: Litestar, fake: FakeGoogleOIDC) -> Iterator[TestClient[Litestar]]:
    with TestClient(app, base_url=BASE) as client:
        assert sign_in(client, fake, OPS).status_code == 303
        yield client


def event(
    source: str, status: InboxStatus, *, error: str | None = None, received: datetime | None = None
) -> int:
    with session_scope() as session:
        row = WebhookEvent(
            source=source,
            dedupe_key=f"ops-{uuid.uuid4().hex}",
            event_type="wix.bookings.v2.booking_created" if source == "wix" else "inbound",
            body=SECRET_BODY,
            status=status,
            last_error=error,
            next_dispatch_at=None,
            processed_at=None if status == InboxStatus.RECEIVED else (received or datetime.now(UTC)),
        )
        if received is not None:
            row.received_at = received
        session.add(row)
        session.flush()
        return row.id  # type: ignore[return-value]


def listed_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr id="event-(\d+)">', html)]


def replay(ops: TestClient[Litestar], form: dict[str, str]) -> httpx.Response:
    """The inbox's replay form posted (its redirect, if any, not followed)."""
    return ops.post("/console/ops/events/replay", headers=csrf(ops), data=form, follow_redirects=False)


# --- the inbox ---------------------------------------------------------------------------------------


def test_the_inbox_filters_by_status_and_source_and_pages_newest_first_without_bodies(
    ops: TestClient[Litestar],
) -> None:
    failed_wix = [event("wix", InboxStatus.FAILED, error="ValueError: no such service") for _ in range(3)]
    failed_sms = event("mobilemessage", InboxStatus.FAILED, error="KeyError: 'to'")
    processed = [event("wix", InboxStatus.PROCESSED) for _ in range(60)]
    everything = sorted([*failed_wix, failed_sms, *processed], reverse=True)

    first = ops.get("/console/ops/events")
    assert first.status_code == 200
    assert listed_ids(first.text) == everything[:50]
    assert "Zelda" not in first.text and "+61499888777" not in first.text  # ids and states, never a body
    older = re.search(r'id="older" href="/console/ops/events\?([^"]+)"', first.text)
    assert older is not None
    second = ops.get(f"/console/ops/events?{older.group(1).replace('&amp;', '&')}")
    assert listed_ids(second.text) == everything[50:]
    assert 'id="older"' not in second.text

    failed = ops.get("/console/ops/events?status=failed")
    assert listed_ids(failed.text) == sorted([*failed_wix, failed_sms], reverse=True)
    assert "ValueError: no such service" in failed.text and failed.text.count(">Replay</button>") == 4
    wix_failed = ops.get("/console/ops/events?status=failed&source=wix")
    assert listed_ids(wix_failed.text) == sorted(failed_wix, reverse=True)
    assert "Replay" not in ops.get("/console/ops/events?status=processed").text.split("<tbody>")[1]
    assert listed_ids(ops.get("/console/ops/events?source=sendgrid").text) == []


def test_replay_requeues_a_failed_event_for_the_dispatcher_and_is_audited(ops: TestClient[Litestar]) -> None:
    failed = event("wix", InboxStatus.FAILED, error="ValueError: no such service")
    before = audit_count()
    answer = replay(ops, {"event_id": str(failed), "reason": "service added in Wix", "status": "failed"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/console/ops/events?status=failed&replayed={failed}"
    with session_scope() as session:
        row = session.get(WebhookEvent, failed)
        assert row is not None
        # Back to the dispatcher: `received` (it may already have tried Prefect, which is not there), one run
        # more (so a new idempotency key), and no longer processed.
        assert row.status == InboxStatus.RECEIVED and row.redispatches == 1 and row.processed_at is None
    rows = audit_rows()[before:]
    assert [(r.actor, r.role, r.action, r.subject, r.outcome, r.reason) for r in rows] == [
        (OPS, "ops", "inbox_event.replayed", f"inbox_event:{failed}", "allowed", "service added in Wix")
    ]
    assert rows[0].detail["status_before"] == "failed" and rows[0].detail["run"] == 2
    page = ops.get(f"/console/ops/events?replayed={failed}")
    assert f"Event {failed} is queued for a new flow run" in page.text


def test_a_replay_of_an_event_that_did_not_fail_is_refused_and_audited_as_denied(
    ops: TestClient[Litestar],
) -> None:
    processed = event("wix", InboxStatus.PROCESSED)
    failed = event("wix", InboxStatus.FAILED)
    before = audit_count()
    refused = replay(ops, {"event_id": str(processed), "reason": "again"})
    assert refused.status_code == 409 and "only failed events are replayed here" in refused.text
    no_reason = replay(ops, {"event_id": str(failed), "reason": " "})
    assert no_reason.status_code == 400 and "say why" in no_reason.text
    with session_scope() as session:
        assert session.get(WebhookEvent, processed).status == InboxStatus.PROCESSED  # type: ignore[union-attr]
        assert session.get(WebhookEvent, failed).status == InboxStatus.FAILED  # type: ignore[union-attr]
    rows = audit_rows()[before:]
    assert [(r.action, r.subject, r.outcome) for r in rows] == [
        ("inbox_event.replayed", f"inbox_event:{processed}", "denied")
    ]


# --- suppressions and consent --------------------------------------------------------------------------


def patient(phone: str | None = None, email: str | None = None) -> int:
    with session_scope() as session:
        made = upsert_contact(session, ContactInput("Pat", "Example", email, phone))
        return made.contact.id  # type: ignore[return-value]


def suppressions() -> list[tuple[str, str, str]]:
    with session_scope() as session:
        rows = session.exec(select(Suppression).order_by(Suppression.id)).all()  # type: ignore[arg-type]
        return [(r.channel, r.purpose, r.origin) for r in rows]


def test_a_patients_own_stop_cannot_be_lifted_here(ops: TestClient[Litestar]) -> None:
    phone = "+61412000111"
    contact_id = patient(phone=phone, email="pat@example.com")
    with session_scope() as session:  # the patient texted STOP, as SMS triage records it
        contact = session.get(Contact, contact_id)
        why = consent.ConsentSource("sms_reply", "sms-triage", "STOP", origin=ConsentOrigin.PATIENT_SMS)
        consent.withdraw(session, phone=phone, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=why)
    stopped = suppressions()
    assert len(stopped) == 3

    before = audit_count()
    looked = ops.post("/console/ops/consent", headers=csrf(ops), data={"address": "0412 000 111"})
    assert looked.status_code == 200
    assert "patient's own" in looked.text and "texting START" in looked.text
    assert 'id="patient-stop"' in looked.text and f"contact #{contact_id}" in looked.text
    assert "Pat" not in looked.text  # the consent state, not the patient's name
    [viewed] = audit_rows()[before:]
    assert (viewed.actor, viewed.action, viewed.subject) == (OPS, "consent.viewed", f"contact:{contact_id}")

    before = audit_count()
    lift = ops.post(
        "/console/ops/consent/lift",
        headers=csrf(ops),
        data={"address": "0412 000 111", "note": "she said at the desk she wants texts again"},
    )
    assert lift.status_code == 409
    assert "refused, nothing changed" in lift.text and "only the patient can opt back in" in lift.text
    assert suppressions() == stopped  # still suppressed, all three
    [denied] = audit_rows()[before:]
    assert (denied.action, denied.outcome, denied.subject) == (
        "suppression.lifted",
        "denied",
        f"contact:{contact_id}",
    )
    with session_scope() as session:
        refusals = session.exec(
            select(ConsentEvent).where(ConsentEvent.action == ConsentAction.REFUSED)
        ).all()
        assert refusals and {r.actor for r in refusals} == {OPS}
    assert "refused" in lift.text.split('id="history"')[1]  # the ledger shows the attempt

    before = audit_count()
    opt_in = ops.post(
        "/console/ops/consent/marketing",
        headers=csrf(ops),
        data={"address": phone, "decision": "grant", "note": "ticked the SMS offers box"},
    )
    assert opt_in.status_code == 409 and "refused, nothing changed" in opt_in.text
    assert suppressions() == stopped
    with session_scope() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None and contact.sms_marketing_consent_at is None
    assert [(r.action, r.outcome) for r in audit_rows()[before:]] == [("consent.granted", "denied")]


def test_sms_marketing_consent_is_recorded_and_withdrawn_for_a_phone(ops: TestClient[Litestar]) -> None:
    """The paper form's SMS-offers box, recorded as `consent grant --phone` records it; withdrawn, the
    patient's reminders still go (a marketing suppression only)."""
    phone = "+61412000444"
    contact_id = patient(phone=phone, email="offers@example.com")

    def marketing(decision: str, note: str = "") -> httpx.Response:
        data = {"address": "0412 000 444", "decision": decision, "note": note}
        return ops.post("/console/ops/consent/marketing", headers=csrf(ops), data=data)

    def consented() -> bool:
        with session_scope() as session:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            return contact.sms_marketing_consent_at is not None

    looked = ops.post("/console/ops/consent", headers=csrf(ops), data={"address": "0412 000 444"})
    assert 'id="marketing-form"' in looked.text
    by_email = ops.post("/console/ops/consent", headers=csrf(ops), data={"address": "offers@example.com"})
    assert 'id="marketing-form"' not in by_email.text  # an email's lift and suppress are its consent

    before = audit_count()
    unnoted = marketing("grant")
    assert unnoted.status_code == 400 and "a note is required" in unnoted.text
    assert marketing("maybe", "x").status_code == 400
    assert not consented() and audit_count() == before

    granted = marketing("grant", "ticked the SMS offers box on the intake form")
    assert granted.status_code == 200 and "marketing consent recorded" in granted.text
    assert consented() and suppressions() == []
    assert "already recorded" in marketing("grant", "said so again").text

    withdrawn = marketing("withdraw", "no more offers please")
    assert withdrawn.status_code == 200 and "marketing consent withdrawn" in withdrawn.text
    assert not consented()
    assert suppressions() == [("sms", "marketing", "staff")]  # reminders and replies still go
    with session_scope() as session:
        ledger = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()  # type: ignore[arg-type]
        assert [(e.channel, e.purpose, e.action, e.actor) for e in ledger] == [
            ("sms", "marketing", "granted", OPS),
            ("sms", "marketing", "granted", OPS),
            ("sms", "marketing", "withdrawn", OPS),
        ]
    assert [(r.action, r.outcome, r.subject, r.reason) for r in audit_rows()[before:]] == [
        (
            "consent.granted",
            "allowed",
            f"contact:{contact_id}",
            "ticked the SMS offers box on the intake form",
        ),
        ("consent.granted", "allowed", f"contact:{contact_id}", "said so again"),
        ("consent.withdrawn", "allowed", f"contact:{contact_id}", "no more offers please"),
    ]
    nobody = ops.post(
        "/console/ops/consent/marketing",
        headers=csrf(ops),
        data={"address": "0412 999 999", "decision": "grant", "note": "x"},
    )
    assert nobody.status_code == 400 and "no patient has this phone number" in nobody.text


def test_a_staff_marketing_suppression_is_added_and_lifted_with_a_note(ops: TestClient[Litestar]) -> None:
    contact_id = patient(email="pat@example.com")
    before = audit_count()
    added = ops.post(
        "/console/ops/consent/suppress",
        headers=csrf(ops),
        data={"address": "Pat@Example.com", "note": "asked for no newsletters"},
    )
    assert added.status_code == 200 and "suppressed" in added.text
    assert suppressions() == [("email", "marketing", "staff")]
    assert "staff may lift it" in added.text

    no_note = ops.post(
        "/console/ops/consent/lift", headers=csrf(ops), data={"address": "pat@example.com", "note": ""}
    )
    assert no_note.status_code == 400 and "a note is required" in no_note.text
    assert suppressions() == [("email", "marketing", "staff")]

    lifted = ops.post(
        "/console/ops/consent/lift",
        headers=csrf(ops),
        data={"address": "pat@example.com", "note": "signed the newsletter form at reception"},
    )
    assert lifted.status_code == 200 and "lifted" in lifted.text
    assert suppressions() == []
    with session_scope() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None and contact.email_marketing_consent_at is not None
        ledger = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()  # type: ignore[arg-type]
        assert [(e.action, e.origin, e.actor) for e in ledger] == [
            ("withdrawn", "staff", OPS),
            ("granted", "staff", OPS),
        ]
    rows = audit_rows()[before:]
    assert [(r.action, r.outcome, r.subject, r.reason) for r in rows] == [
        ("consent.withdrawn", "allowed", f"contact:{contact_id}", "asked for no newsletters"),
        ("consent.granted", "allowed", f"contact:{contact_id}", "signed the newsletter form at reception"),
    ]


def test_a_staff_phone_suppression_is_lifted_like_suppress_remove(ops: TestClient[Litestar]) -> None:
    patient(phone="+61412000222")
    ops.post("/console/ops/consent/suppress", headers=csrf(ops), data={"address": "+61412000222"})
    assert sorted(suppressions()) == [("sms", "marketing", "staff"), ("sms", "transactional", "staff")]
    lifted = ops.post(
        "/console/ops/consent/lift",
        headers=csrf(ops),
        data={"address": "+61412000222", "note": "texted from a new phone, confirmed by call"},
    )
    assert lifted.status_code == 200 and suppressions() == []
    assert [r.action for r in audit_rows()[-2:]] == ["suppression.added", "suppression.lifted"]


def test_an_unusable_address_is_said_and_changes_nothing(ops: TestClient[Litestar]) -> None:
    before = audit_count()
    bad = ops.post("/console/ops/consent", headers=csrf(ops), data={"address": "not a number"})
    assert bad.status_code == 400 and "not a valid phone number" in bad.text
    nobody = ops.post(
        "/console/ops/consent/lift", headers=csrf(ops), data={"address": "nobody@example.com", "note": "x"}
    )
    assert nobody.status_code == 400 and "no patient has this email address" in nobody.text
    assert audit_count() == before and suppressions() == []


# --- KPIs and runs -----------------------------------------------------------------------------------


def local(hour: int, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=BRISBANE).astimezone(UTC)


def sms(status: MessageStatus, sent_at: datetime) -> None:
    with session_scope() as session:
        session.add(
            OutboundMessage(
                idempotency_key=f"test:{uuid.uuid4()}",
                channel=Channel.SMS,
                purpose=Purpose.TRANSACTIONAL,
                kind=MessageKind.CONFIRMATION,
                recipient="+61400000000",
                body="(test)",
                status=status,
                sent_at=sent_at,
                provider="mobilemessage",
            )
        )


def count_cell(html: str, label: str) -> str:
    found = re.search(rf"<tr><td>{re.escape(label)}</td><td>([^<]*)</td></tr>", html)
    assert found is not None, label
    return found.group(1)


def target_row(html: str, label: str) -> tuple[str, str]:
    found = re.search(
        rf"<tr><td>{re.escape(label)}</td><td>[^<]*</td><td>([^<]*)</td>\s*<td><span[^>]*>([^<]*)</span>",
        html,
    )
    assert found is not None, label
    return found.group(1), found.group(2)


def test_the_kpi_page_shows_the_days_counts_against_the_targets(ops: TestClient[Litestar]) -> None:
    for status in (InboxStatus.PROCESSED, InboxStatus.PROCESSED, InboxStatus.FAILED):
        event("wix", status, received=local(10))
    event("wix", InboxStatus.PROCESSED, received=local(10, DAY - timedelta(days=1)))  # the day before
    for status in (
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERED,
        MessageStatus.SENT,
    ):
        sms(status, local(12))
    with session_scope() as session:
        session.add(
            ConsentEvent(
                address_hash="stop-1",
                channel=Channel.SMS,
                purpose=Purpose.TRANSACTIONAL,
                action=ConsentAction.WITHDRAWN,
                source="sms_reply",
                actor="test",
                origin=ConsentOrigin.PATIENT_SMS,
                at=local(9),
            )
        )
    page = ops.get(f"/console/ops/kpis?date={DAY.isoformat()}")
    assert page.status_code == 200 and "Tue 17 Nov 2026" in page.text
    assert count_cell(page.text, "Bookings received") == "3"
    assert count_cell(page.text, "Bookings applied") == "2"
    assert count_cell(page.text, "Bookings failed") == "1"
    assert count_cell(page.text, "SMS sent") == "4"
    assert count_cell(page.text, "SMS delivered") == "3"
    assert count_cell(page.text, "Opt-outs") == "1"
    assert target_row(page.text, "SMS delivery rate") == ("75.0 %", "not met")
    assert target_row(page.text, "Booking sync rate") == ("—", "not measured")
    assert target_row(page.text, "Flow run failure rate (all deployments)") == ("—", "not measured")
    before = ops.get(f"/console/ops/kpis?date={(DAY - timedelta(days=1)).isoformat()}")
    assert count_cell(before.text, "Bookings received") == "1" and count_cell(before.text, "SMS sent") == "0"
    default = ops.get("/console/ops/kpis")  # yesterday, clinic time
    yesterday = (datetime.now(BRISBANE) - timedelta(days=1)).date()
    assert default.status_code == 200 and yesterday.strftime("%a %d %b %Y") in default.text
    assert ops.get("/console/ops/kpis?date=17/11/2026").status_code == 400


def test_the_runs_page_says_when_prefect_does_not_answer(ops: TestClient[Litestar]) -> None:
    page = ops.get("/console/ops/runs")
    assert page.status_code == 200
    assert 'id="prefect-unreachable"' in page.text and "http://127.0.0.1:9/api" in page.text


def test_other_roles_do_not_get_the_ops_pages(app: Litestar, fake: FakeGoogleOIDC) -> None:
    with TestClient(app, base_url=BASE) as client:
        assert sign_in(client, fake, STAFF[StaffRole.RECEPTION]).status_code == 303
        assert client.get("/console/ops/events").status_code == 403
        failed = event("wix", InboxStatus.FAILED)
        refused = client.post(
            "/console/ops/events/replay", headers=csrf(client), data={"event_id": str(failed), "reason": "x"}
        )
        assert refused.status_code == 403
        with session_scope() as session:
            assert session.get(WebhookEvent, failed).status == InboxStatus.FAILED  # type: ignore[union-attr]
        assert "/console/ops/events" not in client.get("/console/tasks").text  # not in the navigation
