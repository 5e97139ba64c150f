"""What patients (and staff) read by email: subjects, text and HTML bodies, and engagement tracking.

Templates live in `messaging/templates/email/` (Jinja2; HTML autoescaped, so a patient called `<b>` is
printed, not rendered). Every email names the clinic with its phone, address and email (Spam Act: identify the
sender). Times use the same clinic-local formatting as SMS (`messaging/sms_wording.py`).

An email is rendered when it is queued and stored in the outbox row's (encrypted) body as JSON. Tracking is
added when it is sent, because only then is the outbox id known: each http(s) link in the HTML becomes a
signed redirect through the gateway and a 1x1 pixel is appended (`add_tracking`). The plain-text part keeps
the real links: a patient reading text sees where a link goes.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import cache
from html import escape, unescape
from pathlib import Path
from urllib.parse import quote_plus

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from messaging.sms_wording import BookingFacts, format_local_time
from models import MessageKind, Settings
from providers.tracking_tokens import click_token, is_trackable_url, open_token

TEMPLATES = Path(__file__).parent / "templates" / "email"

_SUBJECTS: dict[MessageKind, str] = {
    MessageKind.CONFIRMATION: "Your {service} is booked for {when}",
    MessageKind.REQUEST_RECEIVED: "We have your request for {service} on {when}",
    MessageKind.RESCHEDULE: "Your {service} has moved to {when}",
    MessageKind.CANCELLATION: "Your {service} on {when} is cancelled",
    MessageKind.DECLINED: "We could not accept your request for {service}",
}


@dataclass(frozen=True)
class ClinicIdentity:
    name: str
    phone: str = ""
    address: str = ""
    email: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ClinicIdentity:
        return cls(
            settings.clinic_name, settings.clinic_phone, settings.clinic_address, settings.clinic_email
        )


@dataclass(frozen=True)
class EmailContent:
    """A rendered email as the outbox stores it (JSON in `OutboundMessage.body`)."""

    subject: str
    text: str
    html: str
    to_name: str | None = None
    track: bool = False  # patient emails are tracked; staff notices are not

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> EmailContent:
        """Raises ValueError for a body that is not a stored email (the message then fails, loudly)."""
        data = json.loads(raw)
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("subject", "text", "html")
        ):
            raise ValueError("the outbox body is not a rendered email")
        return cls(
            subject=data["subject"],
            text=data["text"],
            html=data["html"],
            to_name=data.get("to_name") if isinstance(data.get("to_name"), str) else None,
            track=bool(data.get("track", False)),
        )


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(name: str, context: dict[str, object]) -> tuple[str, str]:
    env = _environment()
    text = env.get_template(f"{name}.txt").render(context)
    html = env.get_template(f"{name}.html").render(context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", html


def map_url(location: str | None) -> str | None:
    """A Google Maps search for the appointment's location (a useful link, and a trackable one)."""
    if not location:
        return None
    return f"https://www.google.com/maps/search/?api=1&query={quote_plus(location)}"


def booking_email_key(wix_booking_id: str, kind: MessageKind, revision: int) -> str:
    return f"booking:{wix_booking_id}:{kind.value}:rev{revision}:email"


def render_booking_email(
    kind: MessageKind, facts: BookingFacts, clinic: ClinicIdentity, *, to_name: str | None = None
) -> EmailContent:
    """The patient's email about a booking change (the same kinds booking intake texts them about)."""
    if kind not in _SUBJECTS:
        raise ValueError(f"no email wording for {kind}")
    service = facts.service or "appointment"
    when = format_local_time(facts.start_at, facts.timezone)
    subject = f"{_SUBJECTS[kind].format(service=service, when=when)} - {clinic.name}"
    context: dict[str, object] = {
        "subject": subject,
        "greeting": f"Hi {facts.first_name}," if facts.first_name else "Hello,",
        "service": service,
        "when": when,
        "location": facts.location,
        "map_url": map_url(facts.location),
        "clinic": clinic,
    }
    text, html = _render(kind.value, context)
    return EmailContent(subject, text, html, to_name=to_name, track=True)


def render_staff_email(notice: str, clinic: ClinicIdentity, *, reference: str) -> EmailContent:
    """A staff notification by email: the same notice staff see in the Prefect UI (records, not patients)."""
    plain = notice.replace("**", "").replace("`", "")
    first_line = plain.split(" - ", 1)[0].strip() or "Staff action needed"
    subject = f"[{clinic.name}] Staff action needed: {first_line}"
    text, html = _render(
        "staff_notification",
        {"subject": subject, "notice": plain, "reference": reference, "clinic": clinic},
    )
    return EmailContent(subject, text, html, to_name=f"{clinic.name} staff", track=False)


_HREF = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)(")', re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def add_tracking(html: str, message_id: int, base_url: str) -> str:
    """Route each http(s) link through a signed click redirect, and append the open pixel.

    Only links our templates wrote are in the HTML (patient-supplied text is escaped, so it cannot add an
    `<a>`); `mailto:` and `tel:` links are left alone. Attribute values are HTML-escaped (`&amp;`), so the
    URL is unescaped before signing: the redirect must land exactly where the link pointed.
    """
    base = base_url.rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        url = unescape(match.group(2))
        if not is_trackable_url(url):
            return match.group(0)
        return f"{match.group(1)}{escape(f'{base}/t/c/{click_token(message_id, url)}')}{match.group(3)}"

    tracked = _HREF.sub(rewrite, html)
    pixel = (
        f'<img src="{escape(f"{base}/t/o/{open_token(message_id)}")}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;">'
    )
    ends = list(_BODY_END.finditer(tracked))
    if not ends:
        return tracked + pixel
    at = ends[-1].start()
    return f"{tracked[:at]}{pixel}\n{tracked[at:]}"
