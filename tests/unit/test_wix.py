"""providers.wix against bodies signed the way Wix (and the integration plan) sign them.

The gateway must answer 401 for anything not provably from Wix, 400 with a reason for anything authentic but
unusable, and never 500; the property tests at the end hold it to the last part.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.enums import BookingStatus
from providers.wix import (
    BookingAction,
    BookingEvent,
    WixPayloadError,
    WixSignatureError,
    decode_stored,
    parse_envelope,
    parse_simple,
    verify_hmac,
    verify_jwt,
)
from providers.wix_simulator import (
    DEFAULT_BOOKING_ID,
    DEFAULT_CONTACT_ID,
    DEFAULT_INSTANCE_ID,
    DEFAULT_START,
    WixKeys,
    booking_payload,
    sign_hmac,
    sign_wix_jwt,
    simple_event,
    wix_event,
)

CREATED = "wix.bookings.v2.booking_created"
UPDATED = "wix.bookings.v2.booking_updated"
CANCELED = "wix.bookings.v2.booking_canceled"
RESCHEDULED = "wix.bookings.v2.booking_rescheduled"
CONFIRMED = "wix.bookings.v2.booking_confirmed"
DECLINED = "wix.bookings.v2.booking_declined"
PENDING = "wix.bookings.v2.booking_markedAsPending"
PARTICIPANTS = "wix.bookings.v2.booking_number_of_participants_updated"
SECRET = b"wix-hmac-test-secret"

# DEFAULT_START is 09:00 in Brisbane (UTC+10, no DST).
START_UTC = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys() -> WixKeys:
    return WixKeys()


@pytest.fixture(scope="module")
def other_keys() -> WixKeys:
    return WixKeys()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> bytes:
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}".encode()


def fresh_claims(data: str = "{}") -> dict[str, Any]:
    now = int(time.time())
    return {"data": data, "iat": now, "exp": now + 300}


def claims_for(inner: Any, event_type: str = CREATED, **envelope: Any) -> dict[str, Any]:
    """Claims as verify_jwt returns them, built directly so malformed layers can be expressed."""
    middle = {
        "eventType": event_type,
        "instanceId": DEFAULT_INSTANCE_ID,
        "data": inner if isinstance(inner, str) else json.dumps(inner),
        "identity": json.dumps({"identityType": "ANONYMOUS_VISITOR", "anonymousVisitorId": "a1"}),
        **envelope,
    }
    return fresh_claims(json.dumps(middle))


def roundtrip(keys: WixKeys, event_type: str, booking: dict[str, Any], **event_kwargs: Any) -> BookingEvent:
    inner = wix_event(event_type, booking, **event_kwargs)
    event = parse_envelope(verify_jwt(sign_wix_jwt(keys, inner, event_type), keys.public_pem))
    assert event is not None
    return event


# --- JWT verification -----------------------------------------------------------------------------------


def test_valid_token_yields_the_three_layer_claims(keys: WixKeys) -> None:
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload(), event_id="evt-1"), CREATED)

    claims = verify_jwt(token, keys.public_pem)

    assert set(claims) == {"data", "iat", "exp"}
    middle = json.loads(claims["data"])
    assert middle["eventType"] == CREATED
    assert middle["instanceId"] == DEFAULT_INSTANCE_ID
    assert isinstance(middle["identity"], str)
    assert json.loads(middle["data"])["id"] == "evt-1"


def test_expired_token_is_rejected(keys: WixKeys) -> None:
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED, iat=int(time.time()) - 3600)

    with pytest.raises(WixSignatureError, match="expired"):
        verify_jwt(token, keys.public_pem)


def test_keys_reloaded_from_their_private_pem_verify_the_same_tokens(keys: WixKeys) -> None:
    reloaded = WixKeys.from_private_pem(keys.private_pem.encode())
    token = sign_wix_jwt(reloaded, wix_event(CREATED, booking_payload()), CREATED)

    assert reloaded.public_pem == keys.public_pem
    assert verify_jwt(token, keys.public_pem)["data"]


def test_small_clock_skew_is_tolerated(keys: WixKeys) -> None:
    """Wix's clock a few seconds ahead of ours must not turn `iat` into 'not yet valid'."""
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED, iat=int(time.time()) + 20)

    assert verify_jwt(token, keys.public_pem)["data"]


def test_token_without_exp_is_rejected(keys: WixKeys) -> None:
    token = jwt.encode({"data": "{}", "iat": int(time.time())}, keys.private_pem, algorithm="RS256")

    with pytest.raises(WixSignatureError, match="exp"):
        verify_jwt(token.encode(), keys.public_pem)


def test_tampered_payload_is_rejected(keys: WixKeys) -> None:
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload(revision=1)), CREATED)
    head, payload, signature = token.split(b".")
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    middle = json.loads(claims["data"])
    inner = json.loads(middle["data"])
    inner["createdEvent"]["entity"]["revision"] = "99"
    middle["data"] = json.dumps(inner)
    claims["data"] = json.dumps(middle)
    forged = b".".join([head, b64url(json.dumps(claims).encode()).encode(), signature])

    with pytest.raises(WixSignatureError, match="signature does not match"):
        verify_jwt(forged, keys.public_pem)


