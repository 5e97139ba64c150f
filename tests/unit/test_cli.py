"""The operator's command line refuses what it cannot do, plainly and with a non-zero exit, and prints what
a person can read (values, not enum reprs; an email's subject, not its HTML)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlmodel import select
from typer.testing import CliRunner

from deployments import cli_campaign
from deployments.cli import app as cli
from deployments.demo import _print_state
from flows.campaign_send import WINNER_DEPLOYMENT, open_campaign
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
    started: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(
        cli_campaign, "_create_run", lambda name, params, *_: started.append((name, params)) or "1"
    )

    nope = CliRunner().invoke(cli, ["campaign", "choose", "nope", "A"])
    assert nope.exit_code == 2 and "no campaign 'nope'" in nope.output

    slug = _ab_campaign(CampaignStatus.TESTING)
    unknown = CliRunner().invoke(cli, ["campaign", "choose", slug, "C"])
    assert unknown.exit_code == 2 and "no variant 'C'; variants: A, B" in unknown.output
    assert started == []

    chosen = CliRunner().invoke(cli, ["campaign", "choose", slug, "B"])
    assert chosen.exit_code == 0, chosen.output
    assert started == [(WINNER_DEPLOYMENT, {"campaign": slug, "winner": "B"})]
