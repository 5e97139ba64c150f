"""The operator's command line refuses what it cannot do, plainly and with a non-zero exit, and prints what
a person can read (values, not enum reprs; an email's subject, not its HTML)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import delete
from sqlmodel import select
from typer.testing import CliRunner

from bookings.intake import apply_event
from campaigns.campaign import open_campaign
from campaigns.spec import CampaignSpec
from deployments import cli_campaign
from deployments.cli import app as cli
from deployments.demo import _print_state, _signed_bodies
from deployments.stack import ensure_demo_wix_keys
from messaging.email_wording import EmailContent
from models import (
    AccessAudit,
    Campaign,
    CampaignStatus,
    Channel,
    InboxStatus,
    OutboundMessage,
    WebhookEvent,
    get_settings,
    session_scope,
)
from providers.wix_simulator import WixKeys
from tests.inbox_events import apply_wix, store_event

pytestmark = pytest.mark.db


def _inbox_event(status: InboxStatus) -> int:
    with session_scope() as session:
        row = WebhookEvent(
            source="wix", dedupe_key=f"cli-{status}", event_type="wix.bookings.v2.booking_created", body=b"{}"
        )
        row.status = status
        row.last_error = None
        session.add(row)
        session.flush()
        return row.id  # type: ignore[return-value]


def test_events_replay_queues_the_event_for_the_dispatcher_and_is_audited(db: str) -> None:
    """No Prefect needed: the row goes back to `received` (due now, one run more, so a new idempotency key)
    and the gateway's dispatcher creates the run; a waiting or unknown event is refused, changing nothing."""
    failed = _inbox_event(InboxStatus.FAILED)
    with session_scope() as session:
        audited = len(session.exec(select(AccessAudit.id)).all())
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(
            cli, ["events", "replay", str(failed), "--reason", "Wix fixed the outage"]
        )
    assert result.exit_code == 0, result.output
    assert f"event {failed} (wix, was failed) is queued for flow run 2" in result.output
    with session_scope() as session:
        row = session.get(WebhookEvent, failed)
        assert row is not None and row.status == InboxStatus.RECEIVED and row.redispatches == 1
        assert row.processed_at is None and row.next_dispatch_at is not None
        rows = session.exec(select(AccessAudit).order_by(AccessAudit.id)).all()[audited:]  # type: ignore[arg-type]
    assert [(r.action, r.role, r.subject, r.reason) for r in rows] == [
        ("inbox_event.replayed", "cli", f"inbox_event:{failed}", "Wix fixed the outage")
    ]
    again = CliRunner().invoke(cli, ["events", "replay", str(failed)])
    assert again.exit_code == 2 and "already waiting for its flow run" in again.output
    missing = CliRunner().invoke(cli, ["events", "replay", "999999"])
    assert missing.exit_code == 2 and "no inbox event 999999" in missing.output


def test_events_list_filters_by_status_and_refuses_an_unknown_one(db: str) -> None:
    failed = _inbox_event(InboxStatus.FAILED)
    _inbox_event(InboxStatus.PROCESSED)
    listed = CliRunner().invoke(cli, ["events", "list", "--status", "failed"])
    assert listed.exit_code == 0, listed.output
    assert [int(line.split()[0]) for line in listed.output.splitlines()] == [failed]

    bogus = CliRunner().invoke(cli, ["events", "list", "--status", "bogus"])
    assert bogus.exit_code == 2
    assert "bogus" in bogus.output
    assert all(status in bogus.output for status in ("received", "dispatched", "processed", "failed"))