def test_tampered_signature_is_rejected(keys: WixKeys) -> None:
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED)
    head, payload, signature = token.split(b".")
    raw_signature = bytearray(base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)))
    raw_signature[100] ^= 0x01
    forged = b".".join([head, payload, b64url(bytes(raw_signature)).encode()])

    with pytest.raises(WixSignatureError, match="signature"):
        verify_jwt(forged, keys.public_pem)


def test_token_signed_by_another_key_is_rejected(keys: WixKeys, other_keys: WixKeys) -> None:
    token = sign_wix_jwt(other_keys, wix_event(CREATED, booking_payload()), CREATED)

    with pytest.raises(WixSignatureError, match="does not match"):
        verify_jwt(token, keys.public_pem)


def test_alg_none_is_rejected(keys: WixKeys) -> None:
    token = unsigned_token({"alg": "none", "typ": "JWT"}, fresh_claims())

    with pytest.raises(WixSignatureError, match="RS256 required"):
        verify_jwt(token, keys.public_pem)


def _hs256(claims: dict[str, Any], secret: bytes) -> bytes:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(signature)}".encode()


def test_hs256_with_a_random_secret_is_rejected(keys: WixKeys) -> None:
    with pytest.raises(WixSignatureError, match="RS256 required"):
        verify_jwt(_hs256(fresh_claims(), b"some-random-secret"), keys.public_pem)


def test_hs256_keyed_with_the_public_pem_is_rejected(keys: WixKeys) -> None:
    """The algorithm-confusion attack: the public key is public, so anyone could compute this MAC."""
    forged = _hs256(fresh_claims(), keys.public_pem.encode())

    with pytest.raises(WixSignatureError, match="RS256 required"):
        verify_jwt(forged, keys.public_pem)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"hello",
        b"a.b.c",
        b"a.b",
        b"\xff\xfe\x00.\x01.\x02",
        b'{"event": "bookings/created"}',
        b"....",
    ],
)
def test_garbage_body_is_rejected(keys: WixKeys, body: bytes) -> None:
    with pytest.raises(WixSignatureError):
        verify_jwt(body, keys.public_pem)


def test_whitespace_around_the_token_is_ignored(keys: WixKeys) -> None:
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED)

    assert verify_jwt(b"\r\n  " + token + b"\n\t ", keys.public_pem)["data"]


@pytest.mark.parametrize(
    "form",
    ["pem", "base64_of_pem", "escaped_newlines", "spaces_for_newlines", "crlf", "bare_der_base64"],
)
def test_public_key_is_accepted_in_the_forms_environments_produce(keys: WixKeys, form: str) -> None:
    pem = keys.public_pem
    der_body = "".join(pem.strip().splitlines()[1:-1])
    public_key = {
        "pem": pem,
        "base64_of_pem": keys.public_pem_base64,
        "escaped_newlines": keys.public_pem_escaped,
        "spaces_for_newlines": pem.strip().replace("\n", " "),
        "crlf": pem.replace("\n", "\r\n"),
        "bare_der_base64": der_body,
    }[form]
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED)

    assert verify_jwt(token, public_key)["data"]


def test_unreadable_public_key_is_a_signature_error_without_echoing_it(keys: WixKeys) -> None:
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED)

    with pytest.raises(WixSignatureError, match="not a readable public key") as caught:
        verify_jwt(token, "not-a-key-but-maybe-a-secret")
    assert "secret" not in str(caught.value)


def test_non_rsa_public_key_is_refused(keys: WixKeys) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED)

    with pytest.raises(WixSignatureError, match="not an RSA public key"):
        verify_jwt(token, ec_pem)


# --- HMAC verification ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        sign_hmac(b'{"a":1}', SECRET),
        sign_hmac(b'{"a":1}', SECRET, prefix=False),
        sign_hmac(b'{"a":1}', SECRET, prefix=False).upper(),
        "SHA256=" + sign_hmac(b'{"a":1}', SECRET, prefix=False).upper(),
        "  " + sign_hmac(b'{"a":1}', SECRET) + " ",
    ],
    ids=["prefixed", "bare", "uppercase", "uppercase-prefix", "padded"],
)
def test_valid_hmac_is_accepted(header: str) -> None:
    verify_hmac(b'{"a":1}', header, SECRET)


