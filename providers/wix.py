"""Wix Bookings webhooks: prove the sender, then turn the body into one typed `BookingEvent`.

Two formats arrive on the same endpoint. Real Wix Bookings v2 webhooks are a bare RS256 JWT whose claims nest
two more JSON-encoded layers (claims -> envelope -> domain event); the integration plan's simple JSON is
signed with an HMAC header. Everything past the signature check is parsed with explicit checks so that a bad
body is refused with a precise reason (the sender can fix it) and no input can surface as a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from jwt.api_jws import PyJWS
from jwt.utils import base64url_decode, base64url_encode

from models.enums import BookingStatus

V2_PREFIX = "wix.bookings.v2.booking_"
SIMPLE_PREFIX = "bookings/"
# Inbox rows written by reconciliation hold a booking as Wix's REST API returned it, not a webhook body.
REST_BOOKING_EVENT_TYPE = "wix.bookings-reader.v2.extended_booking"

# Wix stamps `iat` with its own clock and PyJWT refuses an `iat` in the future, so a clinic server a few
# seconds behind Wix would reject every webhook without some tolerance. A minute is far below the 5-minute
# token lifetime, so expired tokens are still refused.
CLOCK_SKEW_SECONDS = 60

_JSON_ERRORS = (ValueError, RecursionError)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
_INT64_MAX = 2**63 - 1  # Wix's revision is an int64; the CRM stores it as one


class WixSignatureError(Exception):
    """The sender could not be proven to be Wix (or us). The message is safe to return to the caller."""


class WixInstanceError(Exception):
    """Signed by Wix but for another site: the app's key signs the webhooks of every site using the app."""


class WixPayloadError(Exception):
    """Authentic but unusable body. The message names the offending field, never its value."""


class BookingAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    CANCELED = "canceled"
    RESCHEDULED = "rescheduled"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    RECONCILED = "reconciled"  # found by reading Wix's API (`wix-reconcile`), no webhook seen


@dataclass(frozen=True)
class WixContactDetails:
    contact_id: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    country_code: str | None


@dataclass(frozen=True)
class WixBooking:
    booking_id: str
    revision: int | None  # None only for simple-format events that carry no revision
    status: BookingStatus
    start_at: datetime  # aware, UTC
    end_at: datetime | None  # aware, UTC
    timezone: str | None  # IANA zone of the slot, when Wix says
    service_name: str | None
    location: str | None
    contact: WixContactDetails


@dataclass(frozen=True)
class BookingEvent:
    dedupe_key: str
    event_type: str
    action: BookingAction
    instance_id: str | None
    event_time: datetime | None
    booking: WixBooking
    previous_start_at: datetime | None


# Wix event-type suffix -> what happened. Pending and participant-count changes carry no meaning of their own
# for the CRM beyond the booking's new state.
_V2_ACTIONS = {
    "created": BookingAction.CREATED,
    "updated": BookingAction.UPDATED,
    "canceled": BookingAction.CANCELED,
    "rescheduled": BookingAction.RESCHEDULED,
    "confirmed": BookingAction.CONFIRMED,
    "declined": BookingAction.DECLINED,
    "markedAsPending": BookingAction.UPDATED,
    "number_of_participants_updated": BookingAction.UPDATED,
}

_SIMPLE_ACTIONS = {
    "bookings/created": BookingAction.CREATED,
    "bookings/updated": BookingAction.UPDATED,
    "bookings/cancelled": BookingAction.CANCELED,
}

# Where each DomainEvent container keeps the booking: (container, object key, JSON-string key).
_CONTAINERS = (
    ("createdEvent", "entity", "entityAsJson"),
    ("updatedEvent", "currentEntity", "currentEntityAsJson"),
    ("actionEvent", "body", "bodyAsJson"),
    ("deletedEvent", "deletedEntity", "deletedEntityAsJson"),
)


# --- signatures -------------------------------------------------------------------------------------


_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")


