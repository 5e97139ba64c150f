"""SendGrid's Event Webhook: prove a batch came from SendGrid, then turn it into typed events.

SendGrid posts a JSON array of events (delivered, open, click, bounce, ...) in batches of up to 768 KB. With
the Signed Event Webhook enabled, each POST carries `X-Twilio-Email-Event-Webhook-Timestamp` and
`X-Twilio-Email-Event-Webhook-Signature`: a base64 DER ECDSA P-256 / SHA-256 signature over the timestamp
string followed by the raw body. The account's public key (base64 DER SubjectPublicKeyInfo, shown in the
SendGrid app) verifies it; we use the `sendgrid` library's own `EventWebhook` to do so.

Timestamp tolerance: SendGrid retries a batch that was not answered 2xx "at increasing intervals for up to
24 hours" and does not document whether a retry is re-signed with a fresh timestamp. If it is not, a window
shorter than a day would turn a late retry of a genuine batch into a 401 and lose its events for good. So the
default is 25 h (the 24 h retry window plus an hour's margin). That is safe because replaying a captured batch
within the window does nothing: every event in it is deduplicated on `sg_event_id` against the inbox, which
keeps its rows far longer than a day. A timestamp more than five minutes in the future is refused (a sender
clock that far ahead is not SendGrid's).

Events hold patient email addresses: error messages name the offending event by position and field, never a
value, so they can be returned to the caller and logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid import EventWebhook, EventWebhookHeader

SIGNATURE_HEADER: str = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER: str = EventWebhookHeader.TIMESTAMP
DEFAULT_TOLERANCE_SECONDS = 25 * 3600
MAX_FUTURE_SKEW_SECONDS = 300
# SendGrid flushes a batch at 768 KB; leave room for the JSON array's own framing and a larger event or two.
MAX_BODY_BYTES = 1024 * 1024

_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,15}", re.ASCII)
# What the inbox can hold: `webhookevent.dedupe_key` is VARCHAR(128), `event_type` VARCHAR(128).
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,128}", re.ASCII)  # SendGrid's are base64(url) UUIDs, <= 100 chars
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
_MAX_SIGNATURE_CHARS = 200  # a P-256 DER signature is at most 72 bytes, 96 in base64
_MAX_UNIX = 253_402_300_799  # 9999-12-31: what `datetime` can represent
_JSON_ERRORS = (ValueError, RecursionError)  # JSONDecodeError and UnicodeDecodeError are ValueErrors


class SendGridSignatureError(Exception):
    """The sender could not be proven to be SendGrid. The message is safe to return to the caller."""


class SendGridPayloadError(Exception):
    """Authentic but unusable body. The message names the offending event and field, never a value."""


# --- signatures -------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def load_public_key(public_key: str) -> ec.EllipticCurvePublicKey:
    """The configured verification key as a P-256 key object (parsed once per distinct key string).

    Accepts what the SendGrid app shows (base64 DER SPKI) and, forgivingly, the same key in PEM armour.
    Anything else is a configuration error, reported as a signature error so the route answers 401.
    """
    body = "".join(line.strip() for line in public_key.strip().splitlines() if "-----" not in line)
    if not body:
        raise SendGridSignatureError("SENDGRID_WEBHOOK_PUBLIC_KEY is empty")
    try:
        key = EventWebhook().convert_public_key_to_ecdsa(body)
    except Exception:  # ValueError, UnsupportedAlgorithm, ...: the key text is not a public key at all
        raise SendGridSignatureError("SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SendGridSignatureError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 key")
    return key


def check_headers(
    timestamp: str | None,
    signature: str | None,
    public_key: str | None,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> tuple[ec.EllipticCurvePublicKey, str, str]:
    """Everything that can be refused before the body is read: the key configured, both headers present,
    the timestamp fresh, the signature well-formed. Returns the key and the stripped header values."""
    if not public_key:
        raise SendGridSignatureError("SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    key = load_public_key(public_key)
    if timestamp is None or not timestamp.strip():
        raise SendGridSignatureError(f"missing {TIMESTAMP_HEADER} header")
    if signature is None or not signature.strip():
        raise SendGridSignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp, signature = timestamp.strip(), signature.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SendGridSignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds")
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance:
        raise SendGridSignatureError(f"{TIMESTAMP_HEADER} is too old (more than {tolerance}s ago)")
    if -age > MAX_FUTURE_SKEW_SECONDS:
        raise SendGridSignatureError(
            f"{TIMESTAMP_HEADER} is in the future "
            f"(more than {MAX_FUTURE_SKEW_SECONDS}s ahead; check the server clock)"
        )
    if len(signature) > _MAX_SIGNATURE_CHARS:
        raise SendGridSignatureError(f"{SIGNATURE_HEADER} is too long for an ECDSA signature")
    try:
        base64.b64decode(signature, validate=True)  # the library would silently skip junk characters
    except (binascii.Error, ValueError):
        raise SendGridSignatureError(f"{SIGNATURE_HEADER} is not base64") from None
    return key, timestamp, signature


def verify_signature(
    raw: bytes,
    timestamp: str | None,
    signature: str | None,
    public_key: str | None,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check the two signature headers against the exact bytes received; raise SendGridSignatureError if not.

    The library signs `timestamp + payload` re-encoded as UTF-8, so the body is decoded strictly as UTF-8:
    that round trip is byte-exact, and a body that is not UTF-8 cannot have been signed by SendGrid anyway.
    No exception other than SendGridSignatureError escapes (garbage base64, a non-DER signature, ...).
    """
    key, timestamp, signature = check_headers(timestamp, signature, public_key, now=now, tolerance=tolerance)
    try:
        payload = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SendGridSignatureError("body is not UTF-8, so it cannot carry a SendGrid signature") from None
    try:
        valid = EventWebhook().verify_signature(payload, signature, timestamp, key)
    except Exception:  # not DER, wrong length, ...: a malformed signature is simply not a valid one
        valid = False
    if not valid:
        raise SendGridSignatureError(f"{SIGNATURE_HEADER} does not match the body")