@pytest.mark.parametrize(
    ("body", "header", "reason"),
    [
        (b'{"a":1}', sign_hmac(b'{"a":1}', b"another-secret"), "does not match"),
        (b'{"a":2}', sign_hmac(b'{"a":1}', SECRET), "does not match"),
        (b'{"a":1} ', sign_hmac(b'{"a":1}', SECRET), "does not match"),
        (b'{"a":1}', None, "missing"),
        (b'{"a":1}', "", "missing"),
        (b'{"a":1}', "sha256=", "not a hex"),
        (b'{"a":1}', sign_hmac(b'{"a":1}', SECRET)[:-2], "not a hex"),
        (b'{"a":1}', sign_hmac(b'{"a":1}', SECRET) + "00", "not a hex"),
        (b'{"a":1}', "sha256=" + "zz" * 32, "not a hex"),
        (b'{"a":1}', "sha256=" + "é" * 64, "not a hex"),
    ],
    ids=[
        "wrong-secret",
        "tampered-body",
        "trailing-byte",
        "no-header",
        "empty-header",
        "prefix-only",
        "truncated",
        "too-long",
        "not-hex",
        "non-ascii",
    ],
)
def test_bad_hmac_is_rejected(body: bytes, header: str | None, reason: str) -> None:
    with pytest.raises(WixSignatureError, match=reason):
        verify_hmac(body, header, SECRET)


def test_empty_hmac_secret_is_refused() -> None:
    with pytest.raises(WixSignatureError, match="secret is empty"):
        verify_hmac(b"{}", sign_hmac(b"{}", b""), b"")


# --- Wix Bookings v2 parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("as_json_strings", [False, True], ids=["objects", "AsJson"])
def test_created_event_is_parsed_completely(keys: WixKeys, as_json_strings: bool) -> None:
    event = roundtrip(
        keys,
        CREATED,
        booking_payload(revision=1),
        event_id="43d78076-b7ad-4953-87ca-56fa7bd4f4a7",
        event_time=datetime(2026, 3, 1, 1, 2, 3, 456000, tzinfo=UTC),
        as_json_strings=as_json_strings,
    )

    assert event.dedupe_key == "43d78076-b7ad-4953-87ca-56fa7bd4f4a7"
    assert event.event_type == CREATED
    assert event.action is BookingAction.CREATED
    assert event.instance_id == DEFAULT_INSTANCE_ID
    assert event.event_time == datetime(2026, 3, 1, 1, 2, 3, 456000, tzinfo=UTC)
    assert event.previous_start_at is None
    booking = event.booking
    assert booking.booking_id == DEFAULT_BOOKING_ID
    assert booking.revision == 1
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.start_at == START_UTC
    assert booking.end_at == START_UTC + timedelta(minutes=30)
    assert booking.start_at.tzinfo is UTC
    assert booking.timezone == "Australia/Brisbane"
    assert booking.service_name == "MRI – Knee"
    assert booking.location == "Bondi Junction"
    contact = booking.contact
    assert contact.contact_id == DEFAULT_CONTACT_ID
    assert (contact.first_name, contact.last_name) == ("Alex", "Nguyen")
    assert (contact.email, contact.phone, contact.country_code) == ("alex@example.com", "+61412345678", "AU")


@pytest.mark.parametrize("as_json_strings", [False, True], ids=["objects", "AsJson"])
@pytest.mark.parametrize(
    ("event_type", "status", "action"),
    [
        (UPDATED, "CONFIRMED", BookingAction.UPDATED),
        (CANCELED, "CANCELED", BookingAction.CANCELED),
        (CONFIRMED, "CONFIRMED", BookingAction.CONFIRMED),
        (DECLINED, "DECLINED", BookingAction.DECLINED),
        (PENDING, "PENDING", BookingAction.UPDATED),
        (PARTICIPANTS, "CONFIRMED", BookingAction.UPDATED),
    ],
)
def test_each_booking_event_kind_is_parsed(
    keys: WixKeys, event_type: str, status: str, action: BookingAction, as_json_strings: bool
) -> None:
    event = roundtrip(
        keys, event_type, booking_payload(revision=4, status=status), as_json_strings=as_json_strings
    )

    assert event.action is action
    assert event.event_type == event_type
    assert event.booking.status is BookingStatus(status)
    assert event.booking.revision == 4
    assert event.booking.booking_id == DEFAULT_BOOKING_ID
    assert event.booking.start_at == START_UTC
    assert event.booking.contact.phone == "+61412345678"


@pytest.mark.parametrize("as_json_strings", [False, True], ids=["objects", "AsJson"])
def test_rescheduled_event_carries_the_previous_start(keys: WixKeys, as_json_strings: bool) -> None:
    new_start = DEFAULT_START + timedelta(days=1, hours=2)
    event = roundtrip(
        keys,
        RESCHEDULED,
        booking_payload(revision=3, start=new_start),
        previous_start=DEFAULT_START,
        as_json_strings=as_json_strings,
    )

    assert event.action is BookingAction.RESCHEDULED
    assert event.booking.start_at == START_UTC + timedelta(days=1, hours=2)
    assert event.previous_start_at == START_UTC
    assert event.previous_start_at.tzinfo is UTC


def test_rescheduled_event_without_previous_start_is_still_parsed(keys: WixKeys) -> None:
    event = roundtrip(keys, RESCHEDULED, booking_payload(revision=3))

    assert event.action is BookingAction.RESCHEDULED
    assert event.previous_start_at is None


