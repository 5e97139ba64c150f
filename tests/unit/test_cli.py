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

from deployments import cli_campaign
from deployments.cli import app as cli
from deployments.demo import _print_state
from flows.campaign_send import open_campaign
from flows.campaign_spec import CampaignSpec
from flows.email_messages import EmailContent
from models import (
    Campaign,
    CampaignStatus,
    Channel,
    InboxStatus,
    OutboundMessage,
    WebhookEvent,
    session_scope,
)
from providers.wix_simulator import WixKeys
from tests.inbox_events import apply_wix

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
    event_id = _inbox_event(InboxStatus.FAILED)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # whatever another test started
        for command in (
            ["campaign", "launch", str(file)],
            ["campaign", "choose", slug, "B"],
            ["events", "replay", str(event_id)],
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
