"""campaign-send and campaign-winner on the real database, against a fake SendGrid that validates every
request with SendGrid's official OpenAPI description, and the fake MobileMessage for SMS.

The flows are called as their bodies (`.fn`), as tests/unit/test_reminders.py does; the served deployments are
exercised by the integration rig.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select, text, update
from typer.testing import CliRunner

from campaigns import bulk_outbox as campaign_outbox
from campaigns import campaign as campaign_domain
from campaigns.audience import assignment_point, stream_recipients
from campaigns.campaign import CampaignError
from campaigns.spec import CampaignSpec
from deployments.cli import app as cli
from flows.campaign_send import campaign_send, campaign_winner
from flows.tasks import campaign_batches
from messaging.consent import ConsentSource, set_marketing_consent, withdraw
from messaging.outbox import Outcome
from messaging.provider_slots import SlotTimeoutError
from models import (
    Booking,
    Campaign,
    CampaignStatus,
    Channel,
    ConsentOrigin,
    Contact,
    ContactTag,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    Purpose,
    Suppression,
    get_settings,
    session_scope,
)
from models.crypto import get_cipher
from providers.sendgrid import SendGridClient
from tests.campaign_data import seed
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.fakes.sendgrid import FakeSendGrid
from tests.sms_env import mobilemessage

pytestmark = pytest.mark.db

API_KEY = "SG.campaign-test"
GROUP_ID = 4242
TEMPLATE_A = "d-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
TEMPLATE_B = "d-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
NOW = datetime.now(UTC)


def _clean() -> None:
    with session_scope() as session:
        session.execute(delete(ContactTag))
        session.execute(text("UPDATE outboundmessage SET campaign_id = NULL"))
        session.execute(delete(Campaign))


@pytest.fixture
def sendgrid(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSendGrid]:
    """A spec-validating fake SendGrid the campaign really posts to; settings pointed at it."""
    _clean()
    fake = FakeSendGrid(API_KEY).start()
    for name, value in {
        "EMAIL_CAMPAIGN_PROVIDER": "sendgrid",
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_API_URL": fake.url,
        "SENDGRID_FROM_EMAIL": "news@avatar-imaging.example",
        "SENDGRID_FROM_NAME": "Avatar Imaging",
        "SENDGRID_UNSUBSCRIBE_GROUP_ID": str(GROUP_ID),
        "SENDGRID_MAX_IN_FLIGHT": "4",
        "CLINIC_ADDRESS": "1 Example St, Brisbane QLD 4000",
    }.items():
        monkeypatch.setenv(name, value)
    # Fast retries (the client's own backoff is tested in isolation; here the outage path matters).
    monkeypatch.setattr(
        SendGridClient,
        "from_settings",
        classmethod(lambda cls, s: SendGridClient(API_KEY, fake.url, base_delay=0.01, max_attempts=2)),
    )
    get_settings.cache_clear()
    yield fake
    fake.stop()
    get_settings.cache_clear()
    _clean()


@pytest.fixture
def sms(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMobileMessage]:
    _clean()
    # Quiet hours are set around the present moment by the tests that need them.
    with mobilemessage(monkeypatch, SMS_QUIET_HOURS="") as fake:
        yield fake
    _clean()


def email_spec(**fields: Any) -> CampaignSpec:
    base: dict[str, Any] = {
        "name": "Spring recall",
        "channel": "email",
        "variants": [{"template_id": TEMPLATE_A, "template_data": {"offer": "10% off"}}],
    }
    return CampaignSpec.model_validate(base | fields)


def run(spec: CampaignSpec) -> dict[str, Any]:
    return asyncio.run(campaign_send.fn(spec))


def winner(slug: str, choice: str | None = None) -> dict[str, Any]:
    return asyncio.run(campaign_winner.fn(slug, choice))


def rows(slug: str) -> list[OutboundMessage]:
    with session_scope() as session:
        return list(
            session.exec(
                select(OutboundMessage)
                .join(Campaign, Campaign.id == OutboundMessage.campaign_id)
                .where(Campaign.slug == slug)
                .order_by(OutboundMessage.id)
            ).scalars()
        )


def campaign(slug: str) -> Campaign:
    with session_scope() as session:
        row = session.exec(select(Campaign).where(Campaign.slug == slug)).scalars().one()
        return row


def test_2500_recipients_go_in_three_spec_valid_requests_of_1000_1000_500(sendgrid: FakeSendGrid) -> None:
    addresses = seed(2500)
    result = run(email_spec())

    assert result["status"] == CampaignStatus.SENT
    assert sendgrid.invalid == []
    assert sorted(len(body["personalizations"]) for body in sendgrid.accepted) == [500, 1000, 1000]
    assert sorted(sendgrid.recipients()) == sorted(addresses)  # each patient exactly once
    body = sendgrid.accepted[0]
    assert body["template_id"] == TEMPLATE_A
    assert body["asm"] == {"group_id": GROUP_ID}
    assert sorted(body["categories"]) == ["campaign", "campaign-spring-recall"]
    assert body["from"] == {"email": "news@avatar-imaging.example", "name": "Avatar Imaging"}
    assert (
        "custom_args" not in body
    )  # top-level custom_args must be a string per the spec; ours are per person
    by_outbox_id = {m.id: m for m in rows("spring-recall")}
    for personalization in (p for b in sendgrid.accepted for p in b["personalizations"]):
        args = personalization["custom_args"]
        message = by_outbox_id[int(args["outbox_id"])]
        assert message.recipient == personalization["to"][0]["email"]
        assert args == {"outbox_id": str(message.id), "campaign": "spring-recall", "variant": "A"}
        assert personalization["dynamic_template_data"]["offer"] == "10% off"
        assert personalization["dynamic_template_data"]["first_name"].startswith("Pat")
    assert {m.status for m in by_outbox_id.values()} == {MessageStatus.SENT}
    assert all(m.kind == "campaign" and m.purpose == Purpose.MARKETING for m in by_outbox_id.values())
    assert campaign("spring-recall").status == CampaignStatus.SENT
    assert result["results"][0]["sent"] == 2500

    again = run(email_spec())  # a repeated launch sends nobody anything
    assert len(sendgrid.accepted) == 3 and again["status"] == CampaignStatus.SENT


def test_suppressed_and_non_consenting_patients_never_appear_in_a_request(sendgrid: FakeSendGrid) -> None:
    addresses = seed(40)
    no_consent = seed(5, consent=False, offset=100)
    suppressed_before, suppressed_later, withdrawn_later = (
        "patient1@example.com",
        "patient2@example.com",
        "patient3@example.com",
    )
    why = ConsentSource("staff", "test", origin=ConsentOrigin.STAFF)
    with session_scope() as session:
        contact = session.get(Contact, addresses[suppressed_before])
        withdraw(session, phone=None, contact=contact, scopes=[(Channel.EMAIL, Purpose.MARKETING)], why=why)

    # Queue first, then change consent before the send: the claim-time re-check must catch both.
    spec = email_spec(name="Consent check")
    state = campaign_domain.open_campaign(spec, CampaignStatus.SENDING)
    assert campaign_domain.queue_audience(state, get_settings()) == 39
    with session_scope() as session:
        withdraw(
            session,
            phone=None,
            contact=session.get(Contact, addresses[suppressed_later]),
            scopes=[(Channel.EMAIL, Purpose.MARKETING)],
            why=why,
        )
        set_marketing_consent(
            session, session.get(Contact, addresses[withdrawn_later]), Channel.EMAIL, granted=False, why=why
        )
    run(spec)

    sent = set(sendgrid.recipients())
    assert sent == set(addresses) - {suppressed_before, suppressed_later, withdrawn_later}
    assert not sent & set(no_consent)
    statuses = {m.recipient: m.status for m in rows("consent-check")}
    assert statuses[suppressed_later] == statuses[withdrawn_later] == MessageStatus.SUPPRESSED
    assert suppressed_before not in statuses  # never queued


class Killed(BaseException):
    """The process dying (not an Exception: nothing may catch and carry on)."""


def test_a_run_killed_mid_request_resumes_and_each_recipient_gets_it_once(
    sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = seed(2500)
    monkeypatch.setenv("SENDGRID_MAX_IN_FLIGHT", "1")
    get_settings.cache_clear()
    real_send = SendGridClient.send
    calls = {"n": 0}

    def dies_after_second_post(self: SendGridClient, body: dict[str, Any]) -> int:
        calls["n"] += 1
        status = real_send(self, body)  # SendGrid has it ...
        if calls["n"] == 2:
            raise Killed  # ... and the sender dies before recording it
        return status

    monkeypatch.setattr(SendGridClient, "send", dies_after_second_post)
    with pytest.raises(Killed):
        run(email_spec())
    assert Counter(m.status for m in rows("spring-recall")) == {
        MessageStatus.SENT: 1000,
        MessageStatus.SENDING: 1000,
        MessageStatus.PENDING: 500,
    }

    monkeypatch.setattr(SendGridClient, "send", real_send)
    result = run(email_spec())

    assert sorted(sendgrid.recipients()) == sorted(addresses)  # the in-flight batch was not posted again
    assert sendgrid.invalid == []
    assert {m.status for m in rows("spring-recall")} == {MessageStatus.SENT}
    assert result["settled"] == {"unconfirmed": 1000}
    with session_scope() as session:
        unconfirmed = session.execute(
            select(OutboundMessageEvent.message_id).where(OutboundMessageEvent.detail.like("unconfirmed%"))  # type: ignore[attr-defined]
        ).all()
    assert len(unconfirmed) == 1000


def test_an_outage_mid_campaign_stops_the_run_and_a_rerun_sends_the_rest_once(
    sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = seed(2500)
    monkeypatch.setenv("SENDGRID_MAX_IN_FLIGHT", "1")
    get_settings.cache_clear()
    unavailable = (503, {"errors": [{"field": None, "message": "service unavailable"}]}, {"Retry-After": "0"})
    real_send = SendGridClient.send
    calls = {"n": 0}

    def outage_after_first(self: SendGridClient, body: dict[str, Any]) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            sendgrid.script(*[unavailable] * 50)
        return real_send(self, body)

    monkeypatch.setattr(SendGridClient, "send", outage_after_first)
    with pytest.raises(CampaignError, match="run the campaign again to resume"):
        run(email_spec())
    assert Counter(m.status for m in rows("spring-recall")) == {
        MessageStatus.SENT: 1000,
        MessageStatus.PENDING: 1500,
    }
    assert len(sendgrid.recipients()) == 1000

    sendgrid.reset()
    run(email_spec())
    assert len(sendgrid.recipients()) == 1500
    assert {m.status for m in rows("spring-recall")} == {MessageStatus.SENT}
    assert {m.recipient for m in rows("spring-recall")} == set(addresses)


def test_a_permanent_refusal_fails_the_batch_without_retrying(sendgrid: FakeSendGrid) -> None:
    seed(10)
    sendgrid.script((403, {"errors": [{"field": None, "message": "access forbidden"}]}, {}))
    run(email_spec())
    assert len(sendgrid.requests) == 1
    assert {(m.status, m.last_error) for m in rows("spring-recall")} == {
        (MessageStatus.FAILED, "SendGrid 403: access forbidden")
    }


def ab_spec(**fields: Any) -> CampaignSpec:
    return email_spec(
        name="Knee follow-up",
        variants=[
            {"template_id": TEMPLATE_A},
            {
                "subject": "{{ first_name }}, time for a follow-up?",
                "body": "Book at https://example.com/book",
            },
        ],
        ab_test={"test_fraction": 0.2, "metric": "clicks", "wait_hours": 24, "min_sample": 100},
        **fields,
    )


def engage(slug: str, rates: dict[str, float]) -> None:
    """Clicks as SendGrid's event webhook would record them: the first `rate` share of each variant."""
    by_variant: dict[str, list[int]] = {}
    for message in rows(slug):
        by_variant.setdefault(message.variant or "", []).append(message.id)  # type: ignore[arg-type]
    with session_scope() as session:
        for variant, rate in rates.items():
            ids = by_variant[variant][: round(len(by_variant[variant]) * rate)]
            session.execute(
                update(OutboundMessage)
                .where(OutboundMessage.id.in_(ids))
                .values(clicked_at=NOW, opened_at=NOW)  # type: ignore[union-attr]
            )


