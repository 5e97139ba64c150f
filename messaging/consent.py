"""Who may be contacted, and how consent changes: the one question every send asks, and the only way
suppressions and consent change.

Scope of an opt-out (Spam Act 2003 s 18, Privacy Act APP 7): a patient who replies STOP must get no marketing
on any channel and nothing at all by SMS, from the moment we learn of it; the single confirmation of the
opt-out itself is the only message still allowed through. Every change is written to the consent ledger with
its source, who made it (`ConsentOrigin`), time and the patient's own words (or staff's note of them), because
the sender carries the burden of proof.

The patient's own words rank highest. A suppression the patient made (STOP by SMS, or their STOP reported by
the SMS provider; an unsubscribe or spam report by email) is lifted only by the patient, on that channel:
- SMS: the patient texting START (`messaging/replies.py`);
- email: the patient resubscribing through SendGrid's preference page (`group_resubscribe`,
  `messaging/email_events.py`).
Staff (`avatar-crm consent grant`, `suppress remove`) may lift only suppressions staff, a provider or an
import made; asked to lift a patient's own, nothing changes, the refusal is written to the ledger, and the
CLI says why and fails.

Every send path asks `may_send(channel, purpose)` about its recipients (the outbox claim, booking notices
by email, campaign audiences and the campaign claim re-check): `tests/unit/test_send_paths.py` holds the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, delete, exists, not_
from sqlmodel import Session, select

from models import (
    Channel,
    ConsentAction,
    ConsentEvent,
    ConsentOrigin,
    Contact,
    MessageKind,
    Purpose,
    Suppression,
)
from models.crypto import get_cipher
from models.db import in_values
from models.types import utcnow

# Messages a suppression never blocks: telling someone we have stopped is part of stopping.
EXEMPT_KINDS = frozenset({MessageKind.OPT_OUT_CONFIRMATION})

# What a STOP withdraws: SMS for everything, and marketing on every channel.
OPT_OUT_SCOPES = (
    (Channel.SMS, Purpose.TRANSACTIONAL),
    (Channel.SMS, Purpose.MARKETING),
    (Channel.EMAIL, Purpose.MARKETING),
)

# The patient's own re-consent that may lift their own opt-out on each channel.
_PATIENT_ON = {Channel.SMS.value: ConsentOrigin.PATIENT_SMS, Channel.EMAIL.value: ConsentOrigin.PATIENT_EMAIL}
_HOW_TO_REJOIN = {
    Channel.SMS.value: "only the patient can opt back in, by texting START to the clinic's number",
    Channel.EMAIL.value: "only the patient can opt back in, on the unsubscribe page of one of our emails",
}


def how_the_patient_rejoins(channel: str) -> str:
    """What lifts a patient's own opt-out on the channel (for pages that explain a refusal before it)."""
    return _HOW_TO_REJOIN[str(channel)]


def _index_kind(channel: str) -> str:
    return "email" if channel == Channel.EMAIL else "phone"


def address_hash(channel: str, address: str) -> str:
    """The blind index an address is suppressed under: the same one contacts are found by."""
    return get_cipher().blind_index(_index_kind(channel), address)


