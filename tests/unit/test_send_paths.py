"""Every send path asks one function first: `messaging.consent.may_send(channel, purpose)`.

Two halves, so that a new send path cannot slip past unnoticed:
- the code: every call that hands a message to a provider (`….send(…)` anywhere in the application) is one of
  `PROVIDER_CALLS`, each takes only messages of a type that `CLAIMS` alone make; a new call or a new maker
  fails the test until it is listed here, and driven below;
- the behaviour: each send path is driven on the real database with the fake providers (booking
  confirmations and notices by SMS and email, reminders, answers to a patient's text, staff notices, SMS and
  email campaigns, A/B winner sends, the replay of an interrupted SMS batch), with `may_send`'s answers
  recorded: every message that was sent or refused had been asked about, for its channel and purpose, and
  nothing reached a provider for an address nobody asked about.
"""

from __future__ import annotations

import ast
import asyncio
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import ColumnElement, delete, text
from sqlmodel import Session, select

from campaigns.spec import CampaignSpec
from flows.campaign_send import campaign_send, campaign_winner
from flows.tasks.send import SENDERS, send_due, send_message
from messaging import consent
from messaging.outbox import ClaimedMessage, Outcome
from messaging.replies import apply_reply
from messaging.sms_classifier import classify
from models import Campaign, Channel, ConsentOrigin, MessageStatus, OutboundMessage, Purpose, session_scope
from providers.mobilemessage import MobileMessageClient
from providers.wix_simulator import WixKeys
from tests.campaign_data import seed
from tests.fakes.mobilemessage import FakeMobileMessage, inbound_payload
from tests.fakes.sendgrid import FakeSendGrid
from tests.inbox_events import apply_wix, store_event
from tests.sms_env import mobilemessage
from tests.unit.test_campaign_send import Killed, email_spec
from tests.unit.test_campaign_send import sendgrid as sendgrid

ROOT = Path(__file__).resolve().parents[2]
APPLICATION = (
    "inbox",
    "messaging",
    "bookings",
    "campaigns",
    "operations",
    "flows",
    "deployments",
    "webhook_gateway",
)  # `providers/` are the clients these call

# Every place the application hands messages to a provider, and the type of message it takes.
PROVIDER_CALLS = {
    ("flows/tasks/sms.py", "deliver_sms"): "ClaimedMessage",
    ("flows/tasks/email.py", "_send_blocking"): "ClaimedMessage",
    ("flows/tasks/campaign_batches.py", "_post_email"): "CampaignMessage",
    ("flows/tasks/campaign_batches.py", "_post_sms"): "CampaignMessage",
}
# The only places those messages are made: each after asking `may_send` (driven below).
CLAIMS = {
    "ClaimedMessage": {("messaging/outbox.py", "_claim_checked")},
    "CampaignMessage": {
        ("campaigns/bulk_outbox.py", "claim_batch"),
        ("campaigns/bulk_outbox.py", "abandoned"),
    },
}

pytestmark = pytest.mark.db


def _calls(name_matches: Any, root: Path = ROOT) -> set[tuple[str, str]]:
    """(file, innermost named function) of every call in the application whose callee matches."""
    found: set[tuple[str, str]] = set()

    def visit(node: ast.AST, path: str, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Call) and name_matches(child.func):
                found.add((path, function))
            visit(child, path, inner)

    for package in APPLICATION:
        for file in sorted((root / package).rglob("*.py")):
            path = file.relative_to(root).as_posix()
            visit(ast.parse(file.read_text(), path), path, "<module>")
    return found


def _function(path: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    tree = ast.parse((ROOT / path).read_text())
    return next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
    )


def test_every_call_that_reaches_a_provider_is_listed_and_takes_only_claimed_messages() -> None:
    sends = _calls(lambda f: isinstance(f, ast.Attribute) and f.attr == "send")
    assert sends == set(PROVIDER_CALLS), "a new send path: list it here and drive it below"
    for (path, name), message_type in PROVIDER_CALLS.items():
        annotations = [ast.unparse(a.annotation) for a in _function(path, name).args.args if a.annotation]
        assert any(message_type in a for a in annotations), (path, name, annotations)
    for message_type, makers in CLAIMS.items():
        made = _calls(lambda f, t=message_type: isinstance(f, ast.Name) and f.id == t)
        assert made == makers, f"{message_type} made outside the claims that ask may_send"