def test_updated_event_with_modified_fields(keys: WixKeys) -> None:
    event = roundtrip(
        keys, UPDATED, booking_payload(revision=2), modified_fields={"contactDetails.phone": ""}
    )

    assert event.action is BookingAction.UPDATED
    assert event.booking.revision == 2


def test_double_l_cancelled_is_not_a_wix_event(keys: WixKeys) -> None:
    """`booking_cancelled` does not exist in the SDK; a handler keyed on it would never fire."""
    inner = wix_event("wix.bookings.v2.booking_cancelled", booking_payload(status="CANCELED"))

    assert parse_envelope(claims_for(inner, "wix.bookings.v2.booking_cancelled")) is None


@pytest.mark.parametrize(
    "event_type",
    ["wix.contacts.v4.contact_created", "wix.ecom.v1.order_approved", "wix.bookings.v2.session_updated"],
)
def test_non_booking_events_are_ignored_without_parsing_their_data(event_type: str) -> None:
    assert parse_envelope(claims_for("this is not even JSON", event_type)) is None


def test_revision_orders_events_and_event_id_dedupes(keys: WixKeys) -> None:
    older = roundtrip(keys, UPDATED, booking_payload(revision=9), event_id="evt-9")
    newer = roundtrip(keys, CANCELED, booking_payload(revision=12, status="CANCELED"), event_id="evt-12")
    resend = roundtrip(keys, UPDATED, booking_payload(revision=9), event_id="evt-9")

    assert (older.booking.revision, newer.booking.revision) == (9, 12)
    assert resend.dedupe_key == older.dedupe_key == "evt-9"
    assert newer.dedupe_key == "evt-12"


def test_slot_dates_with_offsets_are_converted_to_utc_when_top_level_dates_are_absent() -> None:
    booking = booking_payload(timezone="Australia/Sydney")  # AEDT, UTC+11 in March
    del booking["startDate"], booking["endDate"]
    assert booking["bookedEntity"]["slot"]["startDate"] == "2026-03-03T10:00:00.000+11:00"

    event = parse_envelope(claims_for(wix_event(CREATED, booking)))

    assert event is not None
    assert event.booking.start_at == START_UTC
    assert event.booking.end_at == START_UTC + timedelta(minutes=30)
    assert event.booking.timezone == "Australia/Sydney"


def test_top_level_utc_dates_win_over_slot_dates() -> None:
    booking = booking_payload()
    booking["bookedEntity"]["slot"]["startDate"] = "2030-01-01T00:00:00.000+10:00"

    event = parse_envelope(claims_for(wix_event(CREATED, booking)))

    assert event is not None
    assert event.booking.start_at == START_UTC


def test_location_falls_back_to_the_formatted_address_and_bad_zone_is_dropped() -> None:
    booking = booking_payload(location="Brisbane CBD")
    del booking["bookedEntity"]["slot"]["location"]["name"]
    booking["bookedEntity"]["slot"]["timezone"] = "Mars/Olympus_Mons"

    event = parse_envelope(claims_for(wix_event(CREATED, booking)))

    assert event is not None
    assert event.booking.location == "Level 2, 240 Queen St, Brisbane City QLD 4000"
    assert event.booking.timezone is None


def test_missing_optional_fields_become_none() -> None:
    booking = booking_payload(service=None, location=None, email=None, phone=None, last_name=None)
    del booking["endDate"], booking["bookedEntity"]["slot"]["endDate"]

    event = parse_envelope(claims_for(wix_event(CREATED, booking)))

    assert event is not None
    assert event.booking.end_at is None
    assert event.booking.service_name is None
    assert event.booking.location is None
    assert (event.booking.contact.email, event.booking.contact.phone) == (None, None)
    assert event.booking.contact.last_name is None


def test_booking_in_a_deleted_event_container_is_found() -> None:
    inner = wix_event(CREATED, booking_payload())
    inner["deletedEvent"] = {"deletedEntityAsJson": json.dumps(inner.pop("createdEvent")["entity"])}

    event = parse_envelope(claims_for(inner))

    assert event is not None
    assert event.booking.booking_id == DEFAULT_BOOKING_ID


def test_envelope_and_entity_given_as_objects_rather_than_strings_are_accepted() -> None:
    inner = wix_event(CREATED, booking_payload(), as_json_strings=True)
    inner["createdEvent"]["entityAsJson"] = json.loads(inner["createdEvent"]["entityAsJson"])
    claims = fresh_claims()
    claims["data"] = {"eventType": CREATED, "instanceId": "site", "data": inner}

    event = parse_envelope(claims)

    assert event is not None
    assert event.instance_id == "site"


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        document = document[key]
    if value is _DELETE:
        del document[last]
    else:
        document[last] = value


