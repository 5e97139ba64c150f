"""`email-events` applied to stored SendGrid events: what each event does to the campaign message it is about
(status, opened/clicked), which addresses it suppresses, what the ledgers hold, that nothing moves backwards,
and that a replay changes nothing twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from campaigns.bulk_outbox import counts_by_variant
from messaging.consent import may_send
from messaging.email_events import apply_events, redact, summarise
from models import (
    Campaign,
    Channel,
    ConsentEvent,
    Contact,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    Purpose,
    Suppression,
    WebhookEvent,
    get_engine,
    session_scope,
)
from models.crypto import get_cipher
from providers.tracking_tokens import TrackingClaim, TrackingKind
from tests.fakes.sendgrid_events import LIBRARY_EVENT, event
from tests.lock_races import start_until_blocked
from webhook_gateway import tracking

pytestmark = pytest.mark.db

EMAIL = "alex@example.com"
T0 = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)


@pytest.fixture
def campaign(db: str) -> Iterator[int]:
    with session_scope() as session:
        row = Campaign(slug=f"spring-mri-{uuid.uuid4().hex[:8]}", name="Spring MRI", channel=Channel.EMAIL)
        session.add(row)
        session.flush()
        campaign_id = row.id
    yield campaign_id  # type: ignore[misc]
    with session_scope() as session:  # `db` empties the CRM tables but not campaigns
        session.execute(text("DELETE FROM outboundmessageevent"))
        session.execute(text("DELETE FROM outboundmessage"))
        session.execute(text("DELETE FROM campaign WHERE id = :id"), {"id": campaign_id})


def _message(
    campaign_id: int,
    email: str = EMAIL,
    *,
    variant: str = "A",
    status: MessageStatus = MessageStatus.SENT,
    provider_message_id: str | None = None,
) -> int:
    """A campaign email as the campaign flow leaves it after SendGrid accepted it."""
    with session_scope() as session:
        contact = Contact(first_name="Alex", email=email, email_hash=get_cipher().blind_index("email", email))
        session.add(contact)
        session.flush()
        message = OutboundMessage(
            idempotency_key=f"campaign:{campaign_id}:{uuid.uuid4().hex}",
            channel=Channel.EMAIL,
            purpose=Purpose.MARKETING,
            kind=MessageKind.CAMPAIGN,
            contact_id=contact.id,
            recipient=email,
            body="Spring MRI special",
            status=status,
            provider="sendgrid",
            provider_message_id=provider_message_id,
            campaign_id=campaign_id,
            variant=variant,
            sent_at=T0,
        )
        session.add(message)
        session.flush()
        return message.id  # type: ignore[return-value]


def _at(minutes: int) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp())


def _store(*events: dict[str, Any]) -> list[int]:
    """Events as the gateway stores them: one inbox row each, keyed on `sg_event_id`."""
    with session_scope() as session:
        rows = [
            WebhookEvent(
                source="sendgrid",
                dedupe_key=e["sg_event_id"],
                event_type=e["event"],
                body=json.dumps(e).encode(),
            )
            for e in events
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]  # type: ignore[misc]


def _apply(*events: dict[str, Any]) -> list[Any]:
    return apply_events(_store(*events))


def _get(message_id: int) -> OutboundMessage:
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        return message


def _history(message_id: int) -> list[tuple[str, str]]:
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessageEvent)
            .where(OutboundMessageEvent.message_id == message_id)
            .order_by(OutboundMessageEvent.id)  # type: ignore[arg-type]
        ).all()
        return [(row.status, row.detail or "") for row in rows]


def _timeline(message_id: int) -> list[tuple[str, str | None, datetime]]:
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessageEvent)
            .where(OutboundMessageEvent.message_id == message_id)
            .order_by(OutboundMessageEvent.id)  # type: ignore[arg-type]
        ).all()
        return [(row.status, row.detail, row.at) for row in rows]


def _suppressions() -> set[tuple[str, str, str]]:
    with session_scope() as session:
        return {(s.channel, s.purpose, s.reason) for s in session.exec(select(Suppression)).all()}


def _suppressed(email: str, purpose: Purpose) -> str | None:
    with session_scope() as session:
        return may_send(Channel.EMAIL, purpose).refusal(session, email, MessageKind.CAMPAIGN)


def _ledger() -> list[tuple[str, str, str, int | None]]:
    with session_scope() as session:
        rows = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()  # type: ignore[arg-type]
        return [(row.purpose, row.action, row.source, row.webhook_event_id) for row in rows]


def _inbox_statuses(ids: list[int]) -> list[str]:
    with session_scope() as session:
        return [session.get(WebhookEvent, i).status for i in ids]  # type: ignore[union-attr]


# --- delivery status ---------------------------------------------------------------------------------


def test_delivered_marks_the_message_delivered_at_sendgrids_time(campaign: int) -> None:
    message_id = _message(campaign)
    ids = _store(event("delivered", outbox_id=message_id, timestamp=_at(1), response="250 OK"))
    [result] = apply_events(ids)

    message = _get(message_id)
    assert message.status == MessageStatus.DELIVERED and message.delivered_at == T0 + timedelta(minutes=1)
    assert result.changes == ("status delivered",) and result.message_id == message_id
    # The history says when it was delivered too, not when we heard of it.
    assert _timeline(message_id)[-1] == (
        MessageStatus.DELIVERED,
        "sendgrid delivered",
        T0 + timedelta(minutes=1),
    )
    assert _inbox_statuses(ids) == [InboxStatus.PROCESSED]


def test_a_message_an_outage_left_pending_is_not_sent_again_once_sendgrid_reports_it(campaign: int) -> None:
    message_id = _message(campaign, status=MessageStatus.PENDING)
    _apply(event("delivered", outbox_id=message_id, timestamp=_at(1)))
    assert _get(message_id).status == MessageStatus.DELIVERED


def test_a_hard_bounce_bounces_the_message_and_suppresses_all_email_to_the_address(campaign: int) -> None:
    message_id = _message(campaign)
    reason = f"550 5.1.1 <{EMAIL}>: Recipient address rejected: User unknown"
    ids = _store(event("bounce", outbox_id=message_id, type="bounce", reason=reason, status="5.1.1"))
    [result] = apply_events(ids)

    message = _get(message_id)
    assert message.status == MessageStatus.BOUNCED
    assert (
        message.last_error
        == "sendgrid bounce (bounce): 550 5.1.1 <<address>>: Recipient address rejected: User unknown"
    )
    assert EMAIL not in "".join(detail for _, detail in _history(message_id))
    assert result.suppressed
    assert _suppressions() == {
        (Channel.EMAIL, Purpose.TRANSACTIONAL, "sendgrid_bounce"),
        (Channel.EMAIL, Purpose.MARKETING, "sendgrid_bounce"),
    }
    assert _suppressed(EMAIL, Purpose.TRANSACTIONAL) == "sendgrid_bounce"
    assert _ledger() == [
        (Purpose.TRANSACTIONAL, "withdrawn", "sendgrid_bounce", ids[0]),
        (Purpose.MARKETING, "withdrawn", "sendgrid_bounce", ids[0]),
    ]


def test_a_blocked_bounce_bounces_the_message_but_suppresses_nothing(campaign: int) -> None:
    message_id = _message(campaign)
    _apply(event("bounce", outbox_id=message_id, type="blocked", reason="421 rate limited, try later"))
    assert _get(message_id).status == MessageStatus.BOUNCED
    assert _suppressions() == set()


def test_the_librarys_dropped_event_matches_by_sendgrid_message_id_and_fails_the_message(
    campaign: int,
) -> None:
    # No custom args: matched through sg_message_id, whose first part is the send's X-Message-Id.
    message_id = _message(campaign, "hello@world.com", provider_message_id="LRzXl_NHStOGhQ4kofSm_A")
    _message(campaign, "someone@else.example", provider_message_id="LRzXl_NHStOGhQ4kofSm_A")  # same request
    [result] = _apply(LIBRARY_EVENT)

    message = _get(message_id)
    assert result.message_id == message_id
    assert (
        message.status == MessageStatus.FAILED and message.last_error == "sendgrid dropped: Bounced Address"
    )
    # SendGrid drops mail to an address on its bounce list: mirror it for every purpose.
    assert _suppressed("hello@world.com", Purpose.TRANSACTIONAL) == "sendgrid_dropped"
    assert _suppressed("someone@else.example", Purpose.MARKETING) is None


@pytest.mark.parametrize(
    ("first", "then", "final"),
    [
        ("bounce", "delivered", MessageStatus.BOUNCED),  # a late "delivered" never un-bounces
        ("dropped", "delivered", MessageStatus.FAILED),
        ("delivered", "dropped", MessageStatus.DELIVERED),
        ("delivered", "bounce", MessageStatus.BOUNCED),  # an asynchronous bounce after acceptance
        ("bounce", "dropped", MessageStatus.BOUNCED),
    ],
)
def test_status_never_moves_backwards(campaign: int, first: str, then: str, final: MessageStatus) -> None:
    message_id = _message(campaign)
    _apply(event(first, outbox_id=message_id, timestamp=_at(1), type="blocked"))
    after_first = _get(message_id).status
    moves = len(_history(message_id))
    _apply(event(then, outbox_id=message_id, timestamp=_at(2), type="blocked"))
    assert _get(message_id).status == final
    assert len(_history(message_id)) == moves + (final != after_first)  # only a forward move is recorded


def test_a_batch_is_applied_in_the_order_things_happened(campaign: int) -> None:
    message_id = _message(campaign)
    # Posted bounce-first; the delivered happened first. In time order: delivered, then a late bounce.
    _apply(
        event("bounce", outbox_id=message_id, timestamp=_at(5), type="bounce", reason="mailbox full"),
        event("delivered", outbox_id=message_id, timestamp=_at(1)),
    )
    message = _get(message_id)
    assert message.status == MessageStatus.BOUNCED and message.delivered_at == T0 + timedelta(minutes=1)
    assert [status for status, _ in _history(message_id)] == [MessageStatus.DELIVERED, MessageStatus.BOUNCED]


# --- engagement --------------------------------------------------------------------------------------


def test_opens_record_the_first_open_and_never_change_the_status(campaign: int) -> None:
    message_id = _message(campaign, status=MessageStatus.DELIVERED)
    _apply(event("open", outbox_id=message_id, timestamp=_at(10)))
    _apply(event("open", outbox_id=message_id, timestamp=_at(20)))  # a later re-open: nothing new
    message = _get(message_id)
    assert message.opened_at == T0 + timedelta(minutes=10) and message.clicked_at is None
    assert message.status == MessageStatus.DELIVERED
    assert _timeline(message_id) == [("opened", "tracking pixel", T0 + timedelta(minutes=10))]
    [late] = _apply(event("open", outbox_id=message_id, timestamp=_at(5)))  # an earlier one that arrived late
    assert _get(message_id).opened_at == T0 + timedelta(minutes=5) and late.changes == ("opened earlier",)
    # Still the one row for the one fact, now saying when it first happened.
    assert _timeline(message_id) == [("opened", "tracking pixel", T0 + timedelta(minutes=5))]


def test_a_click_implies_an_open(campaign: int) -> None:
    message_id = _message(campaign)
    [result] = _apply(
        event("click", outbox_id=message_id, timestamp=_at(3), url="https://clinic.example/book")
    )
    message = _get(message_id)
    assert message.clicked_at == message.opened_at == T0 + timedelta(minutes=3)
    assert result.changes == ("opened", "clicked")
    assert _history(message_id) == [
        ("opened", "implied by a click"),
        ("clicked", "https://clinic.example/book"),
    ]
    assert message.status == MessageStatus.SENT  # engagement is history, not a status


def test_each_link_clicked_is_one_event_and_repeats_change_nothing(campaign: int) -> None:
    message_id = _message(campaign)
    book, map_ = "https://clinic.example/book", "https://clinic.example/map"
    results = _apply(
        event("click", outbox_id=message_id, timestamp=_at(3), url=book),
        event("open", outbox_id=message_id, timestamp=_at(4)),  # the pixel loads after the click
        event("click", outbox_id=message_id, timestamp=_at(5), url=book),  # the same link again
        event("click", outbox_id=message_id, timestamp=_at(7), url=map_),
    )
    assert [r.changes for r in results] == [("opened", "clicked"), (), (), ("clicked",)]
    assert _timeline(message_id) == [
        ("opened", "implied by a click", T0 + timedelta(minutes=3)),
        ("clicked", book, T0 + timedelta(minutes=3)),
        ("clicked", map_, T0 + timedelta(minutes=7)),
    ]
    message = _get(message_id)
    assert message.opened_at == message.clicked_at == T0 + timedelta(minutes=3)
    # SendGrid reporting them all again (new event ids, as its duplicates have) adds nothing.
    again = _apply(
        event("click", outbox_id=message_id, timestamp=_at(3), url=book),
        event("click", outbox_id=message_id, timestamp=_at(7), url=map_),
    )
    assert [r.changes for r in again] == [(), ()] and len(_history(message_id)) == 3


def test_a_late_report_of_an_earlier_click_moves_the_open_back_and_says_how_it_is_known(
    campaign: int,
) -> None:
    message_id = _message(campaign)
    book = "https://clinic.example/book"
    _apply(event("open", outbox_id=message_id, timestamp=_at(10)))
    [click] = _apply(event("click", outbox_id=message_id, timestamp=_at(6), url=book))
    assert click.changes == ("opened earlier", "clicked")
    assert _timeline(message_id) == [
        ("opened", "implied by a click", T0 + timedelta(minutes=6)),
        ("clicked", book, T0 + timedelta(minutes=6)),
    ]
    [again] = _apply(event("click", outbox_id=message_id, timestamp=_at(2), url=book))
    assert again.changes == ("opened earlier", "clicked earlier")
    assert _timeline(message_id) == [
        ("opened", "implied by a click", T0 + timedelta(minutes=2)),
        ("clicked", book, T0 + timedelta(minutes=2)),
    ]
    message = _get(message_id)
    assert message.opened_at == message.clicked_at == T0 + timedelta(minutes=2)


def test_a_machine_open_is_not_an_open(campaign: int) -> None:
    message_id = _message(campaign)
    [result] = _apply(event("open", outbox_id=message_id, sg_machine_open=True))
    assert _get(message_id).opened_at is None and result.changes == ()


def test_the_same_engagement_is_the_same_history_whether_our_pixel_or_sendgrid_saw_it(
    campaign: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gmail email is tracked by our pixel and links, campaign email by SendGrid: ops reading the history and
    the A/B statistics must not be able to tell which."""
    by_pixel = _message(campaign, "a@example.com", variant="A")
    by_sendgrid = _message(campaign, "b@example.com", variant="B")
    book, map_ = "https://clinic.example/book", "https://clinic.example/map"
    script: list[tuple[int, TrackingKind, str | None]] = [
        (2, "click", book),  # images blocked: the click comes first
        (4, "open", None),
        (5, "click", book),
        (6, "open", None),  # another device
        (9, "click", map_),
    ]
    clock = iter(T0 + timedelta(minutes=minute) for minute, _, _ in script)
    monkeypatch.setattr(tracking, "utcnow", lambda: next(clock))  # the pixel records when it is requested
    recorded = [tracking.record(get_engine(), TrackingClaim(kind, by_pixel, url)) for _, kind, url in script]

    def reported(minute: int, kind: str, url: str | None) -> dict[str, Any]:
        link = {"url": url} if url else {}  # SendGrid names the link on clicks only
        return event(kind, "b@example.com", outbox_id=by_sendgrid, timestamp=_at(minute), **link)

    results = _apply(*[reported(*step) for step in script])

    assert recorded == ["opened+clicked", *["already recorded"] * 3, "clicked"]
    assert [r.changes for r in results] == [("opened", "clicked"), (), (), (), ("clicked",)]
    expected = [
        ("opened", "implied by a click", T0 + timedelta(minutes=2)),
        ("clicked", book, T0 + timedelta(minutes=2)),
        ("clicked", map_, T0 + timedelta(minutes=9)),
    ]
    assert _timeline(by_pixel) == _timeline(by_sendgrid) == expected
    for message in (_get(by_pixel), _get(by_sendgrid)):
        assert message.opened_at == message.clicked_at == T0 + timedelta(minutes=2)
        assert message.status == MessageStatus.SENT
    counts = counts_by_variant(campaign)
    assert counts["A"] == counts["B"] and (counts["A"]["opened"], counts["A"]["clicked"]) == (1, 1)