class _JWS(PyJWS):
    """PyJWS with its base64url segment check done by one regex instead of a Python-level loop per byte.

    PyJWT refuses any segment byte outside the base64url alphabet (GHSA-hxm8-2xgr-2p9m) with
    `any(c not in ALPHABET for c in segment)`: on a 4 KB Wix token that loop cost ~150 µs, six times the RSA
    check itself. The rules below are PyJWT 2.x's, in its order and with its messages (the test suite
    compares the two on edge cases); everything else — header, `alg` allow-list, signature, claims — is
    PyJWT's own code.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if padding > 2 or (padding and len(segment) % 4 != 0):
            raise jwt.DecodeError(f"Invalid {name} padding")
        if len(stripped) % 4 == 1 or _BASE64URL.fullmatch(stripped) is None:
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64url_decode(stripped)
        except (TypeError, binascii.Error) as err:
            raise jwt.DecodeError(f"Invalid {name} padding") from err
        if base64url_encode(decoded) != stripped:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


class _JWT(jwt.PyJWT):
    def __init__(self) -> None:
        super().__init__()
        self._jws = _JWS(options=self._get_sig_options())


# One decoder for the process: PyJWT's checks with the fast segment check above.
_DECODER = _JWT()


def verify_jwt(raw: bytes, public_key: str) -> dict[str, Any]:
    """Verify the whole body as Wix's RS256 JWT and return its claims.

    The algorithm is pinned to RS256, so `alg: none` and HS256 tokens (including HS256 keyed with our own
    public PEM, the classic confusion attack) are refused before any key is used.
    """
    key = _load_public_key(public_key)
    token = _token_text(raw)
    try:
        return _DECODER.decode(
            token,
            key,
            algorithms=["RS256"],
            # As @wix/sdk does for webhooks: signature and exp only; a stray `aud` must not refuse the token.
            options={"require": ["exp"], "verify_aud": False},
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise WixSignatureError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise WixSignatureError("token not yet valid (check the server clock)") from None
    except jwt.InvalidAlgorithmError:
        raise WixSignatureError("token algorithm not allowed; RS256 required") from None
    except jwt.InvalidSignatureError:
        raise WixSignatureError("token signature does not match WIX_PUBLIC_KEY") from None
    except jwt.MissingRequiredClaimError as exc:
        raise WixSignatureError(f"token lacks the {exc.claim} claim") from None
    except jwt.DecodeError:
        raise WixSignatureError("body is not a well-formed JWT") from None
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise WixSignatureError(f"token rejected ({type(exc).__name__})") from None


def check_instance(claims: dict[str, Any], *, instance_id: str | None, site_id: str | None) -> None:
    """Refuse verified claims for another app instance (`WIX_INSTANCE_ID`) or site (`WIX_SITE_ID`), when set.

    Missing counts as different: a check that is configured is never skipped.
    """
    if not instance_id and not site_id:
        return
    envelope = _json_object(claims.get("data"), "claims.data")
    if instance_id and envelope.get("instanceId") != instance_id:
        raise WixInstanceError("envelope.instanceId is not this clinic's (WIX_INSTANCE_ID)")
    account = envelope.get("accountInfo")
    if site_id and (account.get("siteId") if isinstance(account, dict) else None) != site_id:
        raise WixInstanceError("envelope.accountInfo.siteId is not this clinic's (WIX_SITE_ID)")


def verify_hmac(raw: bytes, signature_header: str | None, secret: bytes) -> None:
    """Check `X-Wix-Webhook-Signature` against HMAC-SHA256 of the exact bytes received, in constant time."""
    if not secret:
        raise WixSignatureError("HMAC secret is empty")
    if not signature_header or not signature_header.strip():
        raise WixSignatureError("missing X-Wix-Webhook-Signature header")
    given = signature_header.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:].strip()
    given = given.lower()
    if len(given) != 64 or not all(c in "0123456789abcdef" for c in given):
        raise WixSignatureError("signature is not a hex HMAC-SHA256 digest")
    expected = hmac.new(secret, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise WixSignatureError("signature does not match the body")


def _token_text(raw: bytes) -> str:
    """The body as compact-JWT text, whatever Content-Type claimed; JWTs are pure ASCII."""
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise WixSignatureError("body is not a JWT") from None
    if token.count(".") != 2:
        raise WixSignatureError("body is not a JWT")
    return token


_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


@lru_cache(maxsize=8)
def _load_public_key(public_key: str) -> RSAPublicKey:
    """Read WIX_PUBLIC_KEY however the environment mangled it.

    Accepts a normal PEM; a PEM whose newlines became literal "\\n" or spaces (common in env vars and
    dashboards); a single-line base64 of the PEM (what @wix/sdk's parsePublicKeyIfEncoded accepts); or bare
    base64 DER.
    """
    text = public_key.strip().replace("\\n", "\n").replace("\\r", "")
    try:
        if "-----BEGIN" not in text:
            decoded = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
            if not decoded.lstrip().startswith(b"-----BEGIN"):
                return _require_rsa(load_der_public_key(decoded))
            text = decoded.decode("ascii")
        match = _PEM.search(text)
        if match is None:
            raise ValueError("no PEM block")
        body = re.sub(r"\s+", "", match.group(2))
        lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        pem = f"-----BEGIN {match.group(1)}-----\n{lines}\n-----END {match.group(1)}-----\n"
        return _require_rsa(load_pem_public_key(pem.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        raise WixSignatureError("WIX_PUBLIC_KEY is not a readable public key") from None


def _require_rsa(key: object) -> RSAPublicKey:
    if not isinstance(key, RSAPublicKey):
        raise WixSignatureError("WIX_PUBLIC_KEY is not an RSA public key")
    return key


# --- Wix Bookings v2 ----------------------------------------------------------------------------------


def parse_envelope(claims: dict[str, Any]) -> BookingEvent | None:
    """Unwrap verified JWT claims into a booking event; None for other Wix events, which are acknowledged.

    Unknown `booking_*` event types are also None: guessing what a new Wix event means is worse than skipping
    it, and booking state is carried in full by the next known event (ordered by revision).
    """
    if not isinstance(claims, dict):
        raise WixPayloadError("claims are not an object")
    envelope = _json_object(claims.get("data"), "claims.data")
    event_type = envelope.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise WixPayloadError("envelope.eventType missing")
    if not event_type.startswith(V2_PREFIX):
        return None
    action = _V2_ACTIONS.get(event_type.removeprefix(V2_PREFIX))
    if action is None:
        return None

    event = _json_object(envelope.get("data"), "envelope.data")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise WixPayloadError("event.id missing")
    entity, body = _booking_entity(event)
    instance_id = envelope.get("instanceId")
    return BookingEvent(
        dedupe_key=event_id,
        event_type=event_type,
        action=action,
        instance_id=instance_id if isinstance(instance_id, str) and instance_id else None,
        event_time=_optional_time(event, "eventTime", "event.eventTime"),
        booking=_v2_booking(entity, fallback_id=event.get("entityId")),
        previous_start_at=_optional_time(body, "previousStartDate", "actionEvent.body.previousStartDate"),
    )


def _booking_entity(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The booking object and, for action events, the body around it (which holds the `previous*` fields)."""
    for container_key, object_key, json_key in _CONTAINERS:
        container = event.get(container_key)
        if container is None:
            continue
        container = _json_object(container, f"event.{container_key}")
        where = f"event.{container_key}.{object_key}"
        if container.get(object_key) is not None:
            found = _json_object(container[object_key], where)
        elif container.get(json_key) is not None:
            found = _json_object(container[json_key], f"event.{container_key}.{json_key}")
        else:
            raise WixPayloadError(f"{where} missing")
        if container_key != "actionEvent":
            return found, {}
        return _json_object(found.get("booking"), f"{where}.booking"), found
    raise WixPayloadError("event has no createdEvent, updatedEvent, actionEvent or deletedEvent")


def _v2_booking(entity: dict[str, Any], fallback_id: object) -> WixBooking:
    booking_id = entity.get("id", fallback_id)
    if not isinstance(booking_id, str) or not booking_id.strip():
        raise WixPayloadError("booking.id missing")

    booked = _optional_object(entity, "bookedEntity", "booking.bookedEntity")
    slot = _optional_object(booked, "slot", "booking.bookedEntity.slot")
    location = _optional_object(slot, "location", "booking.bookedEntity.slot.location")

    if entity.get("startDate") is not None:
        start_at = _time(entity["startDate"], "booking.startDate")
    elif slot.get("startDate") is not None:
        start_at = _time(slot["startDate"], "booking.bookedEntity.slot.startDate")
    else:
        raise WixPayloadError("booking.startDate missing")
    end_at = _optional_time(entity, "endDate", "booking.endDate") or _optional_time(
        slot, "endDate", "booking.bookedEntity.slot.endDate"
    )

    details = _optional_object(entity, "contactDetails", "booking.contactDetails")
    contact = WixContactDetails(
        *(
            _optional_str(details, key, f"booking.contactDetails.{key}")
            for key in ("contactId", "firstName", "lastName", "email", "phone", "countryCode")
        )
    )
    return WixBooking(
        booking_id=booking_id,
        revision=_revision(entity.get("revision"), "booking.revision", required=True),
        status=_status(entity.get("status"), "booking.status", default=None),
        start_at=start_at,
        end_at=end_at,
        timezone=_iana_zone(slot.get("timezone")),
        service_name=_optional_str(booked, "title", "booking.bookedEntity.title"),
        location=_optional_str(location, "name", "booking.bookedEntity.slot.location.name")
        or _optional_str(location, "formattedAddress", "booking.bookedEntity.slot.location.formattedAddress"),
        contact=contact,
    )


# --- the integration plan's simple JSON -----------------------------------------------------------------


def parse_simple(raw: bytes) -> BookingEvent:
    """Parse the HMAC-signed JSON. It has no event id, so the body's hash is what marks a resend."""
    try:
        document = json.loads(raw)
    except _JSON_ERRORS:
        raise WixPayloadError("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise WixPayloadError("body is not a JSON object")
    event_type = document.get("event")
    if not isinstance(event_type, str) or not event_type:
        raise WixPayloadError("event missing")
    action = _SIMPLE_ACTIONS.get(event_type)
    if action is None:
        raise WixPayloadError(f"event {_short(event_type)} is not one of {', '.join(_SIMPLE_ACTIONS)}")
    data = _json_object(document.get("data"), "data")

    booking_id = data.get("booking_id")
    if isinstance(booking_id, int) and not isinstance(booking_id, bool):
        booking_id = str(booking_id)
    if not isinstance(booking_id, str) or not booking_id.strip():
        raise WixPayloadError("data.booking_id missing")
    customer = _json_object(data.get("customer"), "data.customer")
    first_name, last_name = _split_name(_optional_str(customer, "name", "data.customer.name"))
    for key in ("start_time", "end_time"):
        if data.get(key) is None:
            raise WixPayloadError(f"data.{key} missing")

    if action is BookingAction.CANCELED:
        status = _status(data.get("status"), "data.status", default=BookingStatus.CANCELED)
        if status is not BookingStatus.CANCELED:
            raise WixPayloadError(f"data.status {status.value} contradicts event bookings/cancelled")
    else:
        status = _status(data.get("status"), "data.status", default=BookingStatus.CONFIRMED)

    booking = WixBooking(
        booking_id=booking_id.strip(),
        revision=_revision(data.get("revision"), "data.revision", required=False),
        status=status,
        start_at=_time(data["start_time"], "data.start_time"),
        end_at=_time(data["end_time"], "data.end_time"),
        timezone=None,
        service_name=_optional_str(data, "service", "data.service"),
        location=_optional_str(data, "location", "data.location"),
        contact=WixContactDetails(
            contact_id=None,
            first_name=first_name,
            last_name=last_name,
            email=_optional_str(customer, "email", "data.customer.email"),
            phone=_optional_str(customer, "phone", "data.customer.phone"),
            country_code=None,
        ),
    )
    return BookingEvent(
        dedupe_key=hashlib.sha256(raw).hexdigest(),
        event_type=event_type,
        action=action,
        instance_id=None,
        event_time=None,
        booking=booking,
        previous_start_at=None,
    )


def _split_name(full_name: str | None) -> tuple[str | None, str | None]:
    """The plan sends one full name: the first word is taken as the given name, the rest as the family."""
    if not full_name:
        return None, None
    parts = full_name.split(maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else None


# --- bookings read from Wix's REST API -----------------------------------------------------------------


def parse_rest_booking(raw: bytes) -> BookingEvent:
    """A booking object as Query Extended Bookings returns it (`extendedBookings[].booking`).

    It is the same Booking V2 object a webhook carries, so it is read by the same code; its dedupe key is
    `<booking id>:rev<revision>`, so one revision is fed to booking intake at most once by reconciliation.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WixPayloadError("booking is not UTF-8 JSON") from None
    entity = _json_object(text, "booking")
    booking = _v2_booking(entity, fallback_id=None)
    return BookingEvent(
        dedupe_key=f"{booking.booking_id}:rev{booking.revision}",
        event_type=REST_BOOKING_EVENT_TYPE,
        action=BookingAction.RECONCILED,
        instance_id=None,
        event_time=_optional_time(entity, "updatedDate", "booking.updatedDate"),
        booking=booking,
        previous_start_at=None,
    )


# --- stored events ------------------------------------------------------------------------------------


def action_for(event_type: str) -> BookingAction | None:
    """What an event type says happened, read from the type alone (the dispatcher names runs with it)."""
    if event_type == REST_BOOKING_EVENT_TYPE:
        return BookingAction.RECONCILED
    if event_type.startswith(V2_PREFIX):
        return _V2_ACTIONS.get(event_type.removeprefix(V2_PREFIX))
    return _SIMPLE_ACTIONS.get(event_type)


def decode_stored(raw: bytes, event_type: str) -> BookingEvent | None:
    """Re-parse a body the gateway verified when it arrived.

    The signature was checked at the door; the JWT's 5-minute `exp` will long have passed by the time a
    retried flow runs, so neither is checked again here.
    """
    if event_type.startswith(SIMPLE_PREFIX):
        return parse_simple(raw)
    if event_type == REST_BOOKING_EVENT_TYPE:
        return parse_rest_booking(raw)
    try:
        claims = _DECODER.decode(raw.strip(), options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
        raise WixPayloadError("stored body is not a decodable JWT") from None
    return parse_envelope(claims)


# --- field helpers ---------------------------------------------------------------------------------------


def _json_object(value: object, where: str) -> dict[str, Any]:
    """Wix nests JSON documents as strings (and sometimes as objects); accept both, insist on an object."""
    if value is None:
        raise WixPayloadError(f"{where} missing")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except _JSON_ERRORS:
            raise WixPayloadError(f"{where} is not valid JSON") from None
    if not isinstance(value, dict):
        raise WixPayloadError(f"{where} is not an object")
    return value


def _optional_object(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WixPayloadError(f"{where} is not an object")
    return value


def _optional_str(parent: dict[str, Any], key: str, where: str) -> str | None:
    """Empty strings count as absent: proto3 JSON and hand-written payloads disagree on how to say 'none'."""
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WixPayloadError(f"{where} is not a string")
    return value.strip() or None


def _time(value: object, where: str) -> datetime:
    """An instant, in UTC. A time without an offset is refused: guessing the zone would move appointments."""
    if not isinstance(value, str):
        raise WixPayloadError(f"{where} is not an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WixPayloadError(f"{where} is not an ISO-8601 time") from None
    if parsed.utcoffset() is None:
        raise WixPayloadError(f"{where} has no UTC offset; refusing to guess its timezone")
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise WixPayloadError(f"{where} is out of range") from None


def _optional_time(parent: dict[str, Any], key: str, where: str) -> datetime | None:
    value = parent.get(key)
    return None if value is None else _time(value, where)


def _revision(value: object, where: str, *, required: bool) -> int | None:
    """Wix sends the int64 revision as a string; it orders events, so a bad one must not be guessed."""
    if value is None:
        if required:
            raise WixPayloadError(f"{where} missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise WixPayloadError(f"{where} is not an integer")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise WixPayloadError(f"{where} is not an integer")
        value = int(text)
    if not 0 <= value <= _INT64_MAX:
        raise WixPayloadError(f"{where} is out of range")
    return value


def _status(value: object, where: str, *, default: BookingStatus | None) -> BookingStatus:
    if value is None:
        if default is None:
            raise WixPayloadError(f"{where} missing")
        return default
    if not isinstance(value, str):
        raise WixPayloadError(f"{where} is not a string")
    try:
        return BookingStatus(value.strip().upper())
    except ValueError:
        raise WixPayloadError(f"{where} {_short(value)} is not a known booking status") from None


def _iana_zone(value: object) -> str | None:
    """Only display depends on the zone, so an unknown one is dropped (callers fall back to the clinic's)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return value


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
