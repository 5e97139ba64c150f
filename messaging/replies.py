"""Acting on a patient's SMS reply, or handing it to a person (the `sms-triage` flow's rules).

What a reply can do, by what the classifier makes of it:
- confirm → the booking is marked confirmed by the patient, and they get a short thank-you;
- cancel / reschedule → the booking is flagged for staff and staff are notified; nothing is cancelled or
  moved by a machine's reading of a text, and the patient is told a person will contact them;
- opt-out (STOP and the like, or the provider's own `unsubscribe`) → suppressed at once: SMS for everything,
  marketing on every channel; one confirmation (not for the provider's unsubscribe, which confirms itself);
- opt-in → SMS lifted, with a confirmation; help → the clinic's help text;
- anything else, or any reading below the confidence threshold → routed to staff, never guessed.
An opt-out is honoured whatever the confidence: missing one is a breach, a false one costs a phone call.
Everything a reply changes is committed in one transaction with the outbox rows it calls for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from inbox import service as inbox
from inbox.service import SMS_REPLIES, InboxEvent
from messaging import consent, sms_wording
from messaging.contacts import find_contacts, normalize_phone
from messaging.outbox import queue_message
from messaging.sms_classifier import OPT_OUT_SURE, Classification, Intent, classify_with_fallback
from messaging.staff_notices import staff_notices
from messaging.staff_tasks import open_for_reply
from models import (
    Booking,
    BookingStatus,
    Channel,
    ConsentOrigin,
    Contact,
    MessageKind,
    OutboundMessage,
    Purpose,
    StaffAttention,
    get_settings,
)
from models.audit import run_audit
from models.types import utcnow
from providers.mobilemessage_webhooks import InboundSms

ACTOR = "sms-triage"
PATIENT_SMS = ConsentOrigin.PATIENT_SMS  # a reply, or the provider's report of the patient's STOP
SMS_SCOPES = consent.OPT_OUT_SCOPES[:2]  # START restores SMS; marketing email needs its own consent


@dataclass
class TriageOutcome:
    event_id: int
    intent: str
    confidence: float
    summary: str
    to_send: list[int] = field(default_factory=list)


def normalize_sender(raw: str, region: str) -> str | None:
    """MobileMessage writes numbers internationally without the plus ("61412345678")."""
    digits = raw.strip()
    if digits.isdigit() and not digits.startswith("0"):
        international = normalize_phone("+" + digits, region)
        if international:
            return international
    return normalize_phone(raw, region)


def find_contact(session: Session, phone: str | None) -> Contact | None:
    """The patient texting from this number (the oldest record, if several share it)."""
    matches = find_contacts(session, [("phone", phone)])
    return matches[0] if matches else None


def find_booking(
    session: Session, inbound: InboundSms, contact: Contact | None, now: datetime
) -> Booking | None:
    """The booking the patient is replying about: the one our message named, else their next upcoming one."""
    if contact is None:
        return None
    ref = inbound.original_custom_ref or ""
    if ref.startswith("msg:") and ref[4:].isdigit():
        message = session.get(OutboundMessage, int(ref[4:]))
        if message is not None and message.booking_id and message.contact_id == contact.id:
            return session.get(Booking, message.booking_id)
    active = [status.value for status in BookingStatus if status.is_active]
    return session.exec(
        select(Booking)
        .where(
            Booking.contact_id == contact.id,
            Booking.start_at > now,
            Booking.status.in_(active),  # type: ignore[attr-defined]
        )
        .order_by(Booking.start_at)  # type: ignore[arg-type]
        .limit(1)
    ).first()


class _Triage:
    """One reply's transaction: the changes it calls for, the outbox rows, and the audit trail."""

    def __init__(self, session: Session, event_id: int, inbound: InboundSms, phone: str | None) -> None:
        self.session, self.event_id, self.inbound, self.phone = session, event_id, inbound, phone
        self.settings = get_settings()
        self.now = utcnow()
        self.contact = find_contact(session, phone)
        self.booking = find_booking(session, inbound, self.contact, self.now)
        self.queued: list[str] = []  # what this attempt queued, for the summary
        self.keys: list[str] = []  # every message the reply calls for, whichever attempt queued it

    def audit(self, action: str, **detail: object) -> None:
        if self.booking is not None:
            entity_type, entity_id = "booking", self.booking.id
        else:
            entity_type, entity_id = "contact", self.contact.id if self.contact else None
        self.session.add(run_audit(ACTOR, action, entity_type, entity_id, event_id=self.event_id, **detail))

    def reply(self, kind: MessageKind, body: str) -> None:
        if self.phone is None:
            return
        self._queue(
            OutboundMessage(
                idempotency_key=f"sms-reply:{self.event_id}",
                channel=Channel.SMS,
                purpose=Purpose.TRANSACTIONAL,
                kind=kind,
                contact_id=self.contact.id if self.contact else None,
                booking_id=self.booking.id if self.booking else None,
                recipient=self.phone,
                body=body,
            ),
            f"reply ({kind})",
        )

    def notify_staff(self, attention: StaffAttention, classification: Classification) -> None:
        """Flag the booking and tell staff. The notice lands in Prefect: it names records (ids), nothing of
        the patient, not even a masked number."""
        if self.booking is not None:
            self.booking.staff_attention = attention
            self.booking.staff_attention_at = self.now
            self.session.add(self.booking)
        about = "no upcoming booking found"
        if self.booking is not None:
            facts = sms_wording.booking_facts(self.booking, None)
            when = sms_wording.format_local_time(facts.start_at, facts.timezone)
            about = f"booking {self.booking.wix_booking_id} ({facts.service or 'appointment'}, {when})"
        who = f"contact #{self.contact.id}" if self.contact else "a number we do not know"
        body = (
            f"**{attention.replace('_', ' ')}** - {who}, {about}. Their SMS reads as "
            f"`{classification.intent}` (confidence {classification.confidence:.2f}). "
            f"Read it with `avatar-crm events show {self.event_id}` and call the patient."
        )
        for notice in staff_notices(
            self.settings,
            f"staff:{self.event_id}",
            body,
            contact_id=self.contact.id if self.contact else None,
            booking_id=self.booking.id if self.booking else None,
        ):
            self._queue(notice, "staff notification" if notice.channel == Channel.OPS else "staff email")
        open_for_reply(  # the console's task queue: the reply and, on request, the number to call
            self.session,
            event_id=self.event_id,
            attention=attention,
            reply_text=self.inbound.message,
            summary=f"read as {classification.intent} (confidence {classification.confidence:.2f})",
            contact_id=self.contact.id if self.contact else None,
            booking_id=self.booking.id if self.booking else None,
        )
        self.audit("booking.staff_attention", reason=attention.value, intent=classification.intent)

    def _queue(self, message: OutboundMessage, label: str) -> None:
        self.keys.append(message.idempotency_key)
        if queue_message(self.session, message).created:
            self.queued.append(label)

    def source(self, name: str) -> consent.ConsentSource:
        return consent.ConsentSource(name, ACTOR, self.inbound.message, self.event_id, origin=PATIENT_SMS)

    # --- the actions ------------------------------------------------------------------------------

    def act(self, classification: Classification) -> str:
        settings = self.settings
        intent, language = classification.intent, classification.language
        confident = classification.confidence >= settings.sms_classifier_min_confidence
        if self.inbound.kind == "unsubscribe":
            consent.withdraw(
                self.session,
                phone=self.phone,
                contact=self.contact,
                scopes=consent.OPT_OUT_SCOPES,
                why=self.source("provider_unsubscribe"),
            )
            self.audit("consent.withdrawn", source="provider_unsubscribe")
            return "opted out at the provider: suppressed"
        if intent == Intent.OPT_OUT:
            changed = consent.withdraw(
                self.session,
                phone=self.phone,
                contact=self.contact,
                scopes=consent.OPT_OUT_SCOPES,
                why=self.source("sms_reply"),
            )
            self.audit("consent.withdrawn", source="sms_reply", changed=changed)
            if changed:  # a less certain reading is honoured the same, and says how it was read
                confirm = (
                    sms_wording.opt_out_confirmation
                    if classification.confidence >= OPT_OUT_SURE
                    else sms_wording.opt_out_unsure_confirmation
                )
                self.reply(MessageKind.OPT_OUT_CONFIRMATION, confirm(settings.clinic_name, language))
            return "opted out: suppressed" + ("" if changed else " (already)")
        if not confident or intent == Intent.OTHER:
            self.notify_staff(StaffAttention.REPLY_NEEDS_REVIEW, classification)
            self.reply(MessageKind.REPLY, sms_wording.reply_passed_to_staff(settings.clinic_name, language))
            return "routed to staff"
        if intent == Intent.OPT_IN:
            lifted = consent.grant(
                self.session,
                phone=self.phone,
                contact=self.contact,
                scopes=SMS_SCOPES,
                why=self.source("sms_reply"),
            )
            self.audit("consent.granted", source="sms_reply", lifted=lifted)
            self.reply(MessageKind.REPLY, sms_wording.opt_in_confirmation(settings.clinic_name, language))
            return "opted back in"
        if intent == Intent.HELP:
            help_text = sms_wording.help_text(settings.clinic_name, settings.clinic_phone, language)
            self.reply(MessageKind.REPLY, help_text)
            return "help sent"
        if intent == Intent.CONFIRM and self.booking is not None:
            self.booking.patient_confirmed_at = self.booking.patient_confirmed_at or self.now
            self.session.add(self.booking)
            self.audit("booking.patient_confirmed")
            facts = sms_wording.booking_facts(self.booking, self.contact)
            self.reply(MessageKind.REPLY, sms_wording.reply_confirmed(facts, language))
            return "booking confirmed by the patient"
        if intent in {Intent.CANCEL, Intent.RESCHEDULE} and self.booking is not None:
            attention = (
                StaffAttention.CANCEL_REQUESTED
                if intent == Intent.CANCEL
                else StaffAttention.RESCHEDULE_REQUESTED
            )
            self.notify_staff(attention, classification)
            self.reply(
                MessageKind.REPLY,
                sms_wording.reply_staff_will_call(
                    settings.clinic_name, settings.clinic_phone, intent.value, language
                ),
            )
            return f"{intent.value} request passed to staff"
        self.notify_staff(StaffAttention.REPLY_NEEDS_REVIEW, classification)  # no booking to act on
        self.reply(MessageKind.REPLY, sms_wording.reply_passed_to_staff(settings.clinic_name, language))
        return f"{intent.value} but no upcoming booking: routed to staff"