@pytest.mark.parametrize("kind", ["processed", "deferred", "account_status_change"])
def test_processed_deferred_and_unknown_events_are_counted_and_change_nothing(
    campaign: int, kind: str
) -> None:
    message_id = _message(campaign)
    ids = _store(event(kind, outbox_id=message_id, response="400 try again later", attempt="2"))
    results = apply_events(ids)
    assert _get(message_id).status == MessageStatus.SENT
    assert _history(message_id) == [] and _suppressions() == set()
    assert summarise(results) == [
        {
            "event": kind,
            "events": 1,
            "matched": 1,
            "changed": 0,
            "suppressions_added": 0,
            "suppressions_lifted": 0,
            "failed": 0,
        }
    ]
    assert _inbox_statuses(ids) == [InboxStatus.PROCESSED]


# --- opt-outs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["spamreport", "unsubscribe", "group_unsubscribe"])
def test_opt_outs_suppress_marketing_email_only(campaign: int, kind: str) -> None:
    message_id = _message(campaign, status=MessageStatus.DELIVERED)
    ids = _store(event(kind, outbox_id=message_id, asm_group_id=12345))
    [result] = apply_events(ids)

    assert result.suppressed
    assert _suppressions() == {(Channel.EMAIL, Purpose.MARKETING, f"sendgrid_{kind}")}
    assert _suppressed(EMAIL, Purpose.MARKETING) == f"sendgrid_{kind}"
    assert _suppressed(EMAIL, Purpose.TRANSACTIONAL) is None  # appointment emails still go
    assert _ledger() == [(Purpose.MARKETING, "withdrawn", f"sendgrid_{kind}", ids[0])]
    assert _get(message_id).status == MessageStatus.DELIVERED
    contact_id = _get(message_id).contact_id
    with session_scope() as session:
        [entry] = session.exec(select(ConsentEvent)).all()
        assert entry.contact_id == contact_id and entry.actor == "sendgrid" and entry.wording