_DELETE = object()
_B = "createdEvent.entity"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("id", _DELETE, "event.id missing"),
        ("id", "  ", "event.id missing"),
        ("createdEvent", _DELETE, "event has no createdEvent"),
        ("createdEvent", "[1, 2]", "event.createdEvent is not an object"),
        ("createdEvent.entity", _DELETE, "event.createdEvent.entity missing"),
        ("createdEvent.entity", ["a"], "event.createdEvent.entity is not an object"),
        (f"{_B}.startDate", _DELETE, None),  # slot date still there: not an error
        (f"{_B}.revision", _DELETE, "booking.revision missing"),
        (f"{_B}.revision", "seven", "booking.revision is not an integer"),
        (f"{_B}.revision", "-1", "booking.revision is not an integer"),
        (f"{_B}.revision", 1.5, "booking.revision is not an integer"),
        (f"{_B}.revision", True, "booking.revision is not an integer"),
        (f"{_B}.revision", "99999999999999999999", "booking.revision is not an integer"),
        (f"{_B}.revision", 2**63, "booking.revision is out of range"),
        (f"{_B}.status", _DELETE, "booking.status missing"),
        (f"{_B}.status", "ARCHIVED", "booking.status 'ARCHIVED' is not a known booking status"),
        (f"{_B}.status", 3, "booking.status is not a string"),
        (f"{_B}.id", "", "booking.id missing"),
        (f"{_B}.startDate", "tomorrow", "booking.startDate is not an ISO-8601 time"),
        (f"{_B}.startDate", "2026-03-02T22:00:00", "booking.startDate has no UTC offset"),
        (f"{_B}.startDate", 1772488800, "booking.startDate is not an ISO-8601 string"),
        (f"{_B}.endDate", "2026-13-02T22:30:00Z", "booking.endDate is not an ISO-8601 time"),
        (f"{_B}.bookedEntity", "MRI", "booking.bookedEntity is not an object"),
        (f"{_B}.bookedEntity.slot.location", [], "booking.bookedEntity.slot.location is not an object"),
        (f"{_B}.bookedEntity.title", 7, "booking.bookedEntity.title is not a string"),
        (f"{_B}.contactDetails", "alex", "booking.contactDetails is not an object"),
        (f"{_B}.contactDetails.email", 42, "booking.contactDetails.email is not a string"),
        ("eventTime", "yesterday", "event.eventTime is not an ISO-8601 time"),
    ],
)
def test_malformed_booking_events_name_the_field(path: str, value: Any, reason: str | None) -> None:
    inner = wix_event(CREATED, booking_payload())
    _set(inner, path, value)

    if reason is None:
        assert parse_envelope(claims_for(inner)) is not None
        return
    with pytest.raises(WixPayloadError) as caught:
        parse_envelope(claims_for(inner))
    assert str(caught.value).startswith(reason)


def test_no_start_date_anywhere_is_rejected() -> None:
    inner = wix_event(CREATED, booking_payload())
    del inner["createdEvent"]["entity"]["startDate"], inner["createdEvent"]["entity"]["bookedEntity"]["slot"]

    with pytest.raises(WixPayloadError, match=r"^booking\.startDate missing$"):
        parse_envelope(claims_for(inner))


def test_action_event_without_booking_is_rejected() -> None:
    inner = wix_event(CANCELED, booking_payload(status="CANCELED"))
    del inner["actionEvent"]["body"]["booking"]

    with pytest.raises(WixPayloadError, match=r"^event\.actionEvent\.body\.booking missing$"):
        parse_envelope(claims_for(inner, CANCELED))


def test_unparseable_as_json_entity_is_rejected() -> None:
    inner = wix_event(CREATED, booking_payload(), as_json_strings=True)
    inner["createdEvent"]["entityAsJson"] = '{"id": '

    with pytest.raises(WixPayloadError, match=r"^event\.createdEvent\.entityAsJson is not valid JSON$"):
        parse_envelope(claims_for(inner))