def test_ab_test_group_then_a_significant_winner_goes_to_the_rest(sendgrid: FakeSendGrid) -> None:
    addresses = seed(3000)
    result = run(ab_spec())

    assert result["status"] == CampaignStatus.TESTING
    assert campaign("knee-follow-up").status == CampaignStatus.TESTING
    test_group = rows("knee-follow-up")
    sizes = Counter(m.variant for m in test_group)
    assert 500 < len(test_group) < 700 and min(sizes.values()) > 240
    for body in sendgrid.accepted:  # one variant per request
        assert len({p["custom_args"]["variant"] for p in body["personalizations"]}) == 1
    b_body = next(b for b in sendgrid.accepted if "template_id" not in b)
    assert b_body["subject"] == "-first_name-, time for a follow-up?"
    assert b_body["personalizations"][0]["substitutions"]["-first_name-"].startswith("Pat")
    assert '<a href="https://example.com/book">' in b_body["content"][1]["value"]

    engage("knee-follow-up", {"A": 0.05, "B": 0.30})
    sendgrid.reset()
    decided = winner("knee-follow-up")

    assert decided["winner"] == "B" and "B wins" in decided["reason"]
    row = campaign("knee-follow-up")
    assert row.status == CampaignStatus.SENT and row.winner_variant == "B"
    assert sendgrid.invalid == []
    assert {b.get("subject") for b in sendgrid.accepted} == {"-first_name-, time for a follow-up?"}
    everyone = rows("knee-follow-up")
    assert sorted(m.recipient for m in everyone) == sorted(addresses)
    assert len(sendgrid.recipients()) == 3000 - len(test_group)
    assert not set(sendgrid.recipients()) & {m.recipient for m in test_group}