@dataclass(frozen=True)
class SendCheck:
    """What `may_send` answers for one channel and purpose: why each address must not be sent to.

    A `transactional` suppression means nothing at all on the channel (a STOP), so it blocks marketing too:
    lifting only a marketing suppression can never let marketing through to a patient who said STOP.
    """

    channel: str
    purpose: str

    @property
    def blocking_purposes(self) -> tuple[str, ...]:
        if self.purpose == Purpose.TRANSACTIONAL:
            return (Purpose.TRANSACTIONAL.value,)
        return (Purpose.TRANSACTIONAL.value, self.purpose)

    def refusals(self, session: Session, addresses: Iterable[str], kind: str | None = None) -> dict[str, str]:
        """Which of `addresses` must not get this message, with the reason (e.g. `opt_out_reply`): one query
        for a whole batch (a campaign re-checks a thousand recipients at a time just before sending)."""
        if kind in EXEMPT_KINDS:
            return {}
        kind_of_index, cipher = _index_kind(self.channel), get_cipher()
        by_hash = {cipher.blind_index(kind_of_index, address): address for address in addresses}
        if not by_hash:
            return {}
        rows = session.exec(
            select(Suppression.address_hash, Suppression.reason)
            .where(
                in_values(session, Suppression.address_hash, by_hash),  # type: ignore[arg-type]
                Suppression.channel == self.channel,
                Suppression.purpose.in_(self.blocking_purposes),  # type: ignore[attr-defined]
            )
            .order_by(Suppression.id)  # type: ignore[arg-type]
        ).all()
        found: dict[str, str] = {}
        for hashed, reason in rows:
            found.setdefault(by_hash[hashed], reason)
        return found

    def refusal(self, session: Session, address: str, kind: str | None = None) -> str | None:
        """Why this one message must not be sent, or None if it may be."""
        return self.refusals(session, [address], kind).get(address)

    def allows(self, hashed: ColumnElement[str]) -> ColumnElement[bool]:
        """The same answer as SQL, for a query selecting recipients by their address's blind index."""
        return not_(
            exists().where(
                Suppression.address_hash == hashed,
                Suppression.channel == self.channel,
                Suppression.purpose.in_(self.blocking_purposes),  # type: ignore[attr-defined]
            )
        )


def may_send(channel: str, purpose: str) -> SendCheck:
    """The one question every send path asks before anything reaches a provider (see the module docstring)."""
    return SendCheck(str(channel), str(purpose))


@dataclass(frozen=True)
class ConsentSource:
    """Where a consent change came from, for the ledger; `origin` decides what it may override."""

    source: str  # sms_reply, provider_unsubscribe, provider_blocked, sendgrid_<event>, staff
    actor: str
    wording: str | None = None  # the patient's words, or staff's note of them
    webhook_event_id: int | None = None
    origin: ConsentOrigin = field(kw_only=True)