def test_malformed_rescheduled_previous_start_is_rejected() -> None:
    inner = wix_event(RESCHEDULED, booking_payload(), previous_start=DEFAULT_START)
    inner["actionEvent"]["body"]["previousStartDate"] = "2026-03-02 22:00"

    with pytest.raises(WixPayloadError, match="previousStartDate has no UTC offset"):
        parse_envelope(claims_for(inner, RESCHEDULED))


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iat": 1, "exp": 2}, "claims.data missing"),
        ({"data": "not json"}, "claims.data is not valid JSON"),
        ({"data": "[]"}, "claims.data is not an object"),
        ({"data": json.dumps({"instanceId": "x"})}, "envelope.eventType missing"),
        ({"data": json.dumps({"eventType": 5})}, "envelope.eventType missing"),
        ({"data": json.dumps({"eventType": CREATED})}, "envelope.data missing"),
        ({"data": json.dumps({"eventType": CREATED, "data": "{"})}, "envelope.data is not valid JSON"),
        ({"data": json.dumps({"eventType": CREATED, "data": "7"})}, "envelope.data is not an object"),
    ],
)
def test_malformed_envelope_layers_name_the_layer(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(WixPayloadError) as caught:
        parse_envelope(claims)
    assert str(caught.value) == reason


def test_payload_errors_never_echo_patient_data() -> None:
    inner = wix_event(CREATED, booking_payload())
    inner["createdEvent"]["entity"]["contactDetails"]["phone"] = ["+61412345678"]

    with pytest.raises(WixPayloadError) as caught:
        parse_envelope(claims_for(inner))
    assert "6141" not in str(caught.value)


# --- simple JSON format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_name", "action", "status"),
    [
        ("bookings/created", BookingAction.CREATED, BookingStatus.CONFIRMED),
        ("bookings/updated", BookingAction.UPDATED, BookingStatus.CONFIRMED),
        ("bookings/cancelled", BookingAction.CANCELED, BookingStatus.CANCELED),
    ],
)
def test_simple_events_are_parsed(event_name: str, action: BookingAction, status: BookingStatus) -> None:
    body = simple_event(event_name, "bk-1001")
    verify_hmac(body, sign_hmac(body, SECRET), SECRET)

    event = parse_simple(body)

    assert event.event_type == event_name
    assert event.action is action
    assert event.dedupe_key == hashlib.sha256(body).hexdigest()
    assert (event.instance_id, event.event_time, event.previous_start_at) == (None, None, None)
    booking = event.booking
    assert booking.booking_id == "bk-1001"
    assert booking.status is status
    assert booking.revision is None
    assert booking.start_at == START_UTC
    assert booking.end_at == START_UTC + timedelta(minutes=30)
    assert booking.timezone is None
    assert (booking.service_name, booking.location) == ("MRI – Knee", "Bondi Junction")
    assert booking.contact == booking.contact.__class__(
        contact_id=None,
        first_name="Alex",
        last_name="Nguyen",
        email="alex@example.com",
        phone="+61412345678",
        country_code=None,
    )


def test_simple_event_with_revision_status_and_z_times() -> None:
    body = json.dumps(
        {
            "event": "bookings/updated",
            "data": {
                "booking_id": 1001,
                "service": "CT – Chest",
                "customer": {"name": "Sam Lee", "email": None, "phone": "0412 345 678"},
                "start_time": "2026-03-02T23:00:00Z",
                "end_time": "2026-03-02T23:20:00.000Z",
                "location": "",
                "revision": "5",
                "status": "pending",
            },
        }
    ).encode()

    event = parse_simple(body)

    assert event.booking.booking_id == "1001"
    assert event.booking.revision == 5
    assert event.booking.status is BookingStatus.PENDING
    assert event.booking.start_at == START_UTC
    assert event.booking.end_at == START_UTC + timedelta(minutes=20)
    assert event.booking.location is None
    assert event.booking.contact.email is None


def test_the_same_simple_body_dedupes_and_a_changed_one_does_not() -> None:
    first = parse_simple(simple_event("bookings/updated", revision=2))
    again = parse_simple(simple_event("bookings/updated", revision=2))
    changed = parse_simple(simple_event("bookings/updated", revision=3))

    assert first.dedupe_key == again.dedupe_key != changed.dedupe_key


def test_naive_simple_time_is_rejected_because_its_zone_would_be_a_guess() -> None:
    body = simple_event("bookings/created", start=datetime(2026, 3, 3, 9, 0))

    with pytest.raises(WixPayloadError, match=r"^data\.start_time has no UTC offset; refusing to guess"):
        parse_simple(body)


def _simple(data_changes: dict[str, Any], event: str = "bookings/created") -> bytes:
    document = json.loads(simple_event(event))
    for key, value in data_changes.items():
        if value is _DELETE:
            del document["data"][key]
        else:
            document["data"][key] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is not valid JSON"),
        (b"\xff{}", "body is not valid JSON"),
        (b"[1]", "body is not a JSON object"),
        (b'{"data": {}}', "event missing"),
        (b'{"event": "bookings/deleted", "data": {}}', "event 'bookings/deleted' is not one of"),
        (b'{"event": "bookings/created"}', "data missing"),
        (b'{"event": "bookings/created", "data": "x"}', "data is not valid JSON"),
        (_simple({"booking_id": _DELETE}), "data.booking_id missing"),
        (_simple({"booking_id": " "}), "data.booking_id missing"),
        (_simple({"booking_id": ["x"]}), "data.booking_id missing"),
        (_simple({"customer": _DELETE}), "data.customer missing"),
        (_simple({"customer": ["Alex"]}), "data.customer is not an object"),
        (_simple({"customer": {"name": 5}}), "data.customer.name is not a string"),
        (_simple({"start_time": _DELETE}), "data.start_time missing"),
        (_simple({"end_time": _DELETE}), "data.end_time missing"),
        (_simple({"start_time": "next tuesday"}), "data.start_time is not an ISO-8601 time"),
        (_simple({"end_time": 1772492400}), "data.end_time is not an ISO-8601 string"),
        (_simple({"service": {"name": "MRI"}}), "data.service is not a string"),
        (_simple({"revision": "v2"}), "data.revision is not an integer"),
        (_simple({"status": "BOOKED"}), "data.status 'BOOKED' is not a known booking status"),
        (_simple({"status": "CONFIRMED"}, "bookings/cancelled"), "data.status CONFIRMED contradicts"),
    ],
)
def test_malformed_simple_bodies_give_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(WixPayloadError) as caught:
        parse_simple(body)
    assert str(caught.value).startswith(reason)


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("Alex Nguyen", "Alex", "Nguyen"),
        ("Mary Jane Watson", "Mary", "Jane Watson"),
        ("  Cher  ", "Cher", None),
        ("Ngozi   Okonjo-Iweala", "Ngozi", "Okonjo-Iweala"),
        ("", None, None),
        (None, None, None),
    ],
)
def test_full_name_is_split_on_the_first_space(name: str | None, first: str | None, last: str | None) -> None:
    contact = parse_simple(simple_event("bookings/created", name=name)).booking.contact

    assert (contact.first_name, contact.last_name) == (first, last)