def test_an_opt_out_for_mail_we_cannot_match_is_still_honoured(campaign: int) -> None:
    # No outbox_id and an unknown message id: the status of nothing changes, but an opt-out is an opt-out.
    [result] = _apply(event("unsubscribe", email=" Sam@Example.com ", sg_message_id="unknown.filter0001"))
    assert result.message_id is None and result.suppressed
    assert _suppressed("sam@example.com", Purpose.MARKETING) == "sendgrid_unsubscribe"


def test_an_unmatched_bounce_or_delivery_changes_nothing(campaign: int) -> None:
    message_id = _message(campaign)
    results = _apply(
        event("bounce", email="other@example.com", type="bounce"),
        event("delivered", email="other@example.com", sg_message_id="nope.filter"),
    )
    assert [r.message_id for r in results] == [None, None]
    assert _suppressions() == set() and _get(message_id).status == MessageStatus.SENT


def test_an_outbox_id_for_another_address_is_not_that_message(campaign: int) -> None:
    message_id = _message(campaign)
    [result] = _apply(event("bounce", outbox_id=message_id, email="someone@else.example", type="bounce"))
    assert result.message_id is None
    assert _get(message_id).status == MessageStatus.SENT and _suppressions() == set()


def test_a_resubscribe_lifts_the_marketing_suppression(campaign: int) -> None:
    message_id = _message(campaign)
    _apply(event("group_unsubscribe", outbox_id=message_id, asm_group_id=12345))
    assert _suppressed(EMAIL, Purpose.MARKETING) == "sendgrid_group_unsubscribe"
    ids = _store(event("group_resubscribe", outbox_id=message_id, asm_group_id=12345))
    [result] = apply_events(ids)
    assert result.resubscribed
    assert _suppressed(EMAIL, Purpose.MARKETING) is None
    assert _ledger()[-1] == (Purpose.MARKETING, "granted", "sendgrid_group_resubscribe", ids[0])


