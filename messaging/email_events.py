"""Applying SendGrid's engagement events to the outbox and the suppression list (`email-events`' rules).

The gateway stores each event of a signed Event Webhook batch as its own inbox row (once per `sg_event_id`)
and starts this flow for a batch of them (`event_ids`). Each event is matched to the message it is about by
our `outbox_id` custom arg (SendGrid copies custom args into every event), else by SendGrid's message id, and
always checked against the address the message went to. Then:

- delivered → DELIVERED; bounce → BOUNCED; dropped → FAILED (with SendGrid's reason, addresses redacted).
  A status never moves backwards: SendGrid sends events out of order and more than once, so a `delivered`
  after a bounce changes nothing; the one move out of DELIVERED is to BOUNCED (mail servers bounce late).
- open / click → recorded as our own pixel and tracked links record them (`messaging/engagement.py`): one
  "opened" event, one "clicked" event per URL, `opened_at` / `clicked_at` the earliest seen; a click implies
  an open. Machine opens (Apple Mail privacy prefetching, `sg_machine_open`) are counted but change nothing.
- spamreport / unsubscribe / group_unsubscribe → no more marketing email to the address. An opt-out is
  honoured even when the event matches no message of ours: missing an opt-out breaks the Spam Act, an extra
  suppression costs nothing, and suppressions are keyed on the address anyway.
- a hard bounce (`type` bounce), or SendGrid dropping mail to an address on its bounce/invalid list → no more
  email of ANY purpose to the address: it does not work, and SendGrid itself would drop every later message
  to it. A `blocked` bounce (the receiving server refused this message, e.g. for reputation) suppresses
  nothing. A drop for an address on SendGrid's unsubscribe/spam-report lists → no more marketing email.
- group_resubscribe → marketing email allowed again, but only for a message of ours that matches (lifting a
  suppression is the risky direction).
- processed, deferred and unknown event types are counted and change nothing.

Every message change is an `OutboundMessageEvent`; every suppression change is in the consent ledger with
the inbox event that caused it. A batch is one transaction and marks its inbox rows processed, so a replay
or a retried run changes nothing twice. Patient addresses never reach the logs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from inbox import service as inbox
from inbox.service import EMAIL_EVENTS, InboxEvent
from messaging.consent import ConsentSource, grant, withdraw
from messaging.contacts import find_contacts, normalize_email
from messaging.engagement import Engagement, record_engagement
from messaging.outbox import transition
from models import (
    Channel,
    ConsentOrigin,
    Contact,
    MessageStatus,
    OutboundMessage,
    Purpose,
    session_scope,
)
from models.db import in_values
from models.types import utcnow
from providers.sendgrid_webhooks import SendGridEvent

SOURCE = "sendgrid"
EMAIL_MARKETING = ((Channel.EMAIL, Purpose.MARKETING),)
ALL_EMAIL = ((Channel.EMAIL, Purpose.TRANSACTIONAL), (Channel.EMAIL, Purpose.MARKETING))
OPT_OUTS = frozenset({"spamreport", "unsubscribe", "group_unsubscribe"})

# The status each delivery event would give a message, and where a message may go from each status.
_DELIVERY_STATUS = {
    "delivered": MessageStatus.DELIVERED,
    "bounce": MessageStatus.BOUNCED,
    "dropped": MessageStatus.FAILED,
}
_UNDELIVERED = {MessageStatus.DELIVERED, MessageStatus.BOUNCED, MessageStatus.FAILED}
_FORWARD = {
    # SendGrid has it even if our record of the send was lost to an outage: do not send it again.
    MessageStatus.PENDING: _UNDELIVERED,
    MessageStatus.SENDING: _UNDELIVERED,
    MessageStatus.SENT: _UNDELIVERED,
    MessageStatus.DELIVERED: {MessageStatus.BOUNCED},  # an asynchronous bounce after the server accepted it
}
# `reason` on a dropped event when the address is on one of SendGrid's own suppression lists.
_DROPPED_SCOPES = {
    "bounced address": ALL_EMAIL,
    "invalid": ALL_EMAIL,
    "unsubscribed address": EMAIL_MARKETING,
    "spam reporting address": EMAIL_MARKETING,
}
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


@dataclass(frozen=True)
class EventResult:
    """What one event did: which message (if any) it matched and what it changed."""

    event_id: int
    event: str
    message_id: int | None
    changes: tuple[str, ...] = ()  # e.g. ("status delivered",), ("opened", "clicked")
    suppressed: bool = False  # a suppression that did not exist before
    resubscribed: bool = False  # a suppression was lifted
    failed: str | None = None  # why the stored event could not be applied


def redact(text: str | None) -> str | None:
    """SMTP replies quote the recipient ("550 5.1.1 <alex@example.com>: no such user"): keep the reason,
    drop the address, since `last_error` and the ledger detail are not encrypted."""
    return None if text is None else _ADDRESS.sub("<address>", text)[:500]


# --- applying one event -----------------------------------------------------------------------------


def _same_address(a: str | None, b: str | None) -> bool:
    return normalize_email(a) is not None and normalize_email(a) == normalize_email(b)


def find_message(session: Session, event: SendGridEvent) -> OutboundMessage | None:
    """The email of ours this event is about, or None. `outbox_id` decides when present (no fallback: a
    mismatch means the event is not about that message); otherwise SendGrid's `sg_message_id`, which starts
    with the `X-Message-Id` of the send request (shared by every recipient of that request, hence the
    address check)."""
    if event.outbox_id is not None:
        message = session.get(OutboundMessage, event.outbox_id)
        if message is None or message.channel != Channel.EMAIL:
            return None
        if event.email is not None and not _same_address(message.recipient, event.email):
            return None
        return message
    if not event.sg_message_id or event.email is None:
        return None
    parts = event.sg_message_id.split(".")
    prefixes = {".".join(parts[:end]) for end in range(1, min(len(parts), 8) + 1)}
    candidates = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.provider_message_id.in_(prefixes),  # type: ignore[union-attr]
            OutboundMessage.channel == Channel.EMAIL,
        )
    ).all()
    matches = [m for m in candidates if _same_address(m.recipient, event.email)]
    return matches[0] if len(matches) == 1 else None


def _apply_delivery(session: Session, message: OutboundMessage, event: SendGridEvent) -> list[str]:
    target = _DELIVERY_STATUS.get(event.event)
    if target is None or target not in _FORWARD.get(MessageStatus(message.status), set()):
        return []
    at = event.occurred_at or utcnow()  # SendGrid's time, in the history as on the row
    if target == MessageStatus.DELIVERED:
        message.delivered_at = at
        detail = "sendgrid delivered"
    else:
        kind = f" ({event.bounce_type})" if event.event == "bounce" and event.bounce_type else ""
        reason = redact(event.reason) or redact(event.response) or "no reason given"
        message.last_error = f"sendgrid {event.event}{kind}: {reason}"
        detail = message.last_error
    transition(session, message, target, detail, at)
    return [f"status {target.value}"]


def _apply_engagement(session: Session, message: OutboundMessage, event: SendGridEvent) -> list[str]:
    """Recorded exactly as our own pixel and tracked links record engagement, so the history and the A/B
    counts do not depend on which sender tracked the email. Only SendGrid can tell a machine open (a mail
    client fetching images, not a person reading), so that filter stays here."""
    if event.event not in {"open", "click"}:
        return []
    if event.event == "open" and event.data.get("sg_machine_open") is True:
        return []
    kind: Engagement = "click" if event.event == "click" else "open"
    url = event.url if kind == "click" else None
    changes = record_engagement(session, message.id, kind, event.occurred_at or utcnow(), url)  # type: ignore[arg-type]
    return list(changes or ())


def _addressee(session: Session, address: str, message: OutboundMessage | None) -> Contact:
    """`withdraw`/`grant` take the email address from a Contact. Hand them one that holds exactly the address
    the event is about (never added to the session), with the patient's id for the ledger: the contact's
    current email may differ from the one this message went to."""
    contact_id = message.contact_id if message is not None else None
    if contact_id is None:
        matches = find_contacts(session, [("email", address)])
        contact_id = matches[0].id if matches else None
    return Contact(id=contact_id, email=address)


def _suppression_scopes(event: SendGridEvent) -> tuple[tuple[Channel, Purpose], ...]:
    if event.event in OPT_OUTS:
        return EMAIL_MARKETING
    if event.event == "bounce" and event.bounce_type != "blocked":
        return ALL_EMAIL
    if event.event == "dropped":
        return _DROPPED_SCOPES.get((event.reason or "").strip().lower(), ())
    return ()


def _wording(event: SendGridEvent) -> str:
    if event.event == "spamreport":
        return "reported the email as spam"
    if event.event in {"unsubscribe", "group_unsubscribe", "group_resubscribe"}:
        group = f" (unsubscribe group {event.asm_group_id})" if event.asm_group_id is not None else ""
        return f"{event.event.replace('_', ' ')} via SendGrid{group}"
    return f"sendgrid {event.event}: {redact(event.reason) or 'no reason given'}"


def _apply_consent(
    session: Session, event_id: int, message: OutboundMessage | None, event: SendGridEvent
) -> tuple[bool, bool]:
    """(suppression added, suppression lifted). Opt-outs need only the address; the rest need our message."""
    scopes = _suppression_scopes(event)
    if event.event not in OPT_OUTS and message is None:
        scopes = ()
    lifting = event.event == "group_resubscribe" and message is not None
    if not scopes and not lifting:
        return False, False
    address = message.recipient if message is not None else normalize_email(event.email)
    if not address:
        return False, False
    # An unsubscribe, a spam report, a resubscribe: the patient's own act through SendGrid's links (a drop for
    # an address on SendGrid's unsubscribe list, marketing only, too); a bounce is SendGrid's finding.
    origin = ConsentOrigin.PATIENT_EMAIL if lifting or scopes == EMAIL_MARKETING else ConsentOrigin.PROVIDER
    why = ConsentSource(f"sendgrid_{event.event}", "sendgrid", _wording(event), event_id, origin=origin)
    contact = _addressee(session, address, message)
    if lifting:
        return False, grant(session, phone=None, contact=contact, scopes=EMAIL_MARKETING, why=why)
    return withdraw(session, phone=None, contact=contact, scopes=scopes, why=why), False


def _apply_one(
    session: Session, inbox_event: InboxEvent[SendGridEvent], message: OutboundMessage | None
) -> EventResult:
    event = inbox_event.payload
    changes: list[str] = []
    if message is not None:
        changes += _apply_delivery(session, message, event)
        changes += _apply_engagement(session, message, event)
    suppressed, resubscribed = _apply_consent(session, inbox_event.id, message, event)
    return EventResult(
        event_id=inbox_event.id,
        event=event.event,
        message_id=message.id if message is not None else None,
        changes=tuple(changes),
        suppressed=suppressed,
        resubscribed=resubscribed,
    )


# --- the batch --------------------------------------------------------------------------------------


def _order(events: Iterable[InboxEvent[SendGridEvent]]) -> list[InboxEvent[SendGridEvent]]:
    """In the order things happened (SendGrid batches are not ordered); the inbox id breaks ties."""
    latest = datetime.max.replace(tzinfo=UTC)
    return sorted(events, key=lambda event: (event.payload.occurred_at or latest, event.id))


def apply_events(event_ids: list[int]) -> list[EventResult]:
    """Apply a batch in one transaction; an event that cannot be applied fails only its own inbox row."""
    results: list[EventResult] = []
    with session_scope() as session:
        batch = inbox.read_batch(session, event_ids, EMAIL_EVENTS)
        for bad in batch.unreadable:
            results.append(EventResult(bad.id, bad.event_type, None, failed=str(bad.error)))
        ordered = _order(batch.events)
        messages = _find_and_lock(session, [event.payload for event in ordered])
        for event, message in zip(ordered, messages, strict=True):
            try:
                with session.begin_nested():
                    results.append(_apply_one(session, event, message))
                inbox.finish(session, event.id)
            except (ValueError, LookupError) as exc:  # e.g. a status word this code does not know
                inbox.finish(session, event.id, inbox.reason(exc))
                results.append(EventResult(event.id, event.payload.event, None, failed=type(exc).__name__))
    return results


def _find_and_lock(session: Session, events: list[SendGridEvent]) -> list[OutboundMessage | None]:
    """The message each event is about (or None); every one of them locked before any event is applied,
    lowest id first, and re-read.

    Events are applied in the order they happened, which is no order of ids: locking row by row as they
    came up, two batches about the same messages (SendGrid posts batches concurrently) could each hold one
    and wait for the other, a deadlock PostgreSQL ends by failing one of them. Locked up front and in one
    order, the second batch waits for the first and then sees what it wrote. (SQLite: the transaction
    already holds the database's write lock; FOR UPDATE is not rendered.)
    """
    messages = [find_message(session, event) for event in events]
    ids = sorted({m.id for m in messages if m is not None})  # type: ignore[type-var]
    if ids:  # the same objects (the session's identity map), refreshed under the lock
        session.exec(
            select(OutboundMessage)
            .where(in_values(session, OutboundMessage.id, ids))  # type: ignore[arg-type]
            .order_by(OutboundMessage.id)  # type: ignore[arg-type]
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
    return messages


def summarise(results: list[EventResult]) -> list[dict[str, int | str]]:
    """One table row per event type: how many arrived, matched a message of ours, changed it, suppressed."""
    table: dict[str, Counter[str]] = {}
    for result in results:
        counts = table.setdefault(result.event, Counter())
        counts["events"] += 1
        counts["matched"] += result.message_id is not None
        counts["changed"] += bool(result.changes)
        counts["suppressions_added"] += result.suppressed
        counts["suppressions_lifted"] += result.resubscribed
        counts["failed"] += result.failed is not None
    columns = ("events", "matched", "changed", "suppressions_added", "suppressions_lifted", "failed")
    return [{"event": name, **{c: table[name][c] for c in columns}} for name in sorted(table)]
