"""The one SendGrid client: `POST /v3/mail/send` through the official `sendgrid` library, our retry rules.

SendGrid has no idempotency key on mail/send, so a request is retried only when SendGrid cannot have acted on
it (429, 5xx, a refused connection) — the outbox, not the provider, keeps a recipient from getting a second
copy. Other 4xx answers are permanent: retrying an invalid body only repeats the refusal. Bodies are built
with `sendgrid.helpers.mail` so the wire format is the library's, not ours; correlation ids go in each
personalization's `custom_args` (the spec types the top-level `custom_args` as a string, and Prism refuses
an object there — research/providers.md §3.1).

The library is synchronous (urllib); callers run `send` in a thread to keep several in flight.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import python_http_client.exceptions as http_errors
import sendgrid
from sendgrid.helpers.mail import (
    Asm,
    Category,
    Content,
    From,
    GroupId,
    Mail,
    Personalization,
    SendAt,
    Subject,
    Substitution,
    TemplateId,
    To,
)

from models.settings import Settings
from providers.retry import SENDGRID, Backoff, RetryPolicy, retry_after_seconds

logger = logging.getLogger(__name__)

MAX_PERSONALIZATIONS = (
    1000  # per request; also "1000 total recipients (to + cc + bcc)" — we send one `to` each
)
MAX_CATEGORIES = 10


class SendGridError(Exception):
    """A send that did not go through (or may have: `ambiguous`); `retryable`: it could succeed later."""

    def __init__(
        self, reason: str, *, status_code: int | None, retryable: bool, attempts: int, ambiguous: bool = False
    ) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.retryable = retryable
        self.attempts = attempts
        self.ambiguous = ambiguous  # SendGrid may have acted on it: neither resend nor call it failed


@dataclass(frozen=True)
class EmailRecipient:
    """One personalization: who, and what is theirs alone (template data, substitutions, correlation ids)."""

    email: str
    name: str | None
    custom_args: dict[str, str]
    template_data: dict[str, Any] = field(default_factory=dict)
    substitutions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailContent:
    """What every recipient of one request gets: a dynamic template, or a subject with text/HTML parts."""

    template_id: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None


def build_mail(
    *,
    from_email: str,
    from_name: str | None,
    content: EmailContent,
    recipients: Sequence[EmailRecipient],
    categories: Sequence[str] = (),
    asm_group_id: int | None = None,
    send_at: datetime | None = None,
) -> dict[str, Any]:
    """The mail/send body for up to 1000 recipients, built with the library's helpers."""
    if not recipients:
        raise ValueError("a mail/send request needs at least one recipient")
    if len(recipients) > MAX_PERSONALIZATIONS:
        raise ValueError(f"at most {MAX_PERSONALIZATIONS} recipients per request, got {len(recipients)}")
    if len(categories) > MAX_CATEGORIES:
        raise ValueError(f"at most {MAX_CATEGORIES} categories, got {len(categories)}")
    mail = Mail()
    mail.from_email = From(from_email, from_name or None)
    if content.template_id:
        mail.template_id = TemplateId(content.template_id)
    else:
        if not (content.subject and (content.text or content.html)):
            raise ValueError("email content needs a template id, or a subject and a text or HTML body")
        mail.subject = Subject(content.subject)
        if content.text:
            mail.add_content(Content("text/plain", content.text))
        if content.html:
            mail.add_content(Content("text/html", content.html))
    for category in categories:
        mail.add_category(Category(category))
    if asm_group_id is not None:
        mail.asm = Asm(GroupId(asm_group_id))
    if send_at is not None:
        mail.send_at = SendAt(int(send_at.timestamp()))
    for recipient in recipients:
        personalization = Personalization()
        personalization.add_to(To(recipient.email, recipient.name or None))
        if recipient.custom_args:  # the helper's list-of-dicts form (what add_custom_arg(CustomArg) builds)
            personalization.custom_args = [dict(recipient.custom_args)]
        if content.template_id:
            personalization.dynamic_template_data = recipient.template_data
        for key, value in recipient.substitutions.items():
            personalization.add_substitution(Substitution(key, value))
        mail.add_personalization(personalization, index=len(mail.personalizations or []))  # in order, O(1)
    return mail.get()


@dataclass(frozen=True)
class Accepted:
    """SendGrid took the request: its status (202) and `X-Message-Id`, the prefix of every `sg_message_id`
    in the events about this request's recipients."""

    status_code: int
    message_id: str | None


class SendGridClient:
    """`mail/send` with retries: backoff with jitter, `Retry-After` honoured, only what is retryable."""

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        *,
        timeout: float = 30.0,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = sendgrid.SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        self._timeout = timeout
        self._max_attempts = max(1, max_attempts)
        self._retry = RetryPolicy(self._max_attempts, Backoff(base_delay, max_delay), SENDGRID)
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        key = settings.sendgrid_api_key
        return cls(
            key.get_secret_value() if key else "",
            settings.sendgrid_api_url,
            timeout=settings.sendgrid_timeout_seconds,
        )

    def send(self, body: dict[str, Any]) -> Accepted:
        """Post one mail/send body; returns what SendGrid answered or raises `SendGridError`."""
        reason, status_code = "no attempt made", None
        for attempt in range(1, self._max_attempts + 1):
            retry_after: float | None = None
            try:
                response = self._api.client.mail.send.post(request_body=body, timeout=self._timeout)
                return Accepted(int(response.status_code), response.headers.get("X-Message-Id"))
            except http_errors.HTTPError as exc:
                status_code = int(exc.status_code)
                reason = f"SendGrid {status_code}: {_error_text(exc.body)}"
                if status_code not in self._retry.retryable:
                    raise SendGridError(
                        reason, status_code=status_code, retryable=False, attempts=attempt
                    ) from None
                retry_after = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
            except TimeoutError:
                # The request was written and no answer came: SendGrid may have accepted it, and a retry
                # could send it twice. Not retried; the caller records it as sent but unconfirmed.
                raise SendGridError(
                    "timed out waiting for SendGrid's answer (it may have accepted the request)",
                    status_code=None,
                    retryable=False,
                    attempts=attempt,
                    ambiguous=True,
                ) from None
            except urllib.error.URLError as exc:  # before the request was written: SendGrid never saw it
                reason, status_code = f"could not reach SendGrid ({type(exc.reason).__name__})", None
            except OSError as exc:  # the connection broke after the request was written (reset, closed)
                raise SendGridError(
                    f"lost the connection to SendGrid mid-request ({type(exc).__name__}; it may have sent)",
                    status_code=None,
                    retryable=False,
                    attempts=attempt,
                    ambiguous=True,
                ) from None
            if attempt == self._max_attempts:
                break
            delay = self._retry.delay(attempt, retry_after)
            logger.warning("%s; retry %s/%s in %.1fs", reason, attempt, self._max_attempts - 1, delay)
            self._sleep(delay)
        raise SendGridError(reason, status_code=status_code, retryable=True, attempts=self._max_attempts)


def _error_text(body: bytes | str | None) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}` as one line (no recipient addresses: only messages)."""
    if not body:
        return "no details"
    try:
        payload = json.loads(body)
        errors = payload.get("errors") or []
        parts = [
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
        ]
        return "; ".join(parts)[:300] or "no details"
    except (ValueError, AttributeError, TypeError):
        return "unreadable error body"