# --- decode_stored ----------------------------------------------------------------------------------------


def test_stored_jwt_decodes_to_the_same_event(keys: WixKeys) -> None:
    inner = wix_event(
        RESCHEDULED, booking_payload(revision=2), previous_start=DEFAULT_START - timedelta(days=1)
    )
    raw = sign_wix_jwt(keys, inner, RESCHEDULED)

    assert decode_stored(raw, RESCHEDULED) == parse_envelope(verify_jwt(raw, keys.public_pem))


def test_stored_jwt_still_decodes_hours_after_it_expired(keys: WixKeys) -> None:
    raw = sign_wix_jwt(
        keys, wix_event(CREATED, booking_payload(), event_id="evt-old"), CREATED, iat=1_700_000_000
    )
    with pytest.raises(WixSignatureError, match="expired"):
        verify_jwt(raw, keys.public_pem)

    event = decode_stored(b"\n" + raw + b"\n", CREATED)

    assert event is not None
    assert event.dedupe_key == "evt-old"
    assert event.booking.start_at == START_UTC


def test_stored_simple_body_decodes_to_the_same_event() -> None:
    raw = simple_event("bookings/cancelled", "bk-7", revision=4)

    assert decode_stored(raw, "bookings/cancelled") == parse_simple(raw)


def test_stored_non_booking_event_decodes_to_none(keys: WixKeys) -> None:
    raw = sign_wix_jwt(keys, {"id": "x"}, "wix.contacts.v4.contact_created")

    assert decode_stored(raw, "wix.contacts.v4.contact_created") is None


@pytest.mark.parametrize("raw", [b"", b"garbage", b"a.b.c", b"\xff.\xfe.\xfd"])
def test_undecodable_stored_jwt_is_a_payload_error(raw: bytes) -> None:
    with pytest.raises(WixPayloadError, match="not a decodable JWT"):
        decode_stored(raw, CREATED)


# --- nothing escapes but the two error types --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Values that sit close to what the parser expects, so mutations reach past the first type check.
near_misses = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "1e9",
        "CONFIRMED",
        "canceled",
        "2026-03-02T22:00:00",
        "2026-03-02T22:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "{}",
        "[]",
        '{"booking": {}}',
        "null",
        "\x00",
        "\ud800",
        "Australia/../../etc/passwd",
        "A" * 300,
        str(2**70),
    ]
)
mutations = json_values | near_misses | st.just(_DELETE)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


def _examples() -> list[dict[str, Any]]:
    booking = booking_payload(revision=2)
    return [
        wix_event(CREATED, booking),
        wix_event(UPDATED, booking, as_json_strings=True),
        wix_event(RESCHEDULED, booking, previous_start=DEFAULT_START),
        wix_event(CANCELED, booking, as_json_strings=True),
    ]


_V2_EXAMPLES = _examples()
_SIMPLE_EXAMPLE = json.loads(simple_event("bookings/created", revision=1))
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_payload_errors(call: Any, *args: Any) -> None:
    with contextlib.suppress(WixPayloadError):
        call(*args)


@_FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes_never_escape_as_other_errors(keys: WixKeys, raw: bytes) -> None:
    with pytest.raises(WixSignatureError):
        verify_jwt(raw, keys.public_pem)
    _only_payload_errors(parse_simple, raw)
    _only_payload_errors(decode_stored, raw, CREATED)
    _only_payload_errors(decode_stored, raw, "bookings/created")


@_FUZZ
@given(header=st.text(max_size=80), raw=st.binary(max_size=50))
def test_random_signature_headers_only_fail_verification(header: str, raw: bytes) -> None:
    with pytest.raises(WixSignatureError):
        verify_hmac(raw, header, SECRET)


@_FUZZ
@given(value=json_values)
def test_random_json_is_refused_with_a_payload_error(value: Any) -> None:
    _only_payload_errors(parse_simple, json.dumps(value).encode())
    _only_payload_errors(parse_envelope, {"data": json.dumps(value)})
    _only_payload_errors(
        parse_envelope, {"data": json.dumps({"eventType": CREATED, "data": json.dumps(value)})}
    )
    if isinstance(value, dict):
        _only_payload_errors(parse_envelope, value)


