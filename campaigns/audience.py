"""Who a campaign goes to: the audience streamed from the database a page at a time, and A/B assignment.

Pages are keyset-paginated by contact id, each read in its own short transaction: memory stays flat however
large the audience, and (on SQLite, where every transaction takes the write lock up front) the campaign's
own outbox writes are never held up behind one long read.

Consent and suppression are part of the query, not a filter a marketer can leave out: only contacts who opted
in to marketing on the channel, hold an address on it, and whose address is not suppressed for marketing on
it (`messaging.consent.may_send`: a STOP, which suppresses everything by SMS, counts too). The same check is
repeated just before each batch is sent (`campaigns/bulk_outbox.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, func, select

from campaigns.spec import Audience, CampaignSpec
from messaging.consent import may_send
from messaging.contacts import can_receive_sms
from models import Booking, BookingStatus, Channel, Contact, ContactTag, Purpose, session_scope
from models.crm import name_index

PAGE_SIZE = 1000
ACTIVE_STATUSES = [s.value for s in BookingStatus if s.is_active]
GONE_STATUSES = [BookingStatus.CANCELED.value, BookingStatus.DECLINED.value]
REMAINDER = "remainder (gets the winner)"


@dataclass(frozen=True)
class Recipient:
    contact_id: int
    address: str  # email, or phone in E.164
    first_name: str | None
    last_name: str | None


def _local_day_start(day: object, timezone: str) -> datetime:
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(timezone))  # type: ignore[arg-type]


def _name_indexes(kind: str, names: list[str]) -> list[str]:
    """The blind indexes of the names a marketer wrote (services and locations are stored encrypted)."""
    return [index for index in (name_index(kind, name) for name in names) if index is not None]


def audience_filters(
    audience: Audience, channel: str, now: datetime, timezone: str
) -> list[tuple[str, ColumnElement[bool]]]:
    """The audience's conditions in order, each with what it leaves out (for the dry run's account)."""
    if channel == Channel.EMAIL:
        consent, address, hashed = Contact.email_marketing_consent_at, Contact.email, Contact.email_hash
    else:
        consent, address, hashed = Contact.sms_marketing_consent_at, Contact.phone, Contact.phone_hash
    filters: list[tuple[str, ColumnElement[bool]]] = [
        (f"no {channel} marketing consent", consent.is_not(None)),  # type: ignore[union-attr]
        (f"no {'email address' if channel == Channel.EMAIL else 'mobile number'}", address.is_not(None)),  # type: ignore[union-attr]
        (f"suppressed for {channel} marketing", may_send(channel, Purpose.MARKETING).allows(hashed)),  # type: ignore[arg-type]
    ]
    if audience.services or audience.locations:
        booked = [Booking.contact_id == Contact.id, Booking.status.not_in(GONE_STATUSES)]  # type: ignore[attr-defined]
        wanted = []
        if audience.services:
            booked.append(Booking.service_key.in_(_name_indexes("service", audience.services)))  # type: ignore[union-attr]
            wanted.append(f"for {' / '.join(audience.services)}")
        if audience.locations:
            booked.append(Booking.location_key.in_(_name_indexes("location", audience.locations)))  # type: ignore[union-attr]
            wanted.append(f"at {' / '.join(audience.locations)}")
        label = f"no booking (not cancelled) {' '.join(wanted)}"
        filters.append((label, exists().where(and_(*booked))))
    if audience.last_visit_from or audience.last_visit_to:
        last_visit = (
            select(func.max(Booking.start_at))
            .where(
                Booking.contact_id == Contact.id,
                Booking.status.in_(ACTIVE_STATUSES),  # type: ignore[attr-defined]
                Booking.start_at < now,
            )
            .scalar_subquery()
        )
        window = f"{audience.last_visit_from or '…'} to {audience.last_visit_to or '…'}"
        in_window: list[ColumnElement[bool]] = []
        if audience.last_visit_from:
            in_window.append(last_visit >= _local_day_start(audience.last_visit_from, timezone))
        if audience.last_visit_to:
            day_after = _local_day_start(audience.last_visit_to, timezone) + timedelta(days=1)
            in_window.append(last_visit < day_after)
        filters.append((f"last visit not within {window}", and_(*in_window)))
    if audience.tags:
        tagged = exists().where(
            ContactTag.contact_id == Contact.id,
            func.lower(ContactTag.tag).in_([t.lower() for t in audience.tags]),
        )
        filters.append((f"no tag {' / '.join(audience.tags)}", tagged))
    return filters


def audience_conditions(
    audience: Audience, channel: str, now: datetime, timezone: str
) -> list[ColumnElement[bool]]:
    """The WHERE clause of a campaign's audience (consent, address, suppression, the marketer's filters)."""
    return [condition for _, condition in audience_filters(audience, channel, now, timezone)]


def excluded_by_filter(spec: CampaignSpec, *, now: datetime, timezone: str) -> list[tuple[str, int]]:
    """How many patients each filter leaves out, applied in order (the first row: all patients), so a
    dry run that selects nobody says why. Counts only: one COUNT per filter, no address is read."""
    filters = audience_filters(spec.audience, spec.channel, now, timezone)
    with session_scope() as session:
        remaining = [
            session.execute(select(func.count(Contact.id)).where(*[c for _, c in filters[:n]])).scalar_one()
            for n in range(len(filters) + 1)
        ]
    return [("patients", remaining[0])] + [
        (label, before - after)
        for (label, _), before, after in zip(filters, remaining[:-1], remaining[1:], strict=True)
    ]


@dataclass(frozen=True)
class AudienceAccount:
    """A campaign's audience as counts: who gets it (per variant and A/B remainder), and who each filter
    left out (the first row: all patients). Counts only: what the dry run and the console's preview show."""

    total: int
    groups: dict[str, int]
    excluded: list[tuple[str, int]]


