"""The one suppression check every send goes through, and the only way suppressions and consent change.

Scope of an opt-out (Spam Act 2003 s 18, Privacy Act APP 7): a patient who replies STOP must get no marketing
on any channel and nothing at all by SMS, from the moment we learn of it; the single confirmation of the
opt-out itself is the only message still allowed through. Every change is written to the consent ledger with
its source, time and the patient's own words, because the sender carries the burden of proof.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete
from sqlmodel import Session, select

from models import Channel, ConsentAction, ConsentEvent, Contact, MessageKind, Purpose, Suppression
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


def _index_kind(channel: str) -> str:
    return "email" if channel == Channel.EMAIL else "phone"


def address_hash(channel: str, address: str) -> str:
    """The blind index an address is suppressed under: the same one contacts are found by."""
    return get_cipher().blind_index(_index_kind(channel), address)


def suppression_reason(session: Session, channel: str, purpose: str, address: str, kind: str) -> str | None:
    """Why this message must not be sent (e.g. `opt_out_reply`), or None if it may be."""
    if kind in EXEMPT_KINDS:
        return None
    found = session.exec(
        select(Suppression.reason).where(
            Suppression.address_hash == address_hash(channel, address),
            Suppression.channel == channel,
            Suppression.purpose == purpose,
        )
    ).first()
    return found


def suppressed_addresses(
    session: Session, channel: str, purpose: str, addresses: Iterable[str]
) -> dict[str, str]:
    """Which of `addresses` are suppressed for (channel, purpose), with the reason: one query for a whole
    batch (a campaign re-checks a thousand recipients at a time just before sending)."""
    kind, cipher = _index_kind(channel), get_cipher()
    by_hash = {cipher.blind_index(kind, address): address for address in addresses}
    if not by_hash:
        return {}
    rows = session.exec(
        select(Suppression.address_hash, Suppression.reason).where(
            in_values(session, Suppression.address_hash, by_hash),  # type: ignore[arg-type]
            Suppression.channel == channel,
            Suppression.purpose == purpose,
        )
    ).all()
    return {by_hash[hashed]: reason for hashed, reason in rows}


@dataclass(frozen=True)
class ConsentSource:
    """Where a consent change came from, for the ledger."""

    source: str  # sms_reply, provider_unsubscribe, provider_blocked, staff
    actor: str
    wording: str | None = None
    webhook_event_id: int | None = None


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
    """Suppress each (channel, purpose) for the contact's addresses; True if anything was not already so."""
    changed = False
    for channel, purpose, hashed in _targets(contact, phone, scopes):
        if session.exec(select(Suppression.id).where(*_matching(hashed, channel, purpose))).first() is None:
            contact_id = contact.id if contact else None
            session.add(
                Suppression(
                    address_hash=hashed,
                    channel=channel,
                    purpose=purpose,
                    contact_id=contact_id,
                    reason=why.source,
                )
            )
            changed = True
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
    """Lift suppressions (e.g. a patient texting START); True if any was lifted."""
    lifted = False
    for channel, purpose, hashed in _targets(contact, phone, scopes):
        result = session.execute(delete(Suppression).where(*_matching(hashed, channel, purpose)))
        lifted = lifted or bool(result.rowcount)  # type: ignore[attr-defined]
        _ledger(session, hashed, contact, channel, purpose, ConsentAction.GRANTED, why)
    session.flush()
    return lifted


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
        )
    )


def set_marketing_consent(
    session: Session, contact: Contact, channel: Channel, *, granted: bool, why: ConsentSource
) -> None:
    """Record a patient's marketing opt-in (or opt-out) on one channel: the contact's `*_marketing_consent_at`
    (what campaign audiences select on), the suppression list, and the ledger entry that proves it."""
    column = "email_marketing_consent_at" if channel == Channel.EMAIL else "sms_marketing_consent_at"
    setattr(contact, column, utcnow() if granted else None)
    contact.updated_at = utcnow()
    session.add(contact)
    scopes = [(channel, Purpose.MARKETING)]
    if granted:
        grant(session, phone=None, contact=contact, scopes=scopes, why=why)
    else:
        withdraw(session, phone=None, contact=contact, scopes=scopes, why=why)