# --- events -----------------------------------------------------------------------------------------


class SendGridEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a batch. Only `event` and `sg_event_id` are required; other fields are None when absent
    or of an unexpected type, so one odd field never costs the batch. Only what `messaging/email_events.py`
    acts on is typed: every other field (categories, the campaign and variant custom args, the SMTP status,
    ...) is still in `data`, the event exactly as SendGrid sent it, which is what the inbox stores."""

    event: str  # delivered, open, click, bounce, dropped, ...; unknown names are kept
    sg_event_id: str
    email: str | None = None
    occurred_at: datetime | None = None  # `timestamp`, aware UTC
    sg_message_id: str | None = None
    bounce_type: str | None = None  # `type` on bounce events: "bounce" (hard) or "blocked"
    reason: str | None = None  # dropped / bounce
    response: str | None = None  # delivered / deferred
    url: str | None = None  # click: the link followed
    asm_group_id: int | None = None  # group_unsubscribe / group_resubscribe
    outbox_id: int | None = None  # our custom arg: OutboundMessage.id
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_json(self) -> bytes:
        """The event's own JSON (what the inbox stores per event); ASCII escapes keep it total."""
        return json.dumps(self.data, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def parse_batch(raw: bytes) -> list[SendGridEvent]:
    """One Event Webhook POST's body: a JSON array of event objects, each with `event` and `sg_event_id`."""
    try:
        document = json.loads(raw)
    except _JSON_ERRORS:
        raise SendGridPayloadError("body is not valid JSON") from None
    if not isinstance(document, list):
        raise SendGridPayloadError("body is not a JSON array")
    return [_event(item, f"event {index}") for index, item in enumerate(document)]


def parse_event(raw: bytes) -> SendGridEvent:
    """One event as stored in the inbox (`SendGridEvent.to_json`)."""
    try:
        document = json.loads(raw)
    except _JSON_ERRORS:
        raise SendGridPayloadError("event is not valid JSON") from None
    return _event(document, "event")


def _event(item: object, where: str) -> SendGridEvent:
    if not isinstance(item, dict):
        raise SendGridPayloadError(f"{where} is not a JSON object")
    event_id = item.get("sg_event_id")
    if event_id is None or event_id == "":
        raise SendGridPayloadError(f"{where} has no sg_event_id")
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise SendGridPayloadError(f"{where}: sg_event_id is not 1-128 printable ASCII characters")
    name = item.get("event")
    if name is None or name == "":
        raise SendGridPayloadError(f"{where} has no event name")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        raise SendGridPayloadError(
            f"{where}: event is not an event name (letters, digits, _ . -; at most 64)"
        )
    return SendGridEvent(
        event=name.lower(),
        sg_event_id=event_id,
        email=_text(item.get("email")),
        occurred_at=_instant(item.get("timestamp")),
        sg_message_id=_text(item.get("sg_message_id")),
        bounce_type=(_text(item.get("type")) or "").lower() or None,
        reason=_text(item.get("reason")),
        response=_text(item.get("response")),
        url=_text(item.get("url")),
        asm_group_id=_integer(item.get("asm_group_id")),
        outbox_id=_integer(item.get("outbox_id")),
        data=item,
    )


def _text(value: object) -> str | None:
    """A string field, stripped; anything else (or text a database could not store) counts as absent."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")  # JSON can spell unpaired surrogates
    except UnicodeEncodeError:
        return None
    return value.strip() or None


def _integer(value: object) -> int | None:
    """Custom args arrive as strings ("123"); SendGrid's own numbers as numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, int) and 0 <= value < 10**15:
        return value
    return None


def _instant(value: object) -> datetime | None:
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not (math.isfinite(value) and 0 <= value <= _MAX_UNIX):
        return None
    return datetime.fromtimestamp(value, UTC)