def test_an_insignificant_test_waits_for_a_person_then_their_choice_is_sent(sendgrid: FakeSendGrid) -> None:
    seed(3000)
    run(ab_spec())
    engage("knee-follow-up", {"A": 0.10, "B": 0.11})
    sendgrid.reset()

    decided = winner("knee-follow-up")
    assert decided["status"] == CampaignStatus.AWAITING_CHOICE
    assert "not significant" in decided["reason"]
    assert sendgrid.requests == []
    assert campaign("knee-follow-up").status == CampaignStatus.AWAITING_CHOICE
    assert "not significant" in (campaign("knee-follow-up").winner_reason or "")

    with pytest.raises(CampaignError, match="no variant 'C'"):
        winner("knee-follow-up", "C")
    chosen = winner("knee-follow-up", "A")
    assert chosen["winner"] == "A" and chosen["reason"] == "chosen by a person"
    assert {b["template_id"] for b in sendgrid.accepted} == {TEMPLATE_A}
    assert len(rows("knee-follow-up")) == 3000
    assert campaign("knee-follow-up").status == CampaignStatus.SENT


def test_a_dry_run_counts_and_previews_and_sends_nothing(sendgrid: FakeSendGrid) -> None:
    seed(500)
    result = run(ab_spec(dry_run=True))

    assert sendgrid.requests == [] and rows("knee-follow-up") == []
    assert result["recipients"] == 500
    assert sum(result["groups"].values()) == 500 and set(result["groups"]) == {
        "A",
        "B",
        "remainder (gets the winner)",
    }
    assert "Alex, time for a follow-up?" in result["preview"]  # a sample patient, never a real one
    assert "Pat" not in result["preview"]
    assert campaign("knee-follow-up").status == CampaignStatus.PREVIEWED

    run(ab_spec())  # the real launch after a preview
    assert campaign("knee-follow-up").status == CampaignStatus.TESTING
    queued: dict[str, int] = {}
    for row in rows("knee-follow-up"):
        queued[row.variant] = queued.get(row.variant, 0) + 1
    assert queued == {"A": result["groups"]["A"], "B": result["groups"]["B"]}  # the preview told the truth