@_FUZZ
@given(data=st.data(), example=st.sampled_from(_V2_EXAMPLES), value=mutations)
def test_mutated_wix_events_parse_or_give_a_payload_error(
    data: st.DataObject, example: Any, value: Any
) -> None:
    path = data.draw(st.sampled_from(_paths(example)))
    inner = _mutate(example, path, value)
    event_type = CANCELED if "actionEvent" in example else CREATED

    _only_payload_errors(parse_envelope, claims_for(inner, event_type))


@_FUZZ
@given(data=st.data(), value=mutations)
def test_mutated_simple_events_parse_or_give_a_payload_error(data: st.DataObject, value: Any) -> None:
    path = data.draw(st.sampled_from(_paths(_SIMPLE_EXAMPLE)))
    body = json.dumps(_mutate(_SIMPLE_EXAMPLE, path, value)).encode()

    _only_payload_errors(parse_simple, body)


@_FUZZ
@given(header=json_values, claims=json_values, signature=st.binary(max_size=64))
def test_forged_tokens_with_random_segments_only_fail_verification(
    keys: WixKeys, header: Any, claims: Any, signature: bytes
) -> None:
    token = ".".join(b64url(json.dumps(part).encode()) for part in (header, claims)) + "." + b64url(signature)

    with pytest.raises(WixSignatureError):
        verify_jwt(token.encode(), keys.public_pem)
    _only_payload_errors(decode_stored, token.encode(), CREATED)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.sampled_from(["iat", "nbf", "data", "exp", "aud"]), json_values, max_size=3))
def test_validly_signed_odd_claims_only_give_the_two_errors(keys: WixKeys, extra: dict[str, Any]) -> None:
    claims = {**fresh_claims(), **extra}
    token = jwt.encode(claims, keys.private_pem, algorithm="RS256").encode()
    with contextlib.suppress(WixSignatureError, WixPayloadError):
        parse_envelope(verify_jwt(token, keys.public_pem))


def test_deeply_nested_json_is_refused_not_crashed(keys: WixKeys) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(WixPayloadError):
        parse_simple(deep)
    with pytest.raises(WixPayloadError):
        parse_envelope({"data": deep.decode()})
    nested_header = base64.urlsafe_b64encode(deep).rstrip(b"=")
    with pytest.raises(WixSignatureError):
        verify_jwt(nested_header + b".e30.", keys.public_pem)


# --- the fast base64url segment check must be PyJWT's, rule for rule -------------------------------------

_SEGMENT_EDGE_CASES = [
    b"",
    b"=",
    b"==",
    b"A",
    b"AA",
    b"AA=",
    b"AA==",
    b"AA===",
    b"AAA",
    b"AAA=",
    b"AAA==",
    b"AAAA",
    b"AAAA=",
    b"AB",  # non-canonical: the low bits of the last character must be zero
    b"AAB",
    b"e30",
    b"e30=",
    b"e3 0",
    b"e30\n",
    b"e3+0",
    b"e3/0",
    b"!!!!",
    b"e30.",
    b"\xffAAA",
    b"=AAA",
    b"A=AA",
    base64.urlsafe_b64encode(b"\xfb\xff" * 30).rstrip(b"="),
]


def _segment_outcome(decode: Any, segment: bytes) -> tuple[str, bytes | str]:
    try:
        return "ok", decode(segment, "payload")
    except jwt.DecodeError as exc:
        return "DecodeError", str(exc)


@pytest.mark.parametrize("segment", _SEGMENT_EDGE_CASES)
def test_fast_segment_check_matches_pyjwt_on_edge_cases(segment: bytes) -> None:
    from jwt.api_jws import PyJWS

    from providers.wix import _JWS

    assert _segment_outcome(_JWS._decode_base64url_segment, segment) == _segment_outcome(
        PyJWS._decode_base64url_segment, segment
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=24) | st.text(alphabet="AQgw_-+/=.e3 0\n", max_size=24).map(str.encode))
def test_fast_segment_check_matches_pyjwt_on_any_bytes(segment: bytes) -> None:
    from jwt.api_jws import PyJWS

    from providers.wix import _JWS

    assert _segment_outcome(_JWS._decode_base64url_segment, segment) == _segment_outcome(
        PyJWS._decode_base64url_segment, segment
    )


def test_verify_jwt_really_uses_the_fast_segment_check(
    keys: WixKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PyJWT upgrade that stopped calling the override would silently bring back the slow check."""
    from providers.wix import _JWS

    original = _JWS._decode_base64url_segment
    calls: list[str] = []

    def spy(segment: bytes, name: str) -> bytes:
        calls.append(name)
        return original(segment, name)

    monkeypatch.setattr(_JWS, "_decode_base64url_segment", staticmethod(spy))
    token = sign_wix_jwt(keys, wix_event(CREATED, booking_payload()), CREATED)
    assert verify_jwt(token, keys.public_pem)["data"]
    assert sorted(calls) == ["crypto", "header", "payload"]
