"""Finding and updating patients: phone numbers in E.164, emails case-folded, matched through blind indexes.

Shared by every flow that learns about a patient: booking intake, the Google contacts import, SMS triage, and
the campaign CLI's consent and tag commands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from sqlalchemy import or_, text
from sqlmodel import Session, select

from models import Contact
from models.crypto import get_cipher
from models.types import utcnow

AddressKind = Literal["email", "phone"]

_SMS_CAPABLE = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize_phone(raw: str | None, region: str) -> str | None:
    """E.164 for any valid number, reading local formats ("0412 345 678") in `region`; None if unusable."""
    if not raw or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def can_receive_sms(e164: str) -> bool:
    return phonenumbers.number_type(phonenumbers.parse(e164)) in _SMS_CAPABLE


def normalize_email(raw: str | None) -> str | None:
    if not raw or "@" not in raw:
        return None
    return raw.strip().lower()


def mask_phone(e164: str | None) -> str:
    """For logs: enough to tell numbers apart at a glance, not enough to contact anyone."""
    return "none" if not e164 else f"{e164[:3]}…{e164[-3:]}"


@dataclass(frozen=True)
class ContactInput:
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None  # already E.164
    wix_contact_id: str | None = None


@dataclass(frozen=True)
class ContactChange:
    contact: Contact
    created: bool
    changed_fields: tuple[str, ...]


def find_contacts(session: Session, addresses: Iterable[tuple[AddressKind, str | None]]) -> list[Contact]:
    """Every patient holding one of these normalised addresses, the best match first.

    Nothing stops two patient records sharing an address, and callers disagree on which address is the
    stronger evidence (a booking trusts the phone, Google's list the primary email), so the caller ranks
    them: the first address that matches anyone decides, and among the patients sharing it the oldest
    record wins. The rest follow in the same order, for callers that act on everyone at an address.
    Empty values are ignored, so optional fields can be passed as they are.
    """
    cipher = get_cipher()
    ranked = [(kind, cipher.blind_index(kind, value)) for kind, value in addresses if value]
    if not ranked:
        return []
    # One query for all of them (a Google page merges a thousand people, each with several addresses); the
    # ranking is done here.
    by_kind: dict[str, list[str]] = {}
    for kind, hashed in ranked:
        by_kind.setdefault(kind, []).append(hashed)
    columns = {"email": Contact.email_hash, "phone": Contact.phone_hash}
    conditions = [columns[kind].in_(hashes) for kind, hashes in by_kind.items()]  # type: ignore[union-attr]
    found = session.exec(select(Contact).where(or_(*conditions))).all()

    def rank(contact: Contact) -> tuple[int, int]:
        held = {("email", contact.email_hash), ("phone", contact.phone_hash)}
        first = next(i for i, address in enumerate(ranked) if address in held)
        return first, contact.id or 0

    return sorted(found, key=rank)


def lock_keys(session: Session, keys: list[str]) -> None:
    """Serialise concurrent upserts of the same patient or booking.

    SQLite transactions here start with BEGIN IMMEDIATE and are already serial; PostgreSQL gets
    transaction-scoped advisory locks, taken in a fixed order so two flows can never deadlock.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def upsert_contact(session: Session, incoming: ContactInput) -> ContactChange:
    """Match by phone, then email, then Wix contact id; create the patient if none matches.

    What the patient just told us (on their booking) is newer than what we hold, so non-empty incoming values
    replace stored ones.
    """
    cipher = get_cipher()
    phone_hash = cipher.blind_index("phone", incoming.phone) if incoming.phone else None
    email_hash = cipher.blind_index("email", incoming.email) if incoming.email else None
    lock_keys(session, [f"contact:{h}" for h in (phone_hash, email_hash) if h])

    matches = find_contacts(session, [("phone", incoming.phone), ("email", incoming.email)])
    contact = matches[0] if matches else None
    if contact is None and incoming.wix_contact_id:
        contact = session.exec(
            select(Contact)
            .where(Contact.wix_contact_id == incoming.wix_contact_id)
            .order_by(Contact.id)
            .limit(1)
        ).first()

    wanted = {
        "first_name": incoming.first_name,
        "last_name": incoming.last_name,
        "phone": incoming.phone,
        "phone_hash": phone_hash,
        "email": incoming.email,
        "email_hash": email_hash,
        "wix_contact_id": incoming.wix_contact_id,
    }
    if contact is None:
        contact = Contact(**wanted)
        session.add(contact)
        session.flush()
        return ContactChange(contact, created=True, changed_fields=tuple(k for k, v in wanted.items() if v))

    changed = []
    for name, value in wanted.items():
        if value and getattr(contact, name) != value:
            setattr(contact, name, value)
            changed.append(name)
    if changed:
        contact.updated_at = utcnow()
        session.add(contact)
        session.flush()
    return ContactChange(contact, created=False, changed_fields=tuple(changed))
