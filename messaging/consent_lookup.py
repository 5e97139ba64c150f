"""One contact's consent as ops see it (suppressions and the ledger, by address), and the staff changes ops
may make to it: the same changes as the CLI's, through the same functions of `messaging/consent.py`.

- A phone number: `suppress add` / `suppress remove` (all SMS and marketing email: `consent.OPT_OUT_SCOPES`,
  `consent.withdraw` / `consent.grant`).
- An email address: `consent withdraw --email` / `consent grant --email` (email marketing:
  `consent.set_marketing_consent`).
- Marketing consent on the address's own channel, a phone's too (`consent grant|withdraw --phone|--email`,
  `marketing_change`): a patient who ticks the SMS-offers box on a paper form is recorded here, and campaign
  audiences select on it.
A lift needs a note of how the patient agreed, and is refused (`consent.ConsentRefused`, nothing changed) for
a patient's own opt-out: only the patient lifts that (texting START, an email's unsubscribe page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlmodel import Session, col, select

from messaging import consent
from messaging.contacts import find_contacts, normalize_email, normalize_phone
from models import Channel, ConsentEvent, ConsentOrigin, Contact, Suppression

AddressKind = Literal["phone", "email"]
HISTORY = 100  # ledger entries shown, newest first


class AddressError(ValueError):
    """The lookup is not a usable phone number or email address, or names no patient where one is needed."""


@dataclass(frozen=True)
class Address:
    kind: AddressKind
    value: str  # normalised: E.164, or a lower-case email

    @property
    def channel(self) -> Channel:
        return Channel.EMAIL if self.kind == "email" else Channel.SMS


def parse_address(text: str, region: str) -> Address:
    """A phone number (in the clinic's region's local format too) or an email address, normalised."""
    text = text.strip()
    if "@" in text:
        email = normalize_email(text)
        if email is None:
            raise AddressError("not an email address")
        return Address("email", email)
    phone = normalize_phone(text, region)
    if phone is None:
        raise AddressError("not a valid phone number or email address")
    return Address("phone", phone)


@dataclass(frozen=True)
class SuppressionView:
    channel: str
    purpose: str
    reason: str
    origin: str
    since: datetime
    patient_own: bool  # the patient's own opt-out: staff cannot lift it

    @property
    def who_lifts(self) -> str:
        if self.patient_own:
            return consent.how_the_patient_rejoins(self.channel)
        return "staff may lift it, with a note of how the patient agreed"


@dataclass(frozen=True)
class LedgerView:
    at: datetime
    channel: str
    purpose: str
    action: str
    source: str
    origin: str
    actor: str
    wording: str | None


@dataclass(frozen=True)
class ConsentState:
    address: Address
    contact_id: int | None
    sms_marketing_consent_at: datetime | None
    email_marketing_consent_at: datetime | None
    suppressions: list[SuppressionView]
    history: list[LedgerView]

    @property
    def patient_stop(self) -> SuppressionView | None:
        """The patient's own opt-out that a staff lift here would run into, if any."""
        return next((s for s in self.suppressions if s.patient_own and s.channel in self.lift_channels), None)

    @property
    def lift_channels(self) -> set[str]:
        """The channels a lift here touches (a phone's lift covers the patient's email marketing too)."""
        if self.address.kind == "phone":
            return {Channel.SMS.value, Channel.EMAIL.value}
        return {Channel.EMAIL.value}


def _contact(session: Session, address: Address) -> Contact | None:
    matches = find_contacts(session, [(address.kind, address.value)])
    return matches[0] if matches else None


def _hashes(address: Address, contact: Contact | None) -> list[str]:
    """The blind indexes of the looked-up address and the contact's other one (their consent is one story)."""
    found = {consent.address_hash(address.channel, address.value)}
    if contact is not None and contact.phone:
        found.add(consent.address_hash(Channel.SMS, contact.phone))
    if contact is not None and contact.email:
        found.add(consent.address_hash(Channel.EMAIL, contact.email))
    return sorted(found)


def lookup(session: Session, address: Address) -> ConsentState:
    """The suppressions and the consent ledger of the address (and its contact's other address)."""
    contact = _contact(session, address)
    hashes = _hashes(address, contact)
    suppressions = session.exec(
        select(Suppression).where(col(Suppression.address_hash).in_(hashes)).order_by(col(Suppression.id))
    ).all()
    ledger = session.exec(
        select(ConsentEvent)
        .where(col(ConsentEvent.address_hash).in_(hashes))
        .order_by(col(ConsentEvent.at).desc(), col(ConsentEvent.id).desc())
        .limit(HISTORY)
    ).all()
    return ConsentState(
        address=address,
        contact_id=contact.id if contact else None,
        sms_marketing_consent_at=contact.sms_marketing_consent_at if contact else None,
        email_marketing_consent_at=contact.email_marketing_consent_at if contact else None,
        suppressions=[
            SuppressionView(
                s.channel, s.purpose, s.reason, s.origin, s.created_at, ConsentOrigin(s.origin).is_patient
            )
            for s in suppressions
        ],
        history=[
            LedgerView(e.at, e.channel, e.purpose, e.action, e.source, e.origin, e.actor, e.wording)
            for e in ledger
        ],
    )


@dataclass(frozen=True)
class StaffChange:
    action: str  # the access-audit action, as the CLI names it
    contact_id: int | None
    changed: bool
    still_blocked: str | None = None  # after a marketing opt-in: what else keeps marketing from the patient


def staff_source(actor: str, note: str, *, lift: bool) -> consent.ConsentSource:
    """The ledger's record of a staff change; a lift needs a note of how the patient agreed."""
    if lift and not note.strip():
        raise AddressError("a note is required: how and in what words the patient agreed")
    return consent.ConsentSource("staff", actor[:64], note.strip() or None, origin=ConsentOrigin.STAFF)


def action_for(address: Address, *, lift: bool) -> str:
    if address.kind == "phone":
        return "suppression.lifted" if lift else "suppression.added"
    return "consent.granted" if lift else "consent.withdrawn"


def staff_change(
    session: Session, address: Address, *, lift: bool, why: consent.ConsentSource
) -> StaffChange:
    """Add or lift a suppression as `avatar-crm suppress add|remove` (a phone) or `consent withdraw|grant
    --email` (an email) does. Raises `consent.ConsentRefused` (nothing changed) for the patient's own opt-out,
    and `AddressError` for an email no patient has."""
    if address.kind == "email":
        return marketing_change(session, address, granted=lift, why=why)
    contact = _contact(session, address)
    change = consent.grant if lift else consent.withdraw
    changed = change(session, phone=address.value, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=why)
    return StaffChange(action_for(address, lift=lift), contact.id if contact else None, changed)


def marketing_change(
    session: Session, address: Address, *, granted: bool, why: consent.ConsentSource
) -> StaffChange:
    """Record the patient's opt-in to (or out of) marketing on the address's channel, as `avatar-crm consent
    grant|withdraw` does. Raises `consent.ConsentRefused` (nothing changed) for the patient's own opt-out, and
    `AddressError` when no patient has the address (consent belongs to a patient record)."""
    contact = _contact(session, address)
    if contact is None:
        raise AddressError(
            f"no patient has this {'phone number' if address.kind == 'phone' else 'email address'}"
        )
    column = "sms_marketing_consent_at" if address.channel == Channel.SMS else "email_marketing_consent_at"
    before = getattr(contact, column)
    blocked = consent.set_marketing_consent(session, contact, address.channel, granted=granted, why=why)
    action = "consent.granted" if granted else "consent.withdrawn"
    return StaffChange(action, contact.id, (before is None) == granted, blocked)
