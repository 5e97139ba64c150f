"""Campaign rows in the outbox, handled in bulk: queue thousands at once, claim a provider-sized batch,
record a batch's results — each one transaction, never one ORM flush per recipient.

The single-message functions in `messaging/outbox.py` stay the model: a unique idempotency key per message
(`campaign:{slug}:{contact_id}`, whatever the variant, so a contact gets one message per campaign however
often it is run), a suppression and consent re-check at claim time, and every status change written to
`OutboundMessageEvent` — except the two that would triple a 100,000-recipient campaign's writes and say
nothing the row does not: "queued" (the row's `created_at`) and, for email, "sending" (its `attempts`). SMS
keeps its "sending" event: it names the batch, whose Idempotency-Key a resumed run must reuse. The reminder
sweep leaves campaign rows alone (`claim_due` skips them); the campaign flow claims its own, a batch at a
time, in contact order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    LargeBinary,
    String,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from messaging import outbox
from messaging.consent import may_send
from messaging.outbox import Outcome
from models import (
    Channel,
    Contact,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    Purpose,
    session_scope,
)
from models.crypto import get_cipher
from models.db import in_values
from models.types import UTCDateTime, utcnow

CAMPAIGN_DEADLINE = timedelta(days=3)  # a campaign message that could not go out within this is dropped
OM = OutboundMessage.__table__  # type: ignore[attr-defined]
CT = Contact.__table__  # type: ignore[attr-defined]
EV = OutboundMessageEvent.__table__  # type: ignore[attr-defined]
ACCEPTED = (MessageStatus.SENT, MessageStatus.SANDBOXED, MessageStatus.DELIVERED)


def key_prefix(slug: str) -> str:
    """Every recipient's outbox key is this and the contact id: one message per contact per campaign, whether
    it was queued row by row (`queue_many`) or in the database (`queue_page_in_database`)."""
    return f"campaign:{slug}:"


def idempotency_key(slug: str, contact_id: int) -> str:
    return f"{key_prefix(slug)}{contact_id}"


@dataclass(frozen=True)
class NewMessage:
    contact_id: int
    recipient: str
    body: str
    variant: str


def queue_many(
    campaign_id: int,
    slug: str,
    channel: str,
    messages: list[NewMessage],
    *,
    status: str = MessageStatus.PENDING,
    detail: str | None = None,
) -> int:
    """Insert the messages not queued before (the unique key decides); returns how many were new."""
    if not messages:
        return 0
    now = utcnow()
    rows = [
        {
            "idempotency_key": idempotency_key(slug, m.contact_id),
            "channel": channel,
            "purpose": Purpose.MARKETING.value,
            "kind": MessageKind.CAMPAIGN.value,
            "contact_id": m.contact_id,
            "recipient": m.recipient,
            "body": m.body,
            "status": status,
            "attempts": 0,
            "send_after": now,
            "deadline": now + CAMPAIGN_DEADLINE,
            "campaign_id": campaign_id,
            "variant": m.variant,
            "created_at": now,
            "updated_at": now,
        }
        for m in messages
    ]
    with session_scope() as session:
        dialect = session.get_bind().dialect.name
        builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = builder(OM).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(OM.c.id)
        new_ids = list(session.execute(statement, rows).scalars())
        if status != MessageStatus.PENDING:  # settled at once (e.g. an SMS too long to send): say why
            _events(session, new_ids, status, detail, now)
    return len(new_ids)


def queue_page_in_database(
    campaign_id: int,
    slug: str,
    channel: str,
    variant: str,
    body: str,
    conditions: list[ColumnElement[bool]],
    *,
    after_id: int,
    limit: int,
) -> tuple[int, int | None]:
    """Queue one page of the audience (the next `limit` contacts above `after_id`) with one variant and one
    body, entirely inside the database: INSERT … SELECT, no row through Python.

    For email outside an A/B test group every recipient's row is the same but for the address, which is
    copied as the contact's own ciphertext (the recipient column accepts values sealed for the contact's email
    or phone column, models/outbox.py), so a 100,000-name
    campaign costs no per-row encryption here. Returns (rows queued, last contact id of the page or None).
    """
    address = CT.c.email if channel == Channel.EMAIL else CT.c.phone
    now = utcnow()
    with session_scope() as session:
        page = (
            session.execute(
                select(CT.c.id).where(CT.c.id > after_id, *conditions).order_by(CT.c.id).limit(limit)
            )
            .scalars()
            .all()
        )
        if not page:
            return 0, None
        source = select(
            (literal(key_prefix(slug), String()) + cast(CT.c.id, String())).label("idempotency_key"),
            literal(channel, String()),
            literal(Purpose.MARKETING.value, String()),
            literal(MessageKind.CAMPAIGN.value, String()),
            CT.c.id,
            address,
            literal(get_cipher().encrypt(body.encode(), "outboundmessage.body"), LargeBinary()),
            literal(MessageStatus.PENDING.value, String()),
            literal(0, Integer()),
            literal(now, UTCDateTime()),
            literal(now + CAMPAIGN_DEADLINE, UTCDateTime()),
            literal(campaign_id, Integer()),
            literal(variant, String()),
            literal(now, UTCDateTime()),
            literal(now, UTCDateTime()),
        ).where(CT.c.id > after_id, CT.c.id <= page[-1], *conditions)
        columns = [
            "idempotency_key",
            "channel",
            "purpose",
            "kind",
            "contact_id",
            "recipient",
            "body",
            "status",
            "attempts",
            "send_after",
            "deadline",
            "campaign_id",
            "variant",
            "created_at",
            "updated_at",
        ]
        builder = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = (
            builder(OM)
            .from_select(columns, source)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        # SQLAlchemy keeps an INSERT's rowcount only when asked (on PostgreSQL it otherwise reads 0), and the
        # count is what says how much of the audience this page queued.
        result = session.execute(statement, execution_options={"preserve_rowcount": True})
        return max(result.rowcount, 0), page[-1]  # type: ignore[attr-defined]


def _events(session: Session, ids: list[int], status: str, detail: str | None, at: datetime) -> None:
    """One history entry per message, written by the database from the ids (INSERT … SELECT)."""
    if not ids:
        return
    session.execute(
        insert(EV).from_select(
            ["message_id", "status", "detail", "at"],
            select(
                OM.c.id,
                literal(str(status), String()),
                literal(detail, Text()),
                literal(at, UTCDateTime()),
            ).where(in_values(session, OM.c.id, ids)),
        )
    )


def _set_status(
    session: Session,
    ids: list[int],
    status: str,
    detail: str | None,
    now: datetime,
    *,
    only_from: str | None = None,
    **values: Any,
) -> None:
    """Move messages to `status` with one history entry each. With `only_from`, only those still in that
    status move: a result written after the send must not undo what SendGrid's events already recorded."""
    if not ids:
        return
    statement = update(OM).where(in_values(session, OM.c.id, ids))
    statement = statement.values(status=status, updated_at=now, **values)
    if only_from is None:
        session.execute(statement)
        moved = ids
    else:
        moved = list(session.execute(statement.where(OM.c.status == only_from).returning(OM.c.id)).scalars())
    _events(session, moved, status, detail, now)