def test_an_unmatched_resubscribe_lifts_nothing(campaign: int) -> None:
    _apply(event("unsubscribe", email="sam@example.com"))
    [result] = _apply(event("group_resubscribe", email="sam@example.com"))
    assert not result.resubscribed and _suppressed("sam@example.com", Purpose.MARKETING)


# --- idempotency and failures ------------------------------------------------------------------------


def test_replaying_a_batch_changes_nothing_new(campaign: int) -> None:
    message_id = _message(campaign)
    ids = _store(
        event("delivered", outbox_id=message_id, timestamp=_at(1)),
        event("click", outbox_id=message_id, timestamp=_at(2)),
        event("unsubscribe", outbox_id=message_id, timestamp=_at(3)),
    )
    first = apply_events(ids)
    snapshot = (_history(message_id), _ledger(), _suppressions(), _get(message_id).model_dump())

    assert apply_events(ids) == []  # a retried run or a replayed batch: already processed
    assert (_history(message_id), _ledger(), _suppressions(), _get(message_id).model_dump()) == snapshot
    assert [r.event for r in first] == ["delivered", "click", "unsubscribe"]
    # The same things reported again under new event ids (SendGrid's duplicates) change no message either.
    again = _apply(
        event("delivered", outbox_id=message_id, timestamp=_at(1)),
        event("click", outbox_id=message_id, timestamp=_at(2)),
    )
    assert [r.changes for r in again] == [(), ()]
    assert _history(message_id) == snapshot[0]