def apply_reply(event_id: int, classification: Classification) -> TriageOutcome:
    """Read inbox event `event_id` and act on it as classified: the flow's work, without Prefect."""
    return apply_inbox_reply(inbox.read(event_id, SMS_REPLIES), classification)


def apply_inbox_reply(reply: InboxEvent[InboundSms], classification: Classification) -> TriageOutcome:
    """Everything the reply calls for, and the inbox row's `processed`, in one transaction."""
    settings = get_settings()
    inbound = reply.payload
    phone = normalize_sender(inbound.sender, settings.default_phone_region)
    with inbox.processing(reply) as session:
        triage = _Triage(session, reply.id, inbound, phone)
        summary = triage.act(classification)
        triage.audit("sms.triaged", intent=classification.intent, confidence=classification.confidence)
        session.flush()
        # By key, not by what this attempt created: a retried task finds what its first attempt queued.
        to_send = session.exec(
            select(OutboundMessage.id).where(OutboundMessage.idempotency_key.in_(triage.keys))  # type: ignore[attr-defined]
        ).all()
        return TriageOutcome(
            reply.id,
            classification.intent,
            classification.confidence,
            f"{summary}; queued {', '.join(triage.queued) or 'nothing'}",
            list(to_send),  # type: ignore[arg-type]
        )


async def classify_inbound(inbound: InboundSms) -> Classification:
    """The provider's own unsubscribe is an opt-out as sure as can be; anything else is read."""
    if inbound.kind == "unsubscribe":
        return Classification(inbound.message, Intent.OPT_OUT, 1.0, "provider")
    return await classify_with_fallback(inbound.message, get_settings())