class CampaignMessage(NamedTuple):
    """A claimed campaign message, with what its personalization needs (a tuple: a campaign makes one per
    recipient, and a frozen dataclass cost 6 µs each, measured)."""

    id: int
    recipient: str
    body: str
    variant: str
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True)
class Batch:
    """Messages claimed together; `key` names the batch (MobileMessage's Idempotency-Key for SMS)."""

    key: str
    variant: str
    messages: list[CampaignMessage]
    refused: dict[int, str]


def batch_key(slug: str, ids: list[int]) -> str:
    """The same set of messages always gets the same key, so a re-posted batch is a replay, not a resend."""
    digest = hashlib.sha256(",".join(map(str, sorted(ids))).encode()).hexdigest()[:24]
    return f"campaign:{slug}:batch:{digest}"


def claim_batch(
    campaign_id: int,
    slug: str,
    channel: str,
    variant: str,
    *,
    after_id: int,
    limit: int,
    now: datetime | None = None,
) -> tuple[Batch | None, int]:
    """Claim up to `limit` pending messages of one variant with ids above `after_id`, re-checked now.

    Returns the batch (None when nothing is left above `after_id`) and the highest id looked at (the caller's
    cursor). Messages whose recipient is suppressed, lost marketing consent, or whose deadline passed are
    settled here and never posted. On PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED`.
    """
    now = now or utcnow()
    consent = CT.c.email_marketing_consent_at if channel == Channel.EMAIL else CT.c.sms_marketing_consent_at
    body = OM.c.body if channel == Channel.SMS else literal("").label("body")  # an email's is its variant's
    with session_scope() as session:
        query = (
            select(
                OM.c.id,
                OM.c.recipient,
                body,
                CT.c.first_name,
                CT.c.last_name,
                # Decided by the database, so no row's two timestamps are parsed into Python to be compared.
                (OM.c.deadline <= now).label("expired"),
                consent.is_not(None).label("consented"),
            )
            .select_from(OM.outerjoin(CT, CT.c.id == OM.c.contact_id))
            .where(
                OM.c.campaign_id == campaign_id,
                OM.c.variant == variant,
                OM.c.status == MessageStatus.PENDING,
                OM.c.id > after_id,
            )
            .order_by(OM.c.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=OM)
            # Bitmap scans off so the claim reads from the cursor on through the (campaign_id, id) index
            # (migration 0019), in order, stopping at `limit`. The statistics rarely know the campaign being
            # sent (its rows are new), so the planner takes it for a few rows and would rather bitmap-scan all
            # of them and sort: every claim then reads the whole campaign (1.7-6 s a claim at 1,000,000
            # recipients instead of 15 ms). For this statement only: back on after it, and SET LOCAL ends with
            # the transaction anyway (a claim that fails never leaves its pooled connection without them).
            session.execute(sql_text("SET LOCAL enable_bitmapscan = off"))
            rows = session.execute(query).all()
            session.execute(sql_text("SET LOCAL enable_bitmapscan = on"))
        else:
            rows = session.execute(query).all()
        if not rows:
            return None, after_id
        cursor = rows[-1].id
        suppressed = may_send(channel, Purpose.MARKETING).refusals(session, {r.recipient for r in rows})
        refused: dict[int, str] = {}
        by_reason: dict[tuple[str, str], list[int]] = defaultdict(list)
        messages: list[CampaignMessage] = []
        for message_id, recipient, text, first_name, last_name, expired, consented in rows:
            if expired:
                refusal = (MessageStatus.DROPPED, "deadline passed before it could be sent")
            elif recipient in suppressed:
                refusal = (MessageStatus.SUPPRESSED, f"recipient suppressed ({suppressed[recipient]})")
            elif not consented:
                refusal = (MessageStatus.SUPPRESSED, "no marketing consent on this channel")
            else:
                messages.append(CampaignMessage(message_id, recipient, text, variant, first_name, last_name))
                continue
            by_reason[refusal].append(message_id)
        for (status, detail), ids in by_reason.items():
            _set_status(session, ids, status, detail, now)
            refused.update(dict.fromkeys(ids, status))
        ids = [m.id for m in messages]
        key = batch_key(slug, ids) if ids else ""
        if ids:
            session.execute(
                update(OM)
                .where(in_values(session, OM.c.id, ids))
                .values(status=MessageStatus.SENDING, attempts=OM.c.attempts + 1, updated_at=now)
            )
            if channel == Channel.SMS:
                _events(session, ids, MessageStatus.SENDING, f"campaign batch {key}", now)
        return Batch(key, variant, messages, refused), cursor


def record_batch(outcomes: list[Outcome]) -> None:
    """Write a batch's results: accepted and delayed messages in bulk; the rare failure or provider block
    through `outbox.record_many`, which also honours a provider-side opt-out."""
    now = utcnow()
    accepted = [o for o in outcomes if o.status in (MessageStatus.SENT, MessageStatus.SANDBOXED)]
    delayed = [o for o in outcomes if o.status == MessageStatus.PENDING]
    handled = {MessageStatus.SENT, MessageStatus.SANDBOXED, MessageStatus.PENDING}
    others = [o for o in outcomes if o.status not in handled]
    with session_scope() as session:
        uniform = {(o.status, o.provider, o.detail, o.provider_message_id) for o in accepted}
        if accepted and len(uniform) == 1:  # a whole email batch: one statement, not one per row
            status, provider, detail, provider_message_id = uniform.pop()
            ids = [o.message_id for o in accepted]
            _set_status(
                session,
                ids,
                status,
                detail,
                now,
                only_from=MessageStatus.SENDING,
                provider=provider,
                provider_message_id=provider_message_id,
                sent_at=now,
            )
        elif accepted:
            session.execute(
                update(OM)
                .where(OM.c.id == bindparam("message_id"))
                .values(
                    status=bindparam("new_status"),
                    provider=bindparam("new_provider"),
                    provider_message_id=bindparam("new_provider_message_id"),
                    sent_at=now,
                    updated_at=now,
                ),
                [
                    {
                        "message_id": o.message_id,
                        "new_status": o.status.value,
                        "new_provider": o.provider,
                        "new_provider_message_id": o.provider_message_id,
                    }
                    for o in accepted
                ],
            )
            for (status, detail), group in _group_by_status(accepted).items():
                _events(session, group, status, detail, now)
        for detail, group in _group_by_detail(delayed).items():
            # Back to pending with the same key; the campaign flow paces the retry, a re-run resumes it.
            _set_status(
                session,
                group,
                MessageStatus.PENDING,
                f"retry after outage: {detail}",
                now,
                only_from=MessageStatus.SENDING,
                last_error=detail,
            )
    outbox.record_many(others)


def _group_by_status(outcomes: list[Outcome]) -> dict[tuple[str, str | None], list[int]]:
    groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for outcome in outcomes:
        groups[(str(outcome.status), outcome.detail)].append(outcome.message_id)
    return groups


def _group_by_detail(outcomes: list[Outcome]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for outcome in outcomes:
        groups[outcome.detail or ""].append(outcome.message_id)
    return groups


@dataclass(frozen=True)
class AbandonedBatch:
    key: str
    variant: str
    messages: list[CampaignMessage]


def abandoned(campaign_id: int, channel: str) -> list[AbandonedBatch]:
    """Messages a stopped run left `sending`, grouped by the batch they were posted in; an SMS batch only if
    every recipient may still get it (`_still_allowed`).

    Only called while holding the campaign's lock, so no live sender can own them.
    """
    with session_scope() as session:
        rows = session.execute(
            select(OM.c.id, OM.c.recipient, OM.c.body, OM.c.variant, Contact.first_name, Contact.last_name)
            .join(Contact, Contact.id == OM.c.contact_id, isouter=True)  # type: ignore[arg-type]
            .where(OM.c.campaign_id == campaign_id, OM.c.status == MessageStatus.SENDING)
            .order_by(OM.c.id)
        ).all()
        if not rows:
            return []
        latest = (
            select(EV.c.message_id, func.max(EV.c.id).label("event_id"))
            .where(EV.c.message_id.in_([r.id for r in rows]), EV.c.status == MessageStatus.SENDING)
            .group_by(EV.c.message_id)
            .subquery()
        )
        details = dict(
            session.execute(
                select(EV.c.message_id, EV.c.detail).join(latest, latest.c.event_id == EV.c.id)
            ).all()
        )
    groups: dict[tuple[str, str], list[CampaignMessage]] = defaultdict(list)
    for row in rows:
        detail = details.get(row.id) or ""
        key = detail.removeprefix("campaign batch ") if detail.startswith("campaign batch ") else ""
        groups[(key, row.variant)].append(
            CampaignMessage(row.id, row.recipient, row.body, row.variant, row.first_name, row.last_name)
        )
    batches = [AbandonedBatch(key, variant, messages) for (key, variant), messages in groups.items()]
    return _still_allowed(batches) if channel == Channel.SMS else batches  # email is never posted again


def _still_allowed(batches: list[AbandonedBatch]) -> list[AbandonedBatch]:
    """An interrupted SMS batch is posted again (same Idempotency-Key) only if nobody in it has opted out
    since. Otherwise who opted out is settled suppressed, and the rest go back to pending to be claimed in a
    new batch: if the interrupted post did reach MobileMessage they may get the text twice, the lesser harm
    than texting someone who said STOP."""
    now, check, kept = utcnow(), may_send(Channel.SMS, Purpose.MARKETING), []
    with session_scope() as session:
        for batch in batches:
            refused = check.refusals(session, [m.recipient for m in batch.messages])
            if not refused:
                kept.append(batch)
                continue
            out = [m.id for m in batch.messages if m.recipient in refused]
            rest = [m.id for m in batch.messages if m.recipient not in refused]
            _set_status(
                session, out, MessageStatus.SUPPRESSED, "opted out before the batch was posted again", now
            )
            _set_status(
                session, rest, MessageStatus.PENDING, "batch not posted again: someone in it opted out", now
            )
    return kept


def settle_unconfirmed(ids: list[int], detail: str) -> None:
    """Email a stopped run was posting: SendGrid may have it and has no idempotency key, so it is not resent.

    Recorded as sent with the reason; SendGrid's own delivery events (the events webhook) confirm or not.
    """
    now = utcnow()
    with session_scope() as session:
        _set_status(
            session,
            ids,
            MessageStatus.SENT,
            detail,
            now,
            only_from=MessageStatus.SENDING,
            sent_at=now,
            provider="sendgrid",
        )


def pending_count(campaign_id: int) -> int:
    with session_scope() as session:
        return session.execute(
            select(func.count()).where(
                OM.c.campaign_id == campaign_id,
                OM.c.status.in_([MessageStatus.PENDING, MessageStatus.SENDING]),
            )
        ).scalar_one()


def counts_by_variant(campaign_id: int) -> dict[str, dict[str, int]]:
    """Per variant: how many messages in each status, and how many were opened and clicked."""
    with session_scope() as session:
        rows = session.execute(
            select(
                OM.c.variant,
                OM.c.status,
                func.count(),
                func.count(OM.c.opened_at),
                func.count(OM.c.clicked_at),
            )
            .where(OM.c.campaign_id == campaign_id)
            .group_by(OM.c.variant, OM.c.status)
        ).all()
    result: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for variant, status, count, opened, clicked in rows:
        counts = result[variant or "?"]
        counts[status] += count
        counts["opened"] += opened
        counts["clicked"] += clicked
        counts["total"] += count
    return {variant: dict(counts) for variant, counts in sorted(result.items())}


def results_table(campaign_id: int) -> list[dict[str, Any]]:
    """The results artifact's rows: one per variant, counts a marketer reads."""
    table = []
    for variant, counts in counts_by_variant(campaign_id).items():
        table.append(
            {
                "variant": variant,
                "queued": counts.get("total", 0),
                "sent": sum(counts.get(s, 0) for s in (*ACCEPTED, MessageStatus.BOUNCED)),
                "delivered": counts.get(MessageStatus.DELIVERED, 0),
                "opened": counts.get("opened", 0),
                "clicked": counts.get("clicked", 0),
                "bounced": counts.get(MessageStatus.BOUNCED, 0),
                "suppressed": counts.get(MessageStatus.SUPPRESSED, 0),
                "failed": sum(
                    counts.get(s, 0)
                    for s in (MessageStatus.FAILED, MessageStatus.BLOCKED, MessageStatus.DROPPED)
                ),
                "pending": counts.get(MessageStatus.PENDING, 0) + counts.get(MessageStatus.SENDING, 0),
            }
        )
    return table