def audience_account(spec: CampaignSpec, *, now: datetime, timezone: str) -> AudienceAccount:
    """Count the audience per group and account for everyone left out, landlines included (SMS only: they
    are left out after the query, so they are what the filters' counts do not explain)."""
    groups = audience_groups(spec, now=now, timezone=timezone)
    total = sum(groups.values())
    excluded = excluded_by_filter(spec, now=now, timezone=timezone)
    landlines = excluded[0][1] - sum(n for _, n in excluded[1:]) - total
    if landlines:
        excluded.append(("a landline (cannot get a text)", landlines))
    return AudienceAccount(total, groups, excluded)


def min_sample_warning(spec: CampaignSpec, groups: dict[str, int]) -> str | None:
    """Why this A/B test's winner will not be picked automatically (a variant's test group is smaller than
    `ab_test.min_sample`), or None. A warning, not a refusal: a person can still choose the winner."""
    if not spec.is_ab_test:
        return None
    needed = spec.ab_test.min_sample
    short = {v.name: groups.get(v.name, 0) for v in spec.variants if groups.get(v.name, 0) < needed}
    if not short:
        return None
    sizes = ", ".join(f"{name}: {count}" for name, count in short.items())
    return (
        f"each variant needs at least {needed} sent before a winner can be picked automatically, but the "
        f"test group gives {sizes}. Someone will have to choose the winner by hand; a larger test share, a "
        "wider audience or a lower minimum sample avoids that."
    )


def stream_recipients(
    spec: CampaignSpec, *, now: datetime, timezone: str, page_size: int = PAGE_SIZE
) -> Iterator[list[Recipient]]:
    """The audience a page at a time, in contact-id order (so a re-run walks it in the same order)."""
    conditions = audience_conditions(spec.audience, spec.channel, now, timezone)
    address_column = Contact.email if spec.channel == Channel.EMAIL else Contact.phone
    after = 0
    while True:
        with session_scope() as session:
            rows = session.execute(
                select(Contact.id, address_column, Contact.first_name, Contact.last_name)
                .where(Contact.id > after, *conditions)  # type: ignore[operator]
                .order_by(Contact.id)  # type: ignore[arg-type]
                .limit(page_size)
            ).all()
        if not rows:
            return
        after = rows[-1][0]
        page = [Recipient(row[0], row[1], row[2], row[3]) for row in rows]
        if spec.channel == Channel.SMS:
            page = [r for r in page if can_receive_sms(r.address)]  # landlines cannot get a text
        yield page


def audience_ids(spec: CampaignSpec, *, now: datetime, timezone: str) -> Iterator[int]:
    """The audience's contact ids in order. For email this reads ids only, so counting a 100,000-name
    campaign decrypts nobody's address; SMS needs the numbers, because a landline is left out."""
    if spec.channel == Channel.SMS:
        for page in stream_recipients(spec, now=now, timezone=timezone):
            yield from (recipient.contact_id for recipient in page)
        return
    conditions = audience_conditions(spec.audience, spec.channel, now, timezone)
    after = 0
    while True:
        with session_scope() as session:
            ids = (
                session.execute(
                    select(Contact.id)
                    .where(Contact.id > after, *conditions)  # type: ignore[operator]
                    .order_by(Contact.id)  # type: ignore[arg-type]
                    .limit(PAGE_SIZE * 10)
                )
                .scalars()
                .all()
            )
        if not ids:
            return
        after = ids[-1]
        yield from ids


def audience_groups(spec: CampaignSpec, *, now: datetime, timezone: str) -> dict[str, int]:
    """How many recipients each variant (and the A/B remainder) would get: the dry run's counts."""
    counts: dict[str, int] = {}
    for contact_id in audience_ids(spec, now=now, timezone=timezone):
        group = assign_variant(spec, contact_id) or REMAINDER
        counts[group] = counts.get(group, 0) + 1
    return counts


def empty_test_group(spec: CampaignSpec, *, now: datetime, timezone: str) -> str | None:
    """Why this A/B test cannot run (nobody in the audience falls in its test group), or None if it can.

    Such a test has nothing to compare: it would wait for a winner that cannot be picked while the whole
    audience waits too. It is refused before anything is sent (stops at the first test-group member).
    """
    if not spec.is_ab_test:
        return None
    seen = 0
    for contact_id in audience_ids(spec, now=now, timezone=timezone):
        if assign_variant(spec, contact_id) is not None:
            return None
        seen += 1
    return (
        f"the A/B test group is empty: none of the {seen} patient(s) in the audience falls in the "
        f"test's {spec.ab_test.test_fraction:.0%} share, so there is nothing to compare. Launch it with one "
        "variant, a larger ab_test.test_fraction or a wider audience."
    )


def assignment_point(slug: str, contact_id: int) -> float:
    """A stable pseudo-random point in [0, 1) for this contact in this campaign."""
    digest = hashlib.sha256(f"{slug}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_variant(spec: CampaignSpec, contact_id: int) -> str | None:
    """The variant this contact gets in the first send, or None for the A/B remainder (sent the winner later).

    Deterministic (a hash of slug and contact id), so a resumed or repeated run assigns everyone the same way.
    """
    names = [v.name for v in spec.variants]
    if not spec.is_ab_test:
        return names[0]
    point = assignment_point(spec.slug, contact_id)
    fraction = spec.ab_test.test_fraction
    if point >= fraction:
        return None
    return names[min(len(names) - 1, int(point / fraction * len(names)))]