class ConsentRefused(Exception):
    """A grant that would override the patient's own opt-out. Nothing was changed; `record_refusal` writes
    the attempt to the ledger."""

    def __init__(
        self, reason: str, refused: list[tuple[str, str, str]], contact_id: int | None, why: ConsentSource
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused  # (channel, purpose, address hash) of each suppression it would have lifted
        self.contact_id = contact_id
        self.why = why


def _targets(
    contact: Contact | None, phone: str | None, scopes: Iterable[tuple[Channel, Purpose]]
) -> Iterator[tuple[Channel, Purpose, str]]:
    """(channel, purpose, address hash) for each scope the contact has an address for."""
    addresses = {Channel.SMS: phone or (contact.phone if contact else None)}
    addresses[Channel.EMAIL] = contact.email if contact else None
    for channel, purpose in scopes:
        address = addresses.get(channel)
        if address:
            yield channel, purpose, address_hash(channel, address)


def _matching(hashed: str, channel: Channel, purpose: Purpose) -> list[ColumnElement[bool]]:
    return [
        Suppression.address_hash == hashed,  # type: ignore[list-item]
        Suppression.channel == channel,  # type: ignore[list-item]
        Suppression.purpose == purpose,  # type: ignore[list-item]
    ]


def withdraw(
    session: Session,
    *,
    phone: str | None,
    contact: Contact | None,
    scopes: Iterable[tuple[Channel, Purpose]],
    why: ConsentSource,
) -> bool:
    """Suppress each (channel, purpose) for the contact's addresses; True if anything was not already so.

    A patient's own opt-out on a scope staff (or a provider, or an import) had already suppressed takes the
    suppression over, so that from then on only the patient can lift it."""
    changed = False
    for channel, purpose, hashed in _targets(contact, phone, scopes):
        existing = session.exec(select(Suppression).where(*_matching(hashed, channel, purpose))).first()
        if existing is None:
            contact_id = contact.id if contact else None
            session.add(
                Suppression(
                    address_hash=hashed,
                    channel=channel,
                    purpose=purpose,
                    contact_id=contact_id,
                    reason=why.source,
                    origin=why.origin,
                )
            )
            changed = True
        elif why.origin.is_patient and not ConsentOrigin(existing.origin).is_patient:
            existing.origin, existing.reason = why.origin, why.source
            session.add(existing)
        _ledger(session, hashed, contact, channel, purpose, ConsentAction.WITHDRAWN, why)
    session.flush()
    return changed


def grant(
    session: Session,
    *,
    phone: str | None,
    contact: Contact | None,
    scopes: Iterable[tuple[Channel, Purpose]],
    why: ConsentSource,
) -> bool:
    """Lift suppressions (e.g. a patient texting START); True if any was lifted.

    Raises `ConsentRefused`, changing nothing, if any of them is the patient's own opt-out and `why` is not
    the same patient's re-consent on that channel."""
    targets = list(_targets(contact, phone, scopes))
    refused = [
        (suppression.channel, suppression.purpose, suppression.address_hash, suppression)
        for channel, purpose, hashed in targets
        for suppression in session.exec(select(Suppression).where(*_matching(hashed, channel, purpose))).all()
        if ConsentOrigin(suppression.origin).is_patient and why.origin != _PATIENT_ON.get(suppression.channel)
    ]
    if refused:
        first = refused[0][3]
        how = "texted STOP" if first.channel == Channel.SMS else "unsubscribed"
        reason = (
            f"the patient {how} ({first.reason}, {first.created_at:%Y-%m-%d}): {why.source} cannot override "
            f"the patient's own opt-out from {first.channel}; {_HOW_TO_REJOIN[first.channel]}"
        )
        contact_id = contact.id if contact else None
        raise ConsentRefused(reason, [(c, p, h) for c, p, h, _ in refused], contact_id, why)
    lifted = False
    for channel, purpose, hashed in targets:
        result = session.execute(delete(Suppression).where(*_matching(hashed, channel, purpose)))
        lifted = lifted or bool(result.rowcount)  # type: ignore[attr-defined]
        _ledger(session, hashed, contact, channel, purpose, ConsentAction.GRANTED, why)
    session.flush()
    return lifted


def record_refusal(session: Session, refused: ConsentRefused) -> None:
    """Write a refused grant to the ledger (in a transaction of its own: the refused one was rolled back)."""
    for channel, purpose, hashed in refused.refused:
        session.add(
            ConsentEvent(
                address_hash=hashed,
                contact_id=refused.contact_id,
                channel=channel,
                purpose=purpose,
                action=ConsentAction.REFUSED,
                source=refused.why.source,
                wording=refused.why.wording,
                webhook_event_id=refused.why.webhook_event_id,
                actor=refused.why.actor,
                origin=refused.why.origin,
            )
        )


def _ledger(
    session: Session,
    hashed: str,
    contact: Contact | None,
    channel: Channel,
    purpose: Purpose,
    action: ConsentAction,
    why: ConsentSource,
) -> None:
    session.add(
        ConsentEvent(
            address_hash=hashed,
            contact_id=contact.id if contact else None,
            channel=channel,
            purpose=purpose,
            action=action,
            source=why.source,
            wording=why.wording,
            webhook_event_id=why.webhook_event_id,
            actor=why.actor,
            origin=why.origin,
        )
    )


def set_marketing_consent(
    session: Session, contact: Contact, channel: Channel, *, granted: bool, why: ConsentSource
) -> str | None:
    """Record a patient's marketing opt-in (or opt-out) on one channel: the contact's `*_marketing_consent_at`
    (what campaign audiences select on), the suppression list, and the ledger entry that proves it.

    Returns why marketing on the channel still cannot reach the patient after an opt-in (another
    suppression, e.g. staff's `suppress add`), or None. Raises `ConsentRefused` (nothing changed) if the
    patient's own opt-out stands in the way."""
    scopes = [(channel, Purpose.MARKETING)]
    if granted:
        grant(session, phone=None, contact=contact, scopes=scopes, why=why)
    else:
        withdraw(session, phone=None, contact=contact, scopes=scopes, why=why)
    column = "email_marketing_consent_at" if channel == Channel.EMAIL else "sms_marketing_consent_at"
    setattr(contact, column, utcnow() if granted else None)
    contact.updated_at = utcnow()
    session.add(contact)
    address = contact.email if channel == Channel.EMAIL else contact.phone
    if not granted or not address:
        return None
    return may_send(channel, Purpose.MARKETING).refusal(session, address)
