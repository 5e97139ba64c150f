"""The operator's command line refuses what it cannot do, plainly and with a non-zero exit, and prints what
a person can read (values, not enum reprs; an email's subject, not its HTML)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from deployments.cli import app as cli
from deployments.demo import _print_state
from flows.email_messages import EmailContent
from models import Channel, InboxStatus, OutboundMessage, WebhookEvent, session_scope
from tests.fakes.wix import WixKeys
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
