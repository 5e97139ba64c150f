"""Email from the clinic's own Google Workspace mailbox, through the Gmail API's `users.messages.send`.

Messages are built with the standard library's `email.message.EmailMessage` under the SMTP policy, so headers
are folded and non-ASCII display names and subjects are RFC 2047-encoded by the library rather than by hand
(a hand-built "From: Zoë" is a classic source of mojibake and spam scores). Each message is a proper
multipart/alternative: a plain-text part first, the HTML part last (mail clients show the last part they
can render).

Gmail has no idempotency key. The outbox sends each message once in the normal course; a send whose outcome
is unknown (a timeout or 5xx after the request left, a worker that died mid-send) is sent again rather than
dropped, since Gmail offers no way to ask "did it go?" under the `gmail.send` scope alone. The Message-ID is
derived from the outbox key, so such a second copy carries the same Message-ID, and mail clients that
deduplicate on it (Gmail does) show it once.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from googleapiclient.discovery import Resource

from models.types import utcnow
from providers.google_api import execute


@dataclass(frozen=True)
class Mailbox:
    address: str
    name: str | None = None

    def header(self) -> Address:
        """Raises ValueError for an address that is not one (the message then fails, it is never sent)."""
        if "@" not in self.address:
            raise ValueError("not an email address")
        username, domain = self.address.rsplit("@", 1)
        return Address(display_name=self.name or "", username=username, domain=domain)


@dataclass(frozen=True)
class OutgoingEmail:
    sender: Mailbox
    to: Mailbox
    subject: str
    text: str
    html: str
    key: str  # the outbox idempotency key: the Message-ID is derived from it
    reply_to: Mailbox | None = None


def message_id_for(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build_message(email: OutgoingEmail, *, date: datetime | None = None) -> EmailMessage:
    """The RFC 5322 message: From/To/Subject/Date/Message-ID, then text and HTML alternatives."""
    message = EmailMessage(policy=SMTP)
    message["From"] = email.sender.header()
    message["To"] = email.to.header()
    if email.reply_to is not None and email.reply_to.address.lower() != email.sender.address.lower():
        message["Reply-To"] = email.reply_to.header()
    message["Subject"] = email.subject
    message["Date"] = format_datetime(date or utcnow())
    message["Message-ID"] = message_id_for(email.key, email.sender.address.rsplit("@", 1)[1])
    message.set_content(email.text, subtype="plain", charset="utf-8")
    message.add_alternative(email.html, subtype="html", charset="utf-8")
    return message


def raw_message(message: EmailMessage) -> str:
    """What `users.messages.send` takes: the message bytes, base64url-encoded."""
    return base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")


def send(service: Resource, message: EmailMessage) -> dict[str, Any]:
    """Send as the connected account (`userId="me"`); returns Gmail's Message (`id`, `threadId`, …)."""
    return execute(service.users().messages().send(userId="me", body={"raw": raw_message(message)}))