def test_an_event_that_cannot_be_read_fails_only_its_own_row(campaign: int) -> None:
    message_id = _message(campaign)
    good = _store(event("delivered", outbox_id=message_id))
    with session_scope() as session:
        bad = WebhookEvent(source="sendgrid", dedupe_key="broken", event_type="open", body=b"{not json")
        session.add(bad)
        session.flush()
        bad_id = bad.id
    results = apply_events([*good, bad_id])  # type: ignore[list-item]
    assert _inbox_statuses([*good, bad_id]) == [InboxStatus.PROCESSED, InboxStatus.FAILED]  # type: ignore[list-item]
    assert _get(message_id).status == MessageStatus.DELIVERED
    assert sum(r.failed is not None for r in results) == 1


def test_events_of_other_sources_are_not_touched(campaign: int) -> None:
    with session_scope() as session:
        other = WebhookEvent(source="mobilemessage", dedupe_key="x", event_type="sms.inbound", body=b"{}")
        session.add(other)
        session.flush()
        other_id = other.id
    assert apply_events([other_id]) == []  # type: ignore[list-item]
    assert _inbox_statuses([other_id]) == [InboxStatus.RECEIVED]  # type: ignore[list-item]


def test_the_summary_counts_per_event_type(campaign: int) -> None:
    a, b = _message(campaign, "a@example.com", variant="A"), _message(campaign, "b@example.com", variant="B")
    results = _apply(
        event("delivered", email="a@example.com", outbox_id=a),
        event("delivered", email="b@example.com", outbox_id=b),
        event("click", email="b@example.com", outbox_id=b),
        event("spamreport", email="a@example.com", outbox_id=a),
        event("open", email="nobody@example.com"),
    )
    table = {row["event"]: row for row in summarise(results)}
    assert table["delivered"]["events"] == 2 and table["delivered"]["changed"] == 2
    assert table["click"]["changed"] == 1 and table["spamreport"]["suppressions_added"] == 1
    assert table["open"]["matched"] == 0