def test_the_demo_shows_each_email_as_its_subject_not_its_html(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    booking_id = str(uuid.uuid4())
    start = datetime.now(UTC) + timedelta(days=3)
    apply_wix(WixKeys(), "wix.bookings.v2.booking_created", booking_id, 1, start)
    with session_scope() as session:
        emails = session.exec(select(OutboundMessage).where(OutboundMessage.channel == Channel.EMAIL)).all()
        subjects = [EmailContent.from_json(m.body).subject for m in emails]
    assert subjects  # the booking made at least one patient email

    _print_state(booking_id, [])
    printed = capsys.readouterr().out
    assert "<html" not in printed.lower() and '"html"' not in printed
    for subject in subjects:
        assert f"subject: {subject} (" in printed


def _ab_campaign(status: CampaignStatus) -> str:
    spec = CampaignSpec.model_validate(
        {
            "name": "Knee follow-up",
            "channel": "email",
            "variants": [{"subject": "Hello A", "body": "A"}, {"subject": "Hello B", "body": "B"}],
            "ab_test": {"test_fraction": 0.2, "wait_hours": 24},
        }
    )
    return open_campaign(spec, status).slug


def test_choose_refuses_an_unknown_campaign_or_variant_before_starting_a_run(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        session.execute(delete(Campaign))
    started: list[object] = []
    monkeypatch.setattr(cli_campaign, "_create_run", lambda *args: started.append(args) or "1")

    nope = CliRunner().invoke(cli, ["campaign", "choose", "nope", "A"])
    assert nope.exit_code == 2 and "no campaign 'nope'" in nope.output

    slug = _ab_campaign(CampaignStatus.TESTING)
    unknown = CliRunner().invoke(cli, ["campaign", "choose", slug, "C"])
    assert unknown.exit_code == 2 and "no variant 'C'; variants: A, B" in unknown.output

    single = CampaignSpec.model_validate(
        {"name": "One", "channel": "email", "variants": [{"subject": "s", "body": "b"}]}
    )
    open_campaign(single, CampaignStatus.SENT)
    evaluated = CliRunner().invoke(cli, ["campaign", "evaluate", "one"])
    assert evaluated.exit_code == 2 and "already sent" in evaluated.output
    assert started == []


def test_commands_that_start_a_deployment_fail_at_once_without_a_running_prefect(
    db: str, tmp_path: Path
) -> None:
    """No PREFECT_API_URL and no `make up` (nothing on PREFECT_PORT): a clear refusal, no temporary server."""
    slug = _ab_campaign(CampaignStatus.TESTING)
    file = tmp_path / "campaign.yaml"
    file.write_text(
        json.dumps({"name": "Winter", "channel": "email", "variants": [{"subject": "s", "body": "b"}]})
    )
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # whatever another test started
        for command in (
            ["campaign", "launch", str(file)],
            ["campaign", "choose", slug, "B"],
        ):
            started = time.monotonic()
            result = CliRunner().invoke(cli, command)
            assert result.exit_code == 1, (command, result.output)
            assert "no Prefect API answers at http://127.0.0.1:" in result.output
            assert "`make up`" in result.output and "PREFECT_API_URL" in result.output
            assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("channel", "variant", "message"),
    [
        (
            "email",
            {"subject": "Hello", "body": "Hi {{ first_name }"},
            "variants.0.body: Value error, not a valid",
        ),
        ("email", {"subject": "{{ offer }}", "body": "b"}, "'offer' is undefined"),
        ("sms", {"body": "Hi {{ first_name }} " + "x" * 720}, "MobileMessage allows 765"),
    ],
)
def test_launch_refuses_content_that_would_fail_in_the_run(
    db: str, tmp_path: Path, channel: str, variant: dict[str, str], message: str
) -> None:
    file = tmp_path / "campaign.yaml"
    file.write_text(json.dumps({"name": "Broken", "channel": channel, "variants": [variant]}))
    for extra in ([], ["--dry-run"], ["--local"]):
        result = CliRunner().invoke(cli, ["campaign", "launch", str(file), *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)


EXAMPLE = Path(__file__).resolve().parents[2] / "deployments" / "campaign.example.yaml"


def _dry_run(file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    printed: list[dict[str, object]] = []
    monkeypatch.setattr(cli_campaign, "_print_result", printed.append)
    result = CliRunner().invoke(cli, ["campaign", "launch", str(file), "--dry-run", "--local"])
    assert result.exit_code == 0, result.output
    return printed[-1]


def test_the_example_campaign_selects_the_demo_patient_and_the_preview_says_who_was_left_out(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example used to select nobody on the demo's data (a hyphen for Wix's en dash, a 2025 window, no
    consent), and the dry run did not say which filter left people out."""
    with session_scope() as session:
        session.execute(delete(Campaign))
    ensure_demo_wix_keys(get_settings().crm_data_dir)
    for _, body, _ in _signed_bodies(str(uuid.uuid4())):  # exactly what `avatar-crm demo` posts
        apply_event(store_event("wix", body, "wix.bookings.v2"))

    before = _dry_run(EXAMPLE, monkeypatch)
    assert before["recipients"] == 0
    assert before["excluded"] == {
        "no email marketing consent": 1,
        "no email address": 0,
        "suppressed for email marketing": 0,
        "no tag knee-follow-up": 0,
    }
    assert "| left out: no email marketing consent | -1 |" in str(before["preview"])

    for step in (  # the steps the example's header gives
        ["consent", "grant", "--email", "demo.patient@example.com", "--note", "demo: ticked the box"],
        ["tag", "add", "knee-follow-up", "demo.patient@example.com"],
    ):
        assert CliRunner().invoke(cli, step).exit_code == 0
    after = _dry_run(EXAMPLE, monkeypatch)
    assert after["recipients"] == 1 and after["groups"] == {"A": 1}


def test_service_names_match_with_any_dash_and_the_preview_counts_each_filter(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        session.execute(delete(Campaign))
    start = datetime.now(UTC) + timedelta(days=3)
    for n in range(3):  # Wix spells the service with an en dash
        apply_wix(
            WixKeys(),
            "wix.bookings.v2.booking_created",
            str(uuid.uuid4()),
            1,
            start,
            email=f"knee{n}@example.com",
            phone=f"+6141255500{n}",
            service="MRI \u2013 Knee",
            contact_id=str(uuid.uuid4()),
        )
    for n in range(2):
        granted = CliRunner().invoke(
            cli, ["consent", "grant", "--email", f"knee{n}@example.com", "--note", "ticked the box"]
        )
        assert granted.exit_code == 0, granted.output
    file = tmp_path / "campaign.yaml"
    audience = {"services": ["mri - knee"], "locations": ["Bondi Junction"], "last_visit_to": "2030-01-01"}
    variant = {"subject": "s", "body": "b"}
    file.write_text(
        json.dumps({"name": "Dash", "channel": "email", "audience": audience, "variants": [variant]})
    )

    preview = _dry_run(file, monkeypatch)
    assert preview["excluded"] == {
        "no email marketing consent": 1,
        "no email address": 0,
        "suppressed for email marketing": 0,
        "no booking (not cancelled) for mri - knee at Bondi Junction": 0,  # the hyphen found the en dash
        "last visit not within … to 2030-01-01": 2,  # their appointments are still to come
    }
    assert preview["recipients"] == 0, preview