def test_an_ab_test_whose_test_group_is_empty_is_refused_before_anything_is_sent(
    sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    """Refused, not sent: it used to go to `testing` and schedule a winner run with nothing to compare."""
    ids = seed(4).values()
    below_everyone = min(assignment_point("knee-follow-up", i) for i in ids) / 2  # nobody in the test group
    fields = ab_spec().model_dump(mode="json", exclude={"slug"})
    spec = CampaignSpec.model_validate(fields | {"ab_test": {"test_fraction": below_everyone}})

    preview = run(spec.model_copy(update={"dry_run": True}))
    assert preview["groups"] == {"remainder (gets the winner)": 4}
    assert "Launching it would be refused:** the A/B test group is empty: none of the 4" in preview["preview"]

    file = tmp_path / "campaign.yaml"
    file.write_text(json.dumps(fields | {"ab_test": {"test_fraction": below_everyone}}))
    launched = CliRunner().invoke(cli, ["campaign", "launch", str(file)])
    assert launched.exit_code == 2 and "not launched: the A/B test group is empty" in launched.output

    with pytest.raises(CampaignError, match="nothing was\\): the A/B test group is empty"):
        run(spec)  # as a run started from the Prefect UI would
    assert sendgrid.requests == [] and rows("knee-follow-up") == []
    assert campaign("knee-follow-up").status == CampaignStatus.PREVIEWED  # not testing; no winner run


def test_a_relaunch_with_changed_content_is_refused(sendgrid: FakeSendGrid) -> None:
    seed(5)
    run(email_spec())
    with pytest.raises(CampaignError, match="new name"):
        run(email_spec(variants=[{"template_id": TEMPLATE_B}]))


def test_audience_filters_service_location_last_visit_and_tags(sendgrid: FakeSendGrid) -> None:
    ids = seed(6)
    by_n = {int(a.removeprefix("patient").split("@")[0]): i for a, i in ids.items()}
    bookings = [  # (patient, service, location, start, status)
        (0, "MRI - Knee", "Bondi Junction", datetime(2025, 3, 1, 0, tzinfo=UTC), "CONFIRMED"),
        (1, "MRI - Knee", "Chermside", datetime(2025, 3, 1, 0, tzinfo=UTC), "CONFIRMED"),
        (2, "CT Scan", "Bondi Junction", datetime(2025, 3, 1, 0, tzinfo=UTC), "CONFIRMED"),
        (3, "MRI - Knee", "Bondi Junction", datetime(2025, 3, 1, 0, tzinfo=UTC), "CANCELED"),
        (
            4,
            "mri - knee",
            "BONDI JUNCTION",
            datetime(2024, 3, 1, 0, tzinfo=UTC),
            "CONFIRMED",
        ),  # visit too early
        (
            5,
            "MRI - Knee",
            "Bondi Junction",
            datetime(2025, 6, 30, 13, 59, tzinfo=UTC),
            "CONFIRMED",
        ),  # 23:59 local
    ]
    with session_scope() as session:
        for n, service, location, start, status in bookings:
            session.add(
                Booking(
                    wix_booking_id=f"b{n}",
                    contact_id=by_n[n],
                    status=status,
                    service_name=service,
                    location=location,
                    start_at=start,
                )
            )
        for n in (0, 5):
            session.add(ContactTag(contact_id=by_n[n], tag="Newsletter"))

    def audience(**filters: Any) -> set[int]:
        spec = email_spec(audience=filters)
        pages = stream_recipients(spec, now=NOW, timezone="Australia/Brisbane", page_size=2)
        return {r.contact_id for page in pages for r in page}

    assert audience() == set(by_n.values())
    assert audience(services=["MRI - Knee"], locations=["Bondi Junction"]) == {by_n[0], by_n[4], by_n[5]}
    window = {"last_visit_from": date(2025, 1, 1), "last_visit_to": date(2025, 6, 30)}
    assert audience(services=["mri - knee"], **window) == {by_n[0], by_n[1], by_n[5]}
    assert audience(tags=["newsletter"], **window) == {by_n[0], by_n[5]}
    assert audience(last_visit_to=date(2025, 6, 29)) == {by_n[0], by_n[1], by_n[2], by_n[4]}


def test_sms_campaign_goes_in_bulk_with_the_opt_out_and_honours_provider_blocks(
    sms: FakeMobileMessage,
) -> None:
    phones = seed(10_500, channel="sms")
    seed(3, channel="sms", consent=False, offset=20_000)
    blocked = "+61410000007"
    sms.block(blocked)
    spec = CampaignSpec.model_validate(
        {
            "name": "New clinic",
            "channel": "sms",
            "variants": [{"body": "Hi {{ first_name }}, we are open in Chermside."}],
        }
    )
    result = run(spec)

    assert result["status"] == CampaignStatus.SENT
    assert sorted(len(r["json"]["messages"]) for r in sms.requests) == [500, 10_000]
    assert len({r["headers"]["idempotency-key"] for r in sms.requests}) == 2
    texts = [m for r in sms.requests for m in r["json"]["messages"]]
    assert sorted(m["to"] for m in texts) == sorted(phones)
    assert all(m["message"].endswith("\nAvatar Imaging. Reply STOP to opt out") for m in texts)
    assert texts[0]["message"].startswith("Hi Pat")
    statuses = Counter(m.status for m in rows("new-clinic"))
    assert statuses == {MessageStatus.SENT: 10_499, MessageStatus.BLOCKED: 1}

    with session_scope() as session:  # the provider's opt-out is now ours too, on every marketing channel
        hashed = get_cipher().blind_index("phone", blocked)
        assert (
            session.execute(
                select(Suppression.reason).where(
                    Suppression.address_hash == hashed, Suppression.purpose == "marketing"
                )
            ).scalar_one()
            == "provider_blocked"
        )

    seed(1, channel="sms", offset=30_000)
    sms.reset()
    assert run(spec)["status"] == CampaignStatus.SENT  # a finished campaign stays finished
    assert sms.requests == []


def test_sms_slots_busy_elsewhere_stop_the_run_as_an_outage_and_a_rerun_sends_once(
    sms: FakeMobileMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every MobileMessage slot held by other senders is waited out like a provider outage (retried by
    Prefect in a flow run), not mistaken for another run sending this campaign."""
    phones = seed(3, channel="sms")
    spec = CampaignSpec.model_validate(
        {"name": "Busy day", "channel": "sms", "variants": [{"body": "Hi {{ first_name }}, we are open."}]}
    )

    class Busy:
        @contextlib.asynccontextmanager
        async def hold(self, max_wait: float = 300.0) -> AsyncIterator[None]:
            raise SlotTimeoutError("all 5 mobilemessage slots busy for 300s")
            yield

    real_slot = campaign_batches.Poster.slot
    monkeypatch.setattr(campaign_batches.Poster, "slot", lambda self: Busy())
    with pytest.raises(CampaignError, match="run the campaign again to resume"):
        run(spec)
    assert sms.requests == []
    assert {m.status for m in rows("busy-day")} == {MessageStatus.PENDING}

    monkeypatch.setattr(campaign_batches.Poster, "slot", real_slot)
    assert run(spec)["counts"] == {"sent": 3}
    assert sorted(m["to"] for r in sms.requests for m in r["json"]["messages"]) == sorted(phones)


def test_an_sms_ab_test_is_decided_by_a_person_not_by_missing_clicks(sms: FakeMobileMessage) -> None:
    phones = seed(40, channel="sms")
    spec = CampaignSpec.model_validate(
        {
            "name": "Saturday hours",
            "channel": "sms",
            "variants": [{"body": "Now open Saturdays."}, {"body": "Scans on Saturdays now."}],
            "ab_test": {"test_fraction": 0.5, "min_sample": 1},
        }
    )
    assert run(spec)["status"] == CampaignStatus.TESTING
    test_group = [m["to"] for r in sms.requests for m in r["json"]["messages"]]

    decided = winner("saturday-hours")
    assert decided["status"] == CampaignStatus.AWAITING_CHOICE
    assert "no open or click tracking" in decided["reason"]
    assert [m["to"] for r in sms.requests for m in r["json"]["messages"]] == test_group  # nobody else yet

    assert winner("saturday-hours", "B")["status"] == CampaignStatus.SENT
    everyone = [m["to"] for r in sms.requests for m in r["json"]["messages"]]
    assert sorted(everyone) == sorted(phones)
    assert {m.variant for m in rows("saturday-hours") if m.recipient not in test_group} == {"B"}


def quiet_hours(monkeypatch: pytest.MonkeyPatch, *, now_quiet: bool) -> None:
    """SMS quiet hours (clinic time) that do, or do not, cover the present moment."""
    local = datetime.now(ZoneInfo("Australia/Brisbane"))
    start, end = (local - timedelta(hours=1), local + timedelta(hours=1))
    if not now_quiet:
        start, end = local + timedelta(hours=1), local + timedelta(hours=2)
    monkeypatch.setenv("SMS_QUIET_HOURS", f"{start:%H:%M}-{end:%H:%M}")
    get_settings.cache_clear()


def test_an_sms_campaign_waits_for_quiet_hours_to_end(
    sms: FakeMobileMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = seed(30, channel="sms")
    spec = CampaignSpec.model_validate(
        {"name": "Late offer", "channel": "sms", "variants": [{"body": "Scans 10% off this week."}]}
    )
    quiet_hours(monkeypatch, now_quiet=True)
    with pytest.raises(CampaignError, match="quiet hours"):
        run(spec)  # under Prefect the run is rescheduled for the morning; by hand, it says when to rerun
    assert sms.requests == []
    assert campaign("late-offer").status == CampaignStatus.SCHEDULED

    quiet_hours(monkeypatch, now_quiet=False)
    assert run(spec)["status"] == CampaignStatus.SENT
    assert sorted(m["to"] for r in sms.requests for m in r["json"]["messages"]) == sorted(phones)


def test_an_sms_winner_chosen_in_quiet_hours_is_kept_and_sent_after(
    sms: FakeMobileMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = seed(20, channel="sms")
    spec = CampaignSpec.model_validate(
        {
            "name": "Evening test",
            "channel": "sms",
            "variants": [{"body": "Open late Thursdays."}, {"body": "Thursday evening scans."}],
            "ab_test": {"test_fraction": 0.5},
        }
    )
    assert run(spec)["status"] == CampaignStatus.TESTING
    sent_in_test = sum(len(r["json"]["messages"]) for r in sms.requests)

    quiet_hours(monkeypatch, now_quiet=True)
    with pytest.raises(CampaignError, match="quiet hours"):
        winner("evening-test", "A")
    assert sum(len(r["json"]["messages"]) for r in sms.requests) == sent_in_test
    assert campaign("evening-test").winner_variant == "A"

    quiet_hours(monkeypatch, now_quiet=False)
    result = winner("evening-test", "A")
    assert result["status"] == CampaignStatus.SENT and result["reason"] == "chosen by a person"
    assert sorted(m["to"] for r in sms.requests for m in r["json"]["messages"]) == sorted(phones)


def test_a_late_result_never_undoes_what_sendgrids_events_recorded(sendgrid: FakeSendGrid) -> None:
    seed(3)
    spec = email_spec(name="Race")
    state = campaign_domain.open_campaign(spec, CampaignStatus.SENDING)
    campaign_domain.queue_audience(state, get_settings())
    batch, _ = campaign_outbox.claim_batch(state.id, spec.slug, "email", "A", after_id=0, limit=10)
    assert batch is not None and len(batch.messages) == 3
    first = batch.messages[0].id
    with session_scope() as session:  # the delivered event was applied before the send's answer was written
        session.execute(update(OutboundMessage).where(OutboundMessage.id == first).values(status="delivered"))

    campaign_outbox.record_batch(
        [Outcome(m.id, MessageStatus.SENT, None, "sendgrid", "x1") for m in batch.messages]
    )

    statuses = {m.id: m.status for m in rows("race")}
    assert statuses[first] == MessageStatus.DELIVERED
    assert [s for i, s in statuses.items() if i != first] == [MessageStatus.SENT, MessageStatus.SENT]
    with session_scope() as session:
        history = (
            session.execute(
                select(OutboundMessageEvent.status).where(OutboundMessageEvent.message_id == first)
            )
            .scalars()
            .all()
        )
    assert "sent" not in history


def test_an_sms_dry_run_counts_mobiles_only(sms: FakeMobileMessage) -> None:
    """A landline with SMS consent cannot get a text: the preview must not count it either."""
    seed(4, channel="sms")
    with session_scope() as session:
        landline = "+61731234567"
        session.add(
            Contact(
                first_name="Lan",
                phone=landline,
                phone_hash=get_cipher().blind_index("phone", landline),
                sms_marketing_consent_at=datetime.now(UTC) - timedelta(days=1),
            )
        )
    spec = CampaignSpec.model_validate(
        {
            "name": "Saturday hours",
            "channel": "sms",
            "variants": [{"body": "Now open Saturdays."}],
            "dry_run": True,
        }
    )
    result = run(spec)
    assert result["recipients"] == 4 and result["groups"] == {"A": 4}
    assert sms.requests == []


def test_a_campaign_leaves_the_garbage_collector_as_it_found_it(sendgrid: FakeSendGrid) -> None:
    """Sending tunes the collector for millions of short-lived objects; a worker process that runs other
    flows afterwards must get the defaults back, whether the campaign finished or failed."""
    import gc

    seed(3)
    before = gc.get_threshold()
    run(email_spec())
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    sendgrid.script((403, {"errors": [{"field": None, "message": "access forbidden"}]}, {}))  # a refusal
    seed(2, offset=100)
    assert run(email_spec(name="Autumn recall"))["counts"] == {"failed": 5}  # all five patients: refused
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
