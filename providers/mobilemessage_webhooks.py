"""MobileMessage.com.au webhooks: prove the sender, then turn the body into a typed `InboundSms` or
`DeliveryReceipt`.

MobileMessage has one "Inbound Messages" URL (patient replies and opt-outs) and one "Message Status Updates"
URL (one delivery receipt per message part) per account. Both are signed the same way: `X-MM-Timestamp` (Unix
seconds) and `X-MM-Signature`, the hex HMAC-SHA256 of `f"{timestamp}.{raw_body}"` with the account's webhook
secret. Neither body carries an event id, so the dedupe keys are hashes of the fields that identify an event.

Bodies hold patient phone numbers and message texts: error messages name the offending field, never its
value, so they can be returned to the caller and logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

TIMESTAMP_HEADER = "X-MM-Timestamp"
SIGNATURE_HEADER = "X-MM-Signature"
DEFAULT_TOLERANCE_SECONDS = 300

_JSON_ERRORS = (ValueError, RecursionError)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,15}", re.ASCII)  # numbers sent as strings; bounded so int() stays cheap
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}", re.ASCII)
# What the CRM can store: `deliveryreceipt.status` is VARCHAR(16) and `provider_message_id` VARCHAR(100).
_STATUS = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}", re.ASCII)
_MAX_MESSAGE_ID = 100
_MAX_PARTS = 1000  # a 765-character SMS is at most 5 parts; anything near this is nonsense, not a message
# Unix seconds from 1970 to 9999-12-31: what `datetime` can represent.
_MAX_UNIX = 253_402_300_799

InboundKind = Literal["inbound", "unsubscribe"]
_KINDS: tuple[InboundKind, ...] = ("inbound", "unsubscribe")


class MobileMessageSignatureError(Exception):
    """The sender could not be proven to be MobileMessage. The message is safe to return to the caller."""


class MobileMessagePayloadError(Exception):
    """Authentic but unusable body. The message names the offending field, never its value."""


# --- signatures -------------------------------------------------------------------------------------


def sign(raw: bytes, timestamp: str, secret: bytes) -> str:
    """The `X-MM-Signature` MobileMessage sends for this body and timestamp (lowercase hex)."""
    return hmac.new(secret, timestamp.encode("ascii") + b"." + raw, hashlib.sha256).hexdigest()


def verify_signature(
    raw: bytes,
    timestamp: str | None,
    signature: str | None,
    secret: bytes,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check the two signature headers against the exact bytes received, in constant time.

    The timestamp is part of what is signed, so the tolerance window is what stops a captured webhook being
    replayed later; it applies both ways because a sender clock ahead of ours is as suspect as one behind.
    """
    if not secret:
        raise MobileMessageSignatureError("webhook secret is empty")
    if timestamp is None or not timestamp.strip():
        raise MobileMessageSignatureError(f"missing {TIMESTAMP_HEADER} header")
    if signature is None or not signature.strip():
        raise MobileMessageSignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise MobileMessageSignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds")
    current = time.time() if now is None else now
    skew = current - int(timestamp)
    if skew > tolerance:
        raise MobileMessageSignatureError(f"{TIMESTAMP_HEADER} is too old (more than {tolerance}s ago)")
    if -skew > tolerance:
        raise MobileMessageSignatureError(
            f"{TIMESTAMP_HEADER} is in the future (more than {tolerance}s ahead; check the server clock)"
        )
    given = signature.strip().lower()
    if not _HEX_DIGEST.fullmatch(given):
        raise MobileMessageSignatureError(f"{SIGNATURE_HEADER} is not a hex HMAC-SHA256 digest")
    expected = sign(raw, timestamp, secret)
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii")):
        raise MobileMessageSignatureError(f"{SIGNATURE_HEADER} does not match the body")


# --- inbound messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundSms:
    """A patient's reply (or a STOP the platform already processed) to one of our numbers."""

    to: str | None  # our number it was sent to (MobileMessage writes "61400000010")
    sender: str  # the patient's number
    message: str  # verbatim; may be empty only for `unsubscribe`
    received_at: datetime  # aware, UTC
    kind: InboundKind
    original_message_id: str | None  # the message of ours it answers, when MobileMessage knows
    original_custom_ref: str | None  # our `custom_ref` on that message

    @property
    def event_type(self) -> str:
        return f"sms.{self.kind}"

    @property
    def dedupe_key(self) -> str:
        """Inbound webhooks carry no id: a redelivery repeats these fields, a new reply changes one."""
        return _digest(
            [self.to, self.sender, self.received_at.isoformat(), self.message, self.original_message_id]
        )


def parse_inbound(raw: bytes) -> InboundSms:
    """Parse MobileMessage's inbound JSON, or the integration plan's simple `{from, to, message, timestamp}`.

    The real format is recognised by `sender`, the simple one by `from`. `received_at` is documented as UTC
    without a zone suffix, so a time without an offset is taken as UTC (in both formats).
    """
    document = _json_document(raw)
    if "sender" in document:
        sender_key, time_key = "sender", "received_at"
        kind = _kind(document.get("type"))
    elif "from" in document:
        sender_key, time_key = "from", "timestamp"
        kind = "inbound"
    else:
        raise MobileMessagePayloadError("sender missing")

    sender = _optional_text(document, sender_key)
    if sender is None:
        raise MobileMessagePayloadError(f"{sender_key} missing")
    message = document.get("message")
    if message is None and kind == "unsubscribe":
        message = ""
    if message is None:
        raise MobileMessagePayloadError("message missing")
    if not isinstance(message, str):
        raise MobileMessagePayloadError("message is not a string")
    _require_encodable(message, "message")
    if kind == "inbound" and not message.strip():
        raise MobileMessagePayloadError("message is empty")
    return InboundSms(
        to=_optional_text(document, "to"),
        sender=sender,
        message=message,
        received_at=_received_at(document, time_key),
        kind=kind,
        original_message_id=_optional_text(document, "original_message_id"),
        original_custom_ref=_optional_text(document, "original_custom_ref"),
    )