def test_the_listing_finds_a_new_send_that_bypasses_the_claims(tmp_path: Path) -> None:
    """The scan above is what would catch a bypass: it does see a send added anywhere in the application."""
    (tmp_path / "flows" / "tasks").mkdir(parents=True)
    (tmp_path / "flows" / "tasks" / "sms.py").write_text((ROOT / "flows" / "tasks" / "sms.py").read_text())
    sneaky = "async def text_them(client, sms):\n    await client.send([sms], idempotency_key='x')\n"
    (tmp_path / "flows" / "offers.py").write_text(sneaky)
    sends = _calls(lambda f: isinstance(f, ast.Attribute) and f.attr == "send", tmp_path)
    assert sends == {("flows/tasks/sms.py", "deliver_sms"), ("flows/offers.py", "text_them")}


# --- driving each path ----------------------------------------------------------------------------------

Asked = list[tuple[str, str, frozenset[str] | None]]  # (channel, purpose, addresses, or None for a query)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> Asked:
    """Every question put to `may_send`'s answer, whichever way it was asked."""
    calls: Asked = []
    real_refusals, real_allows = consent.SendCheck.refusals, consent.SendCheck.allows

    def refusals(
        self: consent.SendCheck, session: Session, addresses: Iterable[str], kind: str | None = None
    ) -> dict[str, str]:
        addresses = list(addresses)
        calls.append((self.channel, self.purpose, frozenset(addresses)))
        return real_refusals(self, session, addresses, kind)

    def allows(self: consent.SendCheck, hashed: ColumnElement[str]) -> ColumnElement[bool]:
        calls.append((self.channel, self.purpose, None))
        return real_allows(self, hashed)

    monkeypatch.setattr(consent.SendCheck, "refusals", refusals)
    monkeypatch.setattr(consent.SendCheck, "allows", allows)
    return calls


def _asked_about(asked: Asked, channel: str, purpose: str) -> set[str]:
    return {a for c, p, addresses in asked if (c, p) == (channel, purpose) and addresses for a in addresses}


@pytest.fixture
def sms(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMobileMessage]:
    with mobilemessage(
        monkeypatch, SMS_QUIET_HOURS="", REMINDER_OFFSETS="24h", STAFF_NOTIFICATION_EMAIL="desk@example.com"
    ) as fake:
        yield fake
    with session_scope() as session:
        session.execute(text("UPDATE outboundmessage SET campaign_id = NULL"))
        session.execute(delete(Campaign))


def _stop(phone: str) -> None:
    with session_scope() as session:
        why = consent.ConsentSource("sms_reply", "test", "STOP", origin=ConsentOrigin.PATIENT_SMS)
        consent.withdraw(session, phone=phone, contact=None, scopes=consent.OPT_OUT_SCOPES, why=why)


def _texted(fake: FakeMobileMessage) -> list[str]:
    return [m["to"] for r in fake.requests for m in r["json"]["messages"]]