def test_two_batches_about_the_same_messages_both_apply(campaign: int) -> None:
    """SendGrid posts batches concurrently and applies none in id order: a batch must take its messages'
    locks up front, lowest id first, or it and another batch holding one of them deadlock."""
    if get_engine().dialect.name != "postgresql":
        pytest.skip("SQLite transactions are serial: nothing to interleave")
    low, high = _message(campaign, "a@example.com"), _message(campaign, "b@example.com")
    # This batch reaches the higher id first: it happened first.
    ids = _store(
        event("delivered", email="b@example.com", outbox_id=high, timestamp=_at(1)),
        event("delivered", email="a@example.com", outbox_id=low, timestamp=_at(2)),
    )
    with Session(get_engine()) as other:  # another batch: it holds the lower id and will want the higher
        other.exec(select(OutboundMessage).where(OutboundMessage.id == low).with_for_update()).one()
        batch = start_until_blocked(lambda: apply_events(ids), "the locked message")
        opened = other.exec(select(OutboundMessage).where(OutboundMessage.id == high).with_for_update()).one()
        opened.opened_at = T0 + timedelta(minutes=3)
        other.add(opened)
        other.commit()
    batch.finish()

    assert _get(low).status == _get(high).status == MessageStatus.DELIVERED
    assert _get(high).opened_at == T0 + timedelta(minutes=3)  # the other batch's write, read before applying
    assert _inbox_statuses(ids) == [InboxStatus.PROCESSED, InboxStatus.PROCESSED]


def test_redaction_keeps_the_reason_and_drops_addresses() -> None:
    assert redact("550 <alex@example.com>: unknown; cc bob.smith+x@mail.example.org") == (
        "550 <<address>>: unknown; cc <address>"
    )
    assert redact(None) is None