def _kind(value: object) -> InboundKind:
    if value is None:
        return "inbound"
    if not isinstance(value, str):
        raise MobileMessagePayloadError("type is not a string")
    kind = value.strip().lower()
    for known in _KINDS:
        if kind == known:
            return known
    raise MobileMessagePayloadError(f"type is not one of {', '.join(_KINDS)}")


# --- delivery receipts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryReceipt:
    """What happened to one part of one message we sent; a message of n parts gets at least n of these."""

    to: str | None  # the patient's number
    sender: str | None  # our sender id or number
    message: str | None  # the text we sent, when MobileMessage includes it
    custom_ref: str | None  # our `custom_ref` on the send
    status: str  # "sent" | "delivered" | "failed", or another provider word, lower-cased
    message_id: str  # MobileMessage's id for the message we sent
    received_at: datetime  # aware, UTC
    part_number: int = 1
    total_parts: int | None = None

    @property
    def event_type(self) -> str:
        return f"sms.status.{self.status}"

    @property
    def dedupe_key(self) -> str:
        """One receipt per (message, part, status): retries repeat it; a later status is a new event."""
        return _digest([self.message_id, self.part_number, self.status])


def parse_receipt(raw: bytes) -> DeliveryReceipt:
    """Parse one MobileMessage status update. The status word is kept (lower-cased) even when unknown, so a
    new provider status is recorded rather than refused; it must still fit the CRM's 16-character column."""
    document = _json_document(raw)
    message_id = _optional_text(document, "message_id")
    if message_id is None:
        raise MobileMessagePayloadError("message_id missing")
    if len(message_id) > _MAX_MESSAGE_ID:
        raise MobileMessagePayloadError(f"message_id is longer than {_MAX_MESSAGE_ID} characters")
    status_value = document.get("status")
    if status_value is None:
        raise MobileMessagePayloadError("status missing")
    if not isinstance(status_value, str):
        raise MobileMessagePayloadError("status is not a string")
    status = status_value.strip().lower()
    if not status:
        raise MobileMessagePayloadError("status missing")
    if not _STATUS.fullmatch(status):
        raise MobileMessagePayloadError("status is not a status word (letters, digits, _ or -; at most 16)")
    message = document.get("message")
    if message is not None:
        if not isinstance(message, str):
            raise MobileMessagePayloadError("message is not a string")
        _require_encodable(message, "message")
    part_number = _count(document, "part_number")
    return DeliveryReceipt(
        to=_optional_text(document, "to"),
        sender=_optional_text(document, "sender"),
        message=message,
        custom_ref=_optional_text(document, "custom_ref"),
        status=status,
        message_id=message_id,
        received_at=_received_at(document, "received_at"),
        part_number=1 if part_number is None else part_number,
        total_parts=_count(document, "total_parts"),
    )


# --- field helpers ----------------------------------------------------------------------------------


def _digest(fields: list[Any]) -> str:
    """sha256 over canonical JSON; ASCII escapes keep it total even for unpaired surrogates."""
    canonical = json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _json_document(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except _JSON_ERRORS:
        raise MobileMessagePayloadError("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise MobileMessagePayloadError("body is not a JSON object")
    return document


def _optional_text(document: dict[str, Any], key: str) -> str | None:
    """A string field, stripped; empty means absent (MobileMessage sends "" for unknown `original_*`).
    Integers are accepted as their digits, since numbers and ids are digits and JSON encoders differ."""
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise MobileMessagePayloadError(f"{key} is not a string")
    _require_encodable(value, key)
    return value.strip() or None


def _require_encodable(value: str, key: str) -> None:
    """JSON can spell unpaired surrogates: refuse them here rather than fail later in a flow's DB write."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MobileMessagePayloadError(f"{key} is not valid Unicode") from None


def _count(document: dict[str, Any], key: str) -> int | None:
    value = document.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MobileMessagePayloadError(f"{key} is not an integer")
    if not 1 <= value <= _MAX_PARTS:
        raise MobileMessagePayloadError(f"{key} is not between 1 and {_MAX_PARTS}")
    return value


def _received_at(document: dict[str, Any], key: str) -> datetime:
    """An instant in UTC from "YYYY-MM-DD HH:MM:SS" (UTC by MobileMessage's docs), ISO-8601 with or without an
    offset, or Unix seconds (a number or a string of digits)."""
    value = document.get(key)
    if value is None or value == "":
        raise MobileMessagePayloadError(f"{key} missing")
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool):
        raise MobileMessagePayloadError(f"{key} is not a time")
    if isinstance(value, int | float):
        if not (math.isfinite(value) and 0 <= value <= _MAX_UNIX):
            raise MobileMessagePayloadError(f"{key} is out of range")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, ValueError, OSError):
            raise MobileMessagePayloadError(f"{key} is out of range") from None
    if not isinstance(value, str):
        raise MobileMessagePayloadError(f"{key} is not a time")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MobileMessagePayloadError(f"{key} is not a YYYY-MM-DD HH:MM:SS or ISO-8601 time") from None
    if parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise MobileMessagePayloadError(f"{key} is out of range") from None
