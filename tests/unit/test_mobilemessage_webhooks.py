"""MobileMessage webhook verification and parsing, without a server: every refusal is one of two typed errors
whose message never repeats a phone number or message text."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.mobilemessage_webhooks import (
    DeliveryReceipt,
    InboundSms,
    MobileMessagePayloadError,
    MobileMessageSignatureError,
    parse_inbound,
    parse_receipt,
    verify_signature,
)
from tests.fakes.mobilemessage import inbound_payload, receipt_payload, sign_webhook

SECRET = b"mm-unit-secret"
NOW = 1_772_980_500  # 2026-03-08 14:35:00 UTC
BODY = json.dumps(inbound_payload(received_at=datetime.fromtimestamp(NOW, UTC))).encode()
PATIENT = "61412345678"
TEXT = "Yes, I'd like to confirm my appointment"


def _headers(body: bytes = BODY, secret: bytes = SECRET, timestamp: int = NOW) -> tuple[str, str]:
    signed = sign_webhook(body, secret, timestamp)
    return signed["X-MM-Timestamp"], signed["X-MM-Signature"]


def _body(payload: dict[str, object]) -> bytes:
    return json.dumps(payload).encode()


# --- signatures -------------------------------------------------------------------------------------


def test_a_correct_signature_is_accepted() -> None:
    timestamp, signature = _headers()
    verify_signature(BODY, timestamp, signature, SECRET, now=NOW)
    verify_signature(BODY, f" {timestamp} ", signature.upper(), SECRET, now=NOW + 299)  # hex is hex
    verify_signature(BODY, timestamp, signature, SECRET, now=NOW - 300)


def test_sign_webhook_defaults_to_now() -> None:
    headers = sign_webhook(BODY, SECRET)
    verify_signature(BODY, headers["X-MM-Timestamp"], headers["X-MM-Signature"], SECRET)


@pytest.mark.parametrize(
    ("case", "body", "timestamp", "signature", "secret", "now", "reason"),
    [
        ("tampered body", BODY.replace(b"Yes", b"No!"), *_headers(), SECRET, NOW, "does not match"),
        ("wrong secret", BODY, *_headers(secret=b"someone else"), SECRET, NOW, "does not match"),
        ("stale", BODY, *_headers(timestamp=NOW - 301), SECRET, NOW, "too old"),
        ("future", BODY, *_headers(timestamp=NOW + 301), SECRET, NOW, "in the future"),
        ("timestamp re-stamped", BODY, str(NOW + 1), _headers()[1], SECRET, NOW, "does not match"),
        ("missing timestamp", BODY, None, _headers()[1], SECRET, NOW, "missing X-MM-Timestamp"),
        ("blank timestamp", BODY, "  ", _headers()[1], SECRET, NOW, "missing X-MM-Timestamp"),
        ("missing signature", BODY, str(NOW), None, SECRET, NOW, "missing X-MM-Signature"),
        ("empty signature", BODY, str(NOW), "", SECRET, NOW, "missing X-MM-Signature"),
        ("milliseconds", BODY, str(NOW * 1000), _headers()[1], SECRET, NOW, "not Unix seconds"),
        ("non-numeric timestamp", BODY, "yesterday", _headers()[1], SECRET, NOW, "not Unix seconds"),
        ("negative timestamp", BODY, f"-{NOW}", _headers()[1], SECRET, NOW, "not Unix seconds"),
        ("fractional timestamp", BODY, f"{NOW}.5", _headers()[1], SECRET, NOW, "not Unix seconds"),
        ("unicode digits", BODY, "١٧٧٢٩٨٠٥٠٠", _headers()[1], SECRET, NOW, "not Unix seconds"),
        ("non-hex", BODY, str(NOW), "z" * 64, SECRET, NOW, "not a hex"),
        ("short hex", BODY, str(NOW), _headers()[1][:-2], SECRET, NOW, "not a hex"),
        ("prefixed", BODY, str(NOW), "sha256=" + _headers()[1], SECRET, NOW, "not a hex"),
        ("empty secret", BODY, *_headers(secret=b""), b"", NOW, "secret is empty"),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(
    case: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    secret: bytes,
    now: int,
    reason: str,
) -> None:
    with pytest.raises(MobileMessageSignatureError, match=reason):
        verify_signature(body, timestamp, signature, secret, now=now)


def test_tolerance_is_configurable() -> None:
    timestamp, signature = _headers(timestamp=NOW - 60)
    verify_signature(BODY, timestamp, signature, SECRET, now=NOW, tolerance=60)
    with pytest.raises(MobileMessageSignatureError, match="too old"):
        verify_signature(BODY, timestamp, signature, SECRET, now=NOW, tolerance=59)


# --- inbound ----------------------------------------------------------------------------------------


def test_the_documented_inbound_format() -> None:
    body = _body(
        {
            "to": "61400000010",
            "sender": PATIENT,
            "message": TEXT,
            "received_at": "2026-03-08 14:35:00",
            "type": "inbound",
            "original_message_id": "abcd1234-efgh-5678-ijkl-9876543210mn",
            "original_custom_ref": "tracking001",
        }
    )
    sms = parse_inbound(body)
    assert sms == InboundSms(
        to="61400000010",
        sender=PATIENT,
        message=TEXT,
        received_at=datetime(2026, 3, 8, 14, 35, tzinfo=UTC),
        kind="inbound",
        original_message_id="abcd1234-efgh-5678-ijkl-9876543210mn",
        original_custom_ref="tracking001",
    )
    assert sms.received_at.utcoffset() is not None
    assert sms.event_type == "sms.inbound"


def test_empty_original_fields_are_none_and_the_text_is_kept_verbatim() -> None:
    sms = parse_inbound(_body(inbound_payload("  Yep see you then 👍 ")))
    assert sms.original_message_id is None and sms.original_custom_ref is None
    assert sms.message == "  Yep see you then 👍 "


def test_an_unsubscribe_may_have_an_empty_or_missing_message() -> None:
    sms = parse_inbound(_body(inbound_payload("", kind="unsubscribe")))
    assert (sms.kind, sms.message, sms.event_type) == ("unsubscribe", "", "sms.unsubscribe")
    payload = inbound_payload(kind="UNSUBSCRIBE")
    del payload["message"]
    assert parse_inbound(_body(payload)).message == ""


def test_a_missing_type_means_inbound() -> None:
    payload = inbound_payload()
    del payload["type"]
    assert parse_inbound(_body(payload)).kind == "inbound"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-03-08T14:35:00Z", datetime(2026, 3, 8, 14, 35, tzinfo=UTC)),
        ("2026-03-09T00:35:00+10:00", datetime(2026, 3, 8, 14, 35, tzinfo=UTC)),
        ("2026-03-08T14:35:00", datetime(2026, 3, 8, 14, 35, tzinfo=UTC)),
        (NOW, datetime(2026, 3, 8, 14, 35, tzinfo=UTC)),
        (str(NOW), datetime(2026, 3, 8, 14, 35, tzinfo=UTC)),
        (NOW + 0.5, datetime(2026, 3, 8, 14, 35, 0, 500000, tzinfo=UTC)),
    ],
)
def test_the_simple_format(timestamp: object, expected: datetime) -> None:
    sms = parse_inbound(
        _body({"from": PATIENT, "to": "61400000010", "message": TEXT, "timestamp": timestamp})
    )
    assert (sms.sender, sms.to, sms.message, sms.kind) == (PATIENT, "61400000010", TEXT, "inbound")
    assert sms.received_at == expected and sms.received_at.tzinfo is not None
    assert sms.original_message_id is None and sms.original_custom_ref is None


def test_the_same_reply_in_both_formats_has_the_same_dedupe_key() -> None:
    real = parse_inbound(_body(inbound_payload(TEXT, received_at=datetime.fromtimestamp(NOW, UTC))))
    simple = parse_inbound(_body({"from": PATIENT, "to": "61400000010", "message": TEXT, "timestamp": NOW}))
    assert real.dedupe_key == simple.dedupe_key


def test_inbound_dedupe_keys_are_stable_and_distinct() -> None:
    at = datetime(2026, 3, 8, 14, 35, tzinfo=UTC)
    base = inbound_payload(TEXT, received_at=at)
    key = parse_inbound(_body(base)).dedupe_key
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)
    # Stable: key order and whitespace in the JSON do not matter.
    reordered = json.dumps(dict(reversed(list(base.items()))), indent=2).encode()
    assert parse_inbound(reordered).dedupe_key == key
    variants = [
        inbound_payload("No", received_at=at),
        inbound_payload(TEXT, received_at=datetime(2026, 3, 8, 14, 35, 1, tzinfo=UTC)),
        inbound_payload(TEXT, received_at=at, sender="61412345679"),
        inbound_payload(TEXT, received_at=at, to="61400000011"),
        inbound_payload(TEXT, received_at=at, original_message_id="m-1"),
    ]
    keys = {parse_inbound(_body(v)).dedupe_key for v in variants}
    assert len(keys) == len(variants) and key not in keys


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"hello"', "not a JSON object"),
        (b"{}", "sender missing"),
        (_body({**inbound_payload(), "sender": ""}), "sender missing"),
        (_body({**inbound_payload(), "sender": ["x"]}), "sender is not a string"),
        (_body({**inbound_payload(), "message": None}), "message missing"),
        (_body({**inbound_payload(), "message": "   "}), "message is empty"),
        (_body({**inbound_payload(), "message": 42}), "message is not a string"),
        (_body({**inbound_payload(), "message": "\ud800"}), "message is not valid Unicode"),
        (_body({**inbound_payload(), "type": "mms"}), "type is not one of"),
        (_body({**inbound_payload(), "type": 1}), "type is not a string"),
        (_body({**inbound_payload(), "received_at": None}), "received_at missing"),
        (_body({**inbound_payload(), "received_at": "yesterday"}), "received_at is not"),
        (_body({**inbound_payload(), "received_at": True}), "received_at is not a time"),
        (_body({**inbound_payload(), "received_at": 1e300}), "received_at is out of range"),
        (_body({**inbound_payload(), "received_at": -1}), "received_at is out of range"),
        (_body({**inbound_payload(), "original_custom_ref": {}}), "original_custom_ref is not a string"),
        (_body({"from": PATIENT, "to": "1", "message": TEXT}), "timestamp missing"),
        (_body({"from": "", "message": TEXT, "timestamp": NOW}), "from missing"),
        (b'{"sender": "1", "message": "x", "received_at": NaN}', "out of range"),
    ],
)
def test_malformed_inbound_bodies_are_payload_errors(body: bytes, reason: str) -> None:
    with pytest.raises(MobileMessagePayloadError, match=reason) as caught:
        parse_inbound(body)
    assert PATIENT not in str(caught.value) and TEXT not in str(caught.value)


# --- delivery receipts ------------------------------------------------------------------------------


def test_the_documented_receipt_format() -> None:
    body = _body(
        {
            "to": PATIENT,
            "sender": "MyBrand",
            "message": "Your appointment is confirmed for tomorrow at 3pm",
            "custom_ref": "tracking001",
            "status": "delivered",
            "message_id": "abcd1234-efgh-5678-ijkl-9876543210mn",
            "received_at": "2026-03-08 14:35:00",
            "part_number": 1,
            "total_parts": 1,
        }
    )
    assert parse_receipt(body) == DeliveryReceipt(
        to=PATIENT,
        sender="MyBrand",
        message="Your appointment is confirmed for tomorrow at 3pm",
        custom_ref="tracking001",
        status="delivered",
        message_id="abcd1234-efgh-5678-ijkl-9876543210mn",
        received_at=datetime(2026, 3, 8, 14, 35, tzinfo=UTC),
        part_number=1,
        total_parts=1,
    )
    assert parse_receipt(body).event_type == "sms.status.delivered"


def test_receipt_parts_and_optional_fields() -> None:
    receipt = parse_receipt(_body(receipt_payload("m-1", "FAILED", part_number=2, total_parts=3)))
    assert (receipt.part_number, receipt.total_parts, receipt.status) == (2, 3, "failed")
    assert receipt.event_type == "sms.status.failed"
    bare = parse_receipt(_body(receipt_payload("m-1", "sent", message=None, custom_ref="", total_parts=None)))
    assert (bare.message, bare.custom_ref, bare.part_number, bare.total_parts) == (None, None, 1, None)
    payload = receipt_payload("m-1")
    del payload["part_number"]
    assert parse_receipt(_body(payload)).part_number == 1
    assert parse_receipt(_body({**payload, "part_number": "2", "total_parts": "2"})).part_number == 2


def test_an_unknown_status_is_kept_lower_cased() -> None:
    receipt = parse_receipt(_body(receipt_payload("m-1", " Expired ")))
    assert (receipt.status, receipt.event_type) == ("expired", "sms.status.expired")


def test_receipt_dedupe_keys_are_stable_and_distinct() -> None:
    key = parse_receipt(_body(receipt_payload("m-1", "delivered"))).dedupe_key
    # A redelivery later (new received_at, other incidental fields) is the same event.
    later = receipt_payload("m-1", "Delivered", received_at=datetime(2030, 1, 1, tzinfo=UTC), custom_ref="x")
    assert parse_receipt(_body(later)).dedupe_key == key
    others = [
        receipt_payload("m-2", "delivered"),
        receipt_payload("m-1", "sent"),
        receipt_payload("m-1", "delivered", part_number=2, total_parts=2),
    ]
    keys = {parse_receipt(_body(p)).dedupe_key for p in others}
    assert len(keys) == 3 and key not in keys


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({**receipt_payload(), "message_id": None}, "message_id missing"),
        ({**receipt_payload(), "message_id": ""}, "message_id missing"),
        ({**receipt_payload(), "message_id": "m" * 101}, "message_id is longer"),
        ({**receipt_payload(), "message_id": 1.5}, "message_id is not a string"),
        ({**receipt_payload(), "status": None}, "status missing"),
        ({**receipt_payload(), "status": " "}, "status missing"),
        ({**receipt_payload(), "status": 3}, "status is not a string"),
        ({**receipt_payload(), "status": "delivered to handset ok"}, "not a status word"),
        ({**receipt_payload(), "status": "sent\nINJECTED"}, "not a status word"),
        ({**receipt_payload(), "part_number": 0}, "part_number is not between"),
        ({**receipt_payload(), "part_number": 2**40}, "part_number is not between"),
        ({**receipt_payload(), "part_number": True}, "part_number is not an integer"),
        ({**receipt_payload(), "total_parts": "many"}, "total_parts is not an integer"),
        ({**receipt_payload(), "received_at": None}, "received_at missing"),
        ({**receipt_payload(), "message": ["x"]}, "message is not a string"),
    ],
)
def test_malformed_receipts_are_payload_errors(payload: dict[str, object], reason: str) -> None:
    with pytest.raises(MobileMessagePayloadError, match=reason) as caught:
        parse_receipt(_body(payload))
    assert PATIENT not in str(caught.value)


def test_receipts_refuse_non_objects() -> None:
    for body in (b"", b"null", b"[]", b"not json"):
        with pytest.raises(MobileMessagePayloadError):
            parse_receipt(body)


# --- no input escapes as anything else --------------------------------------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = [
    "to",
    "sender",
    "from",
    "message",
    "received_at",
    "timestamp",
    "type",
    "original_message_id",
    "original_custom_ref",
    "status",
    "message_id",
    "custom_ref",
    "part_number",
    "total_parts",
]
_BODIES = st.one_of(
    st.binary(max_size=1024),
    st.text(max_size=256).map(str.encode),
    st.dictionaries(st.sampled_from(_FIELDS), _JSON_VALUES, max_size=10).map(
        lambda d: json.dumps(d).encode()
    ),
    st.builds(
        lambda base, extra: json.dumps({**base, **extra}).encode(),
        st.sampled_from([inbound_payload(), receipt_payload("m-1")]),
        st.dictionaries(st.sampled_from(_FIELDS), _JSON_VALUES, max_size=3),
    ),
)


@settings(max_examples=400, deadline=None)
@given(body=_BODIES, timestamp=st.none() | st.text(max_size=20), signature=st.none() | st.text(max_size=70))
def test_arbitrary_input_raises_only_the_two_typed_errors(
    body: bytes, timestamp: str | None, signature: str | None
) -> None:
    for parse in (parse_inbound, parse_receipt):
        try:
            event = parse(body)
        except MobileMessagePayloadError:
            continue
        assert len(event.dedupe_key) == 64
        assert len(event.event_type) <= 128
        assert event.received_at.utcoffset() is not None
    with contextlib.suppress(MobileMessageSignatureError):
        verify_signature(body, timestamp, signature, SECRET, now=NOW)
