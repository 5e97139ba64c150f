"""Wix's side of a booking webhook: signs events exactly as Wix Bookings v2 does, plus the simple HMAC JSON.

Wix has no sandbox that sends webhooks, so `avatar-crm demo` (and the tests) sign the real three-layer
envelope (claims -> envelope -> DomainEvent, the inner two JSON-encoded as strings) with a key pair of our
own whose public half the gateway is configured with. Shapes and field names follow Wix's Bookings v2
webhook reference; ids and values are illustrative. A product module (the demo uses it), so it imports
nothing from the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_BOOKING_ID = "4d5088e6-7cd4-40cf-8009-92ad4532965e"
DEFAULT_INSTANCE_ID = "6f1a2c34-8d9e-4b7a-9c1d-2e3f4a5b6c7d"
DEFAULT_CONTACT_ID = "0b8e7d3a-1111-4222-8333-444455556666"
DEFAULT_START = datetime(2026, 3, 3, 9, 0, tzinfo=ZoneInfo("Australia/Brisbane"))
WIX_BOOKINGS_APP_ID = "13d21c63-b5ec-5912-8397-c3a5ddb27a97"
WIX_KEY_ID = "qG1kD2dz"  # the `kid` in Wix's sample token header
STAFF_USER_ID = "5fa50f19-4c94-4c42-a72b-289505ba2028"

_ADDRESSES = {
    "Bondi Junction": "Shop 3, 500 Oxford St, Bondi Junction NSW 2022",
    "Brisbane CBD": "Level 2, 240 Queen St, Brisbane City QLD 4000",
}


class WixKeys:
    """An app key pair: Wix holds the private half; the clinic configures `public_pem` as WIX_PUBLIC_KEY."""

    def __init__(self, private_key: rsa.RSAPrivateKey | None = None) -> None:
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem: str = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_pem: str = (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    @classmethod
    def from_private_pem(cls, pem: bytes | str) -> WixKeys:
        """Reuse a stored key (the demo's), so its public half can stay configured in the gateway."""
        key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        return cls(key)

    @property
    def public_pem_base64(self) -> str:
        """The single-line form @wix/sdk also accepts: base64 of the whole PEM."""
        return base64.b64encode(self.public_pem.encode()).decode()

    @property
    def public_pem_escaped(self) -> str:
        """The PEM as env files often carry it: one line with literal backslash-n sequences."""
        return self.public_pem.replace("\n", "\\n")


def wix_time(moment: datetime) -> str:
    """Wix's top-level timestamps: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_time(moment: datetime, timezone: str) -> str:
    """Slot timestamps: wall-clock time in the slot's zone, with its offset."""
    return moment.astimezone(ZoneInfo(timezone)).isoformat(timespec="milliseconds")


def booking_payload(
    booking_id: str = DEFAULT_BOOKING_ID,
    revision: int = 1,
    status: str = "CONFIRMED",
    start: datetime = DEFAULT_START,
    minutes: int = 30,
    service: str | None = "MRI – Knee",
    location: str | None = "Bondi Junction",
    first_name: str | None = "Alex",
    last_name: str | None = "Nguyen",
    email: str | None = "alex@example.com",
    phone: str | None = "+61412345678",
    timezone: str = "Australia/Brisbane",
    *,
    contact_id: str | None = DEFAULT_CONTACT_ID,
    country_code: str | None = "AU",
    created: datetime | None = None,
) -> dict[str, Any]:
    """A v2 booking object as it appears on the wire. `None` leaves a field out, as proto3 JSON does."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    end = start + timedelta(minutes=minutes)
    created = created or start - timedelta(days=2)
    updated = created + timedelta(minutes=revision - 1)
    slot: dict[str, Any] = {
        "serviceId": "9bf5cd2d-32fa-4ee7-952c-5e4b6de14714",
        "scheduleId": "5c32d307-1e48-489d-899e-bcfc92c9ffec",
        "eventId": "65a5776e-37f1-45f7-8e4c-f22d01b23254",
        "startDate": local_time(start, timezone),
        "endDate": local_time(end, timezone),
        "timezone": timezone,
        "resource": {
            "id": STAFF_USER_ID,
            "name": "Dr Tom Jones",
            "email": "tom@clinic.example",
            "scheduleId": "a4166c1f-728c-4895-8a6e-1942bb321315",
        },
    }
    if location is not None:
        slot["location"] = {
            "id": "9de094d5-8985-484e-9218-d020d9d17953",
            "name": location,
            "formattedAddress": _ADDRESSES.get(location, f"1 Example St, {location}"),
            "locationType": "OWNER_BUSINESS",
        }
    booked_entity: dict[str, Any] = {"slot": slot, "tags": ["INDIVIDUAL"]}
    if service is not None:
        booked_entity["title"] = service
    contact = {
        "contactId": contact_id,
        "firstName": first_name,
        "lastName": last_name,
        "email": email,
        "phone": phone,
        "countryCode": country_code,
    }
    return {
        "id": booking_id,
        "bookedEntity": booked_entity,
        "contactDetails": {k: v for k, v in contact.items() if v is not None},
        "status": status,
        "paymentStatus": "NOT_PAID",
        "selectedPaymentOption": "OFFLINE",
        "createdDate": wix_time(created),
        "updatedDate": wix_time(updated),
        "startDate": wix_time(start),
        "endDate": wix_time(end),
        "revision": str(revision),
        "totalParticipants": 1,
        "createdBy": {"anonymousVisitorId": "a1b2c3d4-0000-4000-8000-000000000001", "contactId": contact_id},
        "doubleBooked": False,
        "appId": WIX_BOOKINGS_APP_ID,
        "createdByAppId": WIX_BOOKINGS_APP_ID,
    }


def _action_extras(slug: str, booking: dict[str, Any], previous_start: datetime | None) -> dict[str, Any]:
    """The fields Wix puts beside `booking` in each action event's body."""
    by_staff = {"wixUserId": STAFF_USER_ID}
    notify = {"notifyParticipants": True}
    if slug == "canceled":
        return {
            "participantNotification": notify,
            "flowControlSettings": {
                "ignoreCancellationPolicy": False,
                "withRefund": False,
                "waiveCancellationFee": False,
            },
            "initiatedBy": by_staff,
            "previousStatus": "CONFIRMED",
        }
    if slug == "rescheduled":
        extras: dict[str, Any] = {
            "previousStatus": booking.get("status", "CONFIRMED"),
            "previousTotalParticipants": booking.get("totalParticipants", 1),
            "participantNotification": notify,
            "flowControlSettings": {"ignorePolicies": False, "ignoreAvailability": False},
            "initiatedBy": by_staff,
        }
        if previous_start is not None:
            start = datetime.fromisoformat(booking["startDate"])
            end = datetime.fromisoformat(booking["endDate"])
            previous_end = previous_start + (end - start)
            previous_entity = json.loads(json.dumps(booking.get("bookedEntity", {})))
            slot = previous_entity.get("slot", {})
            zone = slot.get("timezone", "UTC")
            slot.update(startDate=local_time(previous_start, zone), endDate=local_time(previous_end, zone))
            extras |= {
                "previousStartDate": wix_time(previous_start),
                "previousEndDate": wix_time(previous_end),
                "previousBookedEntity": previous_entity,
            }
        return extras
    if slug == "confirmed":
        return {
            "previousStatus": "PENDING",
            "previousPaymentStatus": "NOT_PAID",
            "doubleBooked": False,
            "sendSmsReminder": True,
        }
    if slug == "declined":
        return {"previousStatus": "PENDING", "previousPaymentStatus": "NOT_PAID", "doubleBooked": False}
    if slug == "number_of_participants_updated":
        return {"previousTotalParticipants": 1}
    return {}


def wix_event(
    event_type: str,
    booking: dict[str, Any],
    *,
    event_id: str | None = None,
    as_json_strings: bool = False,
    previous_start: datetime | None = None,
    event_time: datetime | None = None,
    modified_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The inner DomainEvent, with the booking in the container Wix uses for `event_type`.

    `as_json_strings` uses the proto names (`entityAsJson`, `bodyAsJson`, ...) with JSON-string values instead
    of the object forms the SDK and docs show; receivers must accept both.
    """
    entity_fqdn, _, last = event_type.rpartition(".")
    entity_name, _, slug = last.partition("_")
    event: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "entityFqdn": f"{entity_fqdn}.{entity_name}",
        "slug": slug,
        "entityId": booking.get("id"),
        "eventTime": wix_time(event_time or datetime.now(UTC)),
        "triggeredByAnonymizeRequest": False,
    }

    def wrap(key: str, value: dict[str, Any]) -> dict[str, Any]:
        return {f"{key}AsJson": json.dumps(value)} if as_json_strings else {key: value}

    if slug == "created":
        event["createdEvent"] = wrap("entity", booking)
    elif slug == "updated":
        event["updatedEvent"] = wrap("currentEntity", booking)
        if modified_fields is not None:
            event["updatedEvent"]["modifiedFields"] = modified_fields
    elif slug == "deleted":
        event["deletedEvent"] = wrap("deletedEntity", booking)
    else:
        body = {"booking": booking, **_action_extras(slug, booking, previous_start)}
        event["actionEvent"] = wrap("body", body)
    return event


def sign_wix_jwt(
    keys: WixKeys,
    inner_event: dict[str, Any],
    event_type: str,
    *,
    instance_id: str = DEFAULT_INSTANCE_ID,
    site_id: str | None = DEFAULT_INSTANCE_ID,  # None: no `accountInfo.siteId` at all
    exp_seconds: int = 300,
    iat: int | None = None,
    identity: dict[str, Any] | None = None,
) -> bytes:
    """The webhook body Wix would POST: the envelope JSON-encoded into `data`, signed RS256 by the app key."""
    issued = int(time.time()) if iat is None else iat
    envelope = {
        "eventType": event_type,
        "instanceId": instance_id,
        "data": json.dumps(inner_event),
        "identity": json.dumps(identity or {"identityType": "WIX_USER", "wixUserId": STAFF_USER_ID}),
        "accountInfo": {"accountId": str(uuid.UUID(int=1))} | ({"siteId": site_id} if site_id else {}),
    }
    claims = {"data": json.dumps(envelope), "iat": issued, "exp": issued + exp_seconds}
    token = jwt.encode(claims, keys.private_key, algorithm="RS256", headers={"kid": WIX_KEY_ID, "typ": None})
    return token.encode()


def simple_event(
    event: str,
    booking_id: str = DEFAULT_BOOKING_ID,
    *,
    service: str | None = "MRI – Knee",
    name: str | None = "Alex Nguyen",
    email: str | None = "alex@example.com",
    phone: str | None = "+61412345678",
    start: datetime = DEFAULT_START,
    minutes: int = 30,
    location: str | None = "Bondi Junction",
    revision: int | None = None,
    status: str | None = None,
) -> bytes:
    """The integration plan's JSON body (`bookings/created|updated|cancelled`), times with their offset."""
    data: dict[str, Any] = {
        "booking_id": booking_id,
        "service": service,
        "customer": {"name": name, "email": email, "phone": phone},
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(minutes=minutes)).isoformat(),
        "location": location,
    }
    if revision is not None:
        data["revision"] = revision
    if status is not None:
        data["status"] = status
    return json.dumps({"event": event, "data": data}, ensure_ascii=False).encode()


def sign_hmac(body: bytes, secret: bytes, prefix: bool = True) -> str:
    """The `X-Wix-Webhook-Signature` value for `body`."""
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return f"sha256={digest}" if prefix else digest