def test_booking_notices_reminders_answers_and_staff_notices_each_ask_at_claim(
    sms: FakeMobileMessage, asked: Asked, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def to_the_prefect_ui(claimed: ClaimedMessage) -> Outcome:  # without a Prefect server to write to
        return Outcome(claimed.id, MessageStatus.SENT, None, "prefect-artifact")

    monkeypatch.setitem(SENDERS, Channel.OPS.value, to_the_prefect_ui)
    start = datetime.now(ZoneInfo("Australia/Brisbane")).replace(hour=10, minute=0) + timedelta(days=3)
    apply_wix(WixKeys(), "wix.bookings.v2.booking_created", str(uuid.uuid4()), 1, start)  # SMS and email
    assert (Channel.EMAIL, Purpose.TRANSACTIONAL, frozenset({"alex@example.com"})) in asked  # before queueing
    body = json.dumps(inbound_payload("N", sender="61412345678")).encode()
    event_id = store_event("mobilemessage", body, "sms.inbound")
    apply_reply(event_id, classify("N"))  # an answer to the patient, a staff notice (Prefect and email)
    with session_scope() as session:
        answer = session.exec(
            select(OutboundMessage.id).where(OutboundMessage.idempotency_key == f"sms-reply:{event_id}")
        ).one()
    asyncio.run(send_message.fn(answer))  # as sms-triage sends it
    asyncio.run(send_due.fn(datetime.now(UTC), 100))  # the rest, as the reminder sweep does
    _stop("+61412345678")
    asyncio.run(send_due.fn((start - timedelta(hours=23)).astimezone(UTC), 100))  # the reminder: suppressed

    with session_scope() as session:
        handled = session.exec(
            select(OutboundMessage).where(OutboundMessage.status != MessageStatus.PENDING)
        ).all()
    kinds = {(m.channel, m.kind, m.status) for m in handled}
    assert ("sms", "reminder", "suppressed") in kinds and ("ops", "staff_notification", "sent") in kinds
    assert {
        ("sms", "confirmation"),
        ("email", "confirmation"),
        ("sms", "reply"),
        ("email", "staff_notification"),
    } <= {(c, k) for c, k, _ in kinds}
    for message in handled:
        assert message.recipient in _asked_about(asked, message.channel, message.purpose), message.kind
    assert set(_texted(sms)) <= _asked_about(asked, Channel.SMS, Purpose.TRANSACTIONAL)


def test_sms_campaign_ab_test_winner_and_an_interrupted_batch_each_ask(
    sms: FakeMobileMessage, asked: Asked, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = sorted(seed(40, channel="sms"))
    spec = CampaignSpec.model_validate(
        {
            "name": "Saturday hours",
            "channel": "sms",
            "variants": [{"body": "Now open Saturdays."}, {"body": "Scans on Saturdays now."}],
            "ab_test": {"test_fraction": 0.5, "min_sample": 1},
        }
    )
    real_send = MobileMessageClient.send

    async def dies_before_posting(*args: Any, **kwargs: Any) -> Any:
        raise Killed  # the run stops with the batch claimed (`sending`) and not posted

    monkeypatch.setattr(MobileMessageClient, "send", dies_before_posting)
    with pytest.raises(Killed):
        asyncio.run(campaign_send.fn(spec))
    assert (Channel.SMS, Purpose.MARKETING, None) in asked  # the audience
    with session_scope() as session:
        claimed = session.exec(
            select(OutboundMessage.recipient).where(OutboundMessage.status == MessageStatus.SENDING)
        ).all()
    stopped = sorted(claimed)[0]
    _stop(stopped)  # between the claim and the replay
    asked.clear()
    monkeypatch.setattr(MobileMessageClient, "send", real_send)
    asyncio.run(campaign_send.fn(spec))
    assert stopped in _asked_about(asked, Channel.SMS, Purpose.MARKETING)
    test_group = _texted(sms)
    assert stopped not in test_group

    remainder = sorted(set(phones) - set(test_group) - {stopped})[0]  # not in the test group
    _stop(remainder)  # before the winner goes to the rest
    asked.clear()
    asyncio.run(campaign_winner.fn("saturday-hours", "B"))
    winners = _texted(sms)[len(test_group) :]
    assert winners and remainder not in winners
    assert (Channel.SMS, Purpose.MARKETING, None) in asked  # the rest of the audience, asked again
    assert set(_texted(sms)) <= _asked_about(asked, Channel.SMS, Purpose.MARKETING) | set(test_group)
    assert sorted(_texted(sms)) == sorted(set(phones) - {stopped, remainder})


def test_an_email_campaign_asks_for_its_audience_and_again_at_claim(
    sendgrid: FakeSendGrid,
    asked: Asked,
) -> None:
    addresses = seed(5)
    asyncio.run(campaign_send.fn(email_spec()))
    assert (Channel.EMAIL, Purpose.MARKETING, None) in asked
    assert set(sendgrid.recipients()) == set(addresses)
    assert set(addresses) <= _asked_about(asked, Channel.EMAIL, Purpose.MARKETING)
