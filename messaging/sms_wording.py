"""What patients read. Kept in one place so wording is reviewed once and reused by every flow.

Rules the wording follows: the clinic names itself (Spam Act: identify the sender); times are the patient's
local appointment time ("Tue 3 Mar, 9:00am"); replies are invited with single letters (Y / R / N) and never
with STOP-family words, which carriers and the law treat as opt-outs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from messaging.translations import TRANSLATIONS
from models import Booking, Contact, MessageKind, get_settings


def format_local_time(moment: datetime, timezone: str) -> str:
    """ "Tue 3 Mar, 9:00am" in the appointment's timezone (no leading zeros, lower-case am/pm)."""
    local = moment.astimezone(ZoneInfo(timezone))
    hour = local.hour % 12 or 12
    suffix = "am" if local.hour < 12 else "pm"
    return f"{local:%a} {local.day} {local:%b}, {hour}:{local:%M}{suffix}"


@dataclass(frozen=True)
class BookingFacts:
    first_name: str | None
    service: str | None
    location: str | None
    start_at: datetime
    timezone: str
    clinic_name: str
    clinic_phone: str = ""


def render(kind: MessageKind, facts: BookingFacts) -> str:
    hello = f"Hi {facts.first_name}," if facts.first_name else "Hi,"
    what = facts.service or "appointment"
    when = format_local_time(facts.start_at, facts.timezone)
    where = f" at {facts.location}" if facts.location else ""
    call = f" on {facts.clinic_phone}" if facts.clinic_phone else ""
    clinic = facts.clinic_name
    match kind:
        case MessageKind.CONFIRMATION:
            return (
                f"{hello} your {what} with {clinic} is booked for {when}{where}. "
                "Reply Y to confirm, R to reschedule or N to cancel."
            )
        case MessageKind.REQUEST_RECEIVED:
            return (
                f"{hello} {clinic} has received your request for {what} on {when}{where}. "
                "We'll text you once it is confirmed."
            )
        case MessageKind.RESCHEDULE:
            return (
                f"{hello} your {what} with {clinic} has moved to {when}{where}. "
                "Reply Y to confirm the new time or R to choose another."
            )
        case MessageKind.REMINDER:
            return (
                f"{hello} a reminder of your {what} with {clinic} on {when}{where}. "
                "Reply Y to confirm, R to reschedule or N to cancel."
            )
        case MessageKind.CANCELLATION:
            return (
                f"{hello} your {what} with {clinic} on {when} has been cancelled. "
                f"To book again, visit our website or call us{call}."
            )
        case MessageKind.DECLINED:
            return (
                f"{hello} {clinic} could not accept your request for {what} on {when}. "
                f"Please choose another time on our website or call us{call}."
            )
    raise ValueError(f"no wording for {kind}")


# --- answers to a patient's SMS (sms-triage) ---------------------------------------------------------------
# These may name STOP/START: they describe how to opt out or back in, they never use the words for an action.


def bilingual(english: str, language: str | None, key: str, *, phone: str = "", **fields: str) -> str:
    """The English answer, then the same in the patient's language when there is a template for it."""
    templates = TRANSLATIONS.get(language or "")
    if not templates:
        return english
    call = templates["call"].format(phone=phone) if phone else ""
    translated = " ".join(templates[key].format(call=call, **fields).split())
    return f"{english}\n\n{translated}"


def reply_confirmed(facts: BookingFacts, language: str | None = None) -> str:
    thanks = f"Thanks {facts.first_name}!" if facts.first_name else "Thanks!"
    what = facts.service or "appointment"
    when = format_local_time(facts.start_at, facts.timezone)
    english = f"{thanks} Your {what} on {when} is confirmed. See you then. - {facts.clinic_name}"
    return bilingual(english, language, "confirmed", clinic=facts.clinic_name, what=what, when=when)


def reply_staff_will_call(
    clinic_name: str, clinic_phone: str, request: str, language: str | None = None
) -> str:
    """`request` is "cancel" or "reschedule": the booking stays as it is until a person has spoken to them."""
    what = "cancel your appointment" if request == "cancel" else "find you a new time"
    call = f" or call us on {clinic_phone}" if clinic_phone else ""
    english = f"Thanks for letting us know. The {clinic_name} team will contact you shortly to {what}{call}."
    return bilingual(english, language, request, phone=clinic_phone, clinic=clinic_name)


def reply_passed_to_staff(clinic_name: str, language: str | None = None) -> str:
    english = f"Thanks for your message. A member of the {clinic_name} team will get back to you."
    return bilingual(english, language, "passed_to_staff", clinic=clinic_name)


def help_text(clinic_name: str, clinic_phone: str, language: str | None = None) -> str:
    call = f" Call us on {clinic_phone}." if clinic_phone else ""
    english = (
        f"{clinic_name} appointment messages. Reply Y to confirm, R to reschedule or N to cancel an "
        f"appointment.{call} Reply STOP to opt out."
    )
    return bilingual(english, language, "help", phone=clinic_phone, clinic=clinic_name)


def opt_out_confirmation(clinic_name: str, language: str | None = None) -> str:
    english = (
        f"{clinic_name}: you have been unsubscribed and will get no more SMS from us. "
        "Reply START to resubscribe."
    )
    return bilingual(english, language, "opt_out", clinic=clinic_name)


def opt_out_unsure_confirmation(clinic_name: str, language: str | None = None) -> str:
    """For a reply read as an opt-out with less certainty ("not interested", "wrong number"): honoured all
    the same, and the patient is told how we read it and the way back."""
    english = (
        f"{clinic_name}: we read your message as a request to stop our texts, so you will get no more SMS "
        "from us. If that is not what you meant, reply START to resubscribe."
    )
    return bilingual(english, language, "opt_out_unsure", clinic=clinic_name)


def opt_in_confirmation(clinic_name: str, language: str | None = None) -> str:
    english = f"{clinic_name}: you are subscribed to SMS from us again. Reply STOP to opt out at any time."
    return bilingual(english, language, "opt_in", clinic=clinic_name)


def booking_facts(booking: Booking, contact: Contact | None) -> BookingFacts:
    """What a message about this booking may say (the contact's first name only; None for staff)."""
    settings = get_settings()
    return BookingFacts(
        first_name=contact.first_name if contact else None,
        service=booking.service_name,
        location=booking.location,
        start_at=booking.start_at,
        timezone=booking.timezone or settings.clinic_timezone,
        clinic_name=settings.clinic_name,
        clinic_phone=settings.clinic_phone,
    )
