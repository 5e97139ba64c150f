"""The Signed Event Webhook check and the batch parser: the sendgrid library's own test vector and batches
signed here pass; tampered bodies, other keys, stale or future timestamps, garbage and missing headers fail
with a SendGridSignatureError (never another exception); malformed batches fail with a reason."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.sendgrid_webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SendGridPayloadError,
    SendGridSignatureError,
    load_public_key,
    parse_batch,
    parse_event,
    verify_signature,
)
from tests.fakes.sendgrid_events import (
    LIBRARY_EVENT,
    LIBRARY_OTHER_PUBLIC_KEY,
    LIBRARY_PAYLOAD,
    LIBRARY_PUBLIC_KEY,
    LIBRARY_SIGNATURE,
    LIBRARY_TIMESTAMP,
    EventSigner,
    batch,
    event,
)

SIGNER = EventSigner()
LIBRARY_NOW = int(LIBRARY_TIMESTAMP) + 60


def _check(body: bytes, headers: dict[str, str], key: str | None = None, **kw: object) -> None:
    verify_signature(
        body,
        headers.get(TIMESTAMP_HEADER),
        headers.get(SIGNATURE_HEADER),
        key or SIGNER.public_key,
        **kw,  # type: ignore[arg-type]
    )


# --- what must pass ----------------------------------------------------------------------------------


def test_the_sendgrid_librarys_own_test_vector_verifies() -> None:
    verify_signature(
        LIBRARY_PAYLOAD.encode(), LIBRARY_TIMESTAMP, LIBRARY_SIGNATURE, LIBRARY_PUBLIC_KEY, now=LIBRARY_NOW
    )
    [parsed] = parse_batch(LIBRARY_PAYLOAD.encode())
    assert (parsed.event, parsed.sg_event_id, parsed.reason) == (
        "dropped",
        LIBRARY_EVENT["sg_event_id"],
        "Bounced Address",
    )
    assert parsed.occurred_at == datetime(2020, 9, 14, 19, 41, 32, tzinfo=UTC)


def test_a_batch_signed_with_a_key_made_here_verifies() -> None:
    body = batch(event("delivered"), event("open"))
    _check(body, SIGNER.headers(body))


def test_the_key_may_be_pasted_in_pem_armour() -> None:
    lines = [LIBRARY_PUBLIC_KEY[:64], LIBRARY_PUBLIC_KEY[64:]]
    pem = "\n".join(["-----BEGIN PUBLIC KEY-----", *lines, "-----END PUBLIC KEY-----", ""])
    verify_signature(LIBRARY_PAYLOAD.encode(), LIBRARY_TIMESTAMP, LIBRARY_SIGNATURE, pem, now=LIBRARY_NOW)


def test_a_retry_up_to_the_tolerance_still_verifies() -> None:
    body = batch(event("bounce", type="bounce"))
    stamp = int(time.time()) - DEFAULT_TOLERANCE_SECONDS + 5  # signed once, retried for a day
    _check(body, SIGNER.headers(body, stamp))
    assert DEFAULT_TOLERANCE_SECONDS > 24 * 3600  # SendGrid retries for up to 24 hours


# --- what must fail ----------------------------------------------------------------------------------


def _library_case(**changes: object) -> tuple[bytes, str | None, str | None, str]:
    values: dict[str, object] = {
        "body": LIBRARY_PAYLOAD.encode(),
        "timestamp": LIBRARY_TIMESTAMP,
        "signature": LIBRARY_SIGNATURE,
        "key": LIBRARY_PUBLIC_KEY,
    }
    values.update(changes)
    return values["body"], values["timestamp"], values["signature"], values["key"]  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("case", "changes", "message"),
    [
        ("other key", {"key": LIBRARY_OTHER_PUBLIC_KEY}, "does not match the body"),
        ("payload", {"body": b"payload"}, "does not match the body"),
        ("no CRLF", {"body": LIBRARY_PAYLOAD.rstrip().encode()}, "does not match the body"),
        ("one byte", {"body": LIBRARY_PAYLOAD.replace("Bounced", "Bouncee").encode()}, "does not match"),
        (
            "other signature",
            {
                "signature": "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQs"
                "bVRamr2nlxFDWYNH3j/0="
            },
            "does not match",
        ),
        ("other timestamp", {"timestamp": str(int(LIBRARY_TIMESTAMP) + 1)}, "does not match the body"),
        ("word timestamp", {"timestamp": "timestamp"}, "is not Unix seconds"),
        ("missing timestamp", {"timestamp": None}, f"missing {TIMESTAMP_HEADER} header"),
        ("blank timestamp", {"timestamp": "  "}, f"missing {TIMESTAMP_HEADER} header"),
        ("missing signature", {"signature": None}, f"missing {SIGNATURE_HEADER} header"),
        ("not base64", {"signature": "not base64!"}, "is not base64"),
        ("base64 of junk", {"signature": "AAAA"}, "does not match the body"),
        ("truncated DER", {"signature": LIBRARY_SIGNATURE[:40]}, "does not match the body"),
        ("huge", {"signature": "A" * 4000}, "too long"),
        ("latin-1 body", {"body": LIBRARY_PAYLOAD.encode() + b"\xff"}, "not UTF-8"),
        (
            "garbage key",
            {"key": "bm90IGEga2V5"},
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key",
        ),
        ("empty key", {"key": "  "}, "SENDGRID_WEBHOOK_PUBLIC_KEY is empty"),
    ],
)
def test_a_bad_signature_fails_with_a_reason(case: str, changes: dict[str, object], message: str) -> None:
    body, timestamp, signature, key = _library_case(**changes)
    with pytest.raises(SendGridSignatureError, match=message):
        verify_signature(body, timestamp, signature, key, now=LIBRARY_NOW)


def test_an_rsa_key_is_refused_as_configuration() -> None:
    rsa_spki = (  # a 512-bit RSA SubjectPublicKeyInfo: a real public key, just not an ECDSA one
        "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMw9kqL6qaKMfH1sfMw1spdy6fQcdgIq0oc8Hy3U40kZ+Ppj1v4kPAe+0AMbBqYY2TU06h"
        "3rETmYIYTKrkvuSUkCAwEAAQ=="
    )
    try:
        load_public_key(rsa_spki)
    except SendGridSignatureError as exc:
        assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in str(exc)
    else:
        pytest.fail("an RSA key was accepted")


def test_a_stale_timestamp_fails_even_with_a_valid_signature() -> None:
    with pytest.raises(SendGridSignatureError, match="too old"):
        verify_signature(LIBRARY_PAYLOAD.encode(), LIBRARY_TIMESTAMP, LIBRARY_SIGNATURE, LIBRARY_PUBLIC_KEY)
    body = batch(event("delivered"))
    with pytest.raises(SendGridSignatureError, match="too old"):
        _check(body, SIGNER.headers(body, int(time.time()) - 601), tolerance=600)


def test_a_timestamp_from_the_future_fails() -> None:
    body = batch(event("delivered"))
    _check(body, SIGNER.headers(body, int(time.time()) + 60))  # a little clock skew is fine
    with pytest.raises(SendGridSignatureError, match="in the future"):
        _check(body, SIGNER.headers(body, int(time.time()) + 3600))


def test_a_batch_signed_by_someone_else_fails() -> None:
    body = batch(event("unsubscribe"))
    with pytest.raises(SendGridSignatureError, match="does not match"):
        _check(body, EventSigner().headers(body))


def test_a_body_changed_after_signing_fails() -> None:
    body = batch(event("delivered", outbox_id=1))
    headers = SIGNER.headers(body)
    tampered = body.replace(b'"outbox_id": "1"', b'"outbox_id": "2"')
    assert tampered != body
    with pytest.raises(SendGridSignatureError, match="does not match"):
        _check(tampered, headers)


@given(signature=st.text(max_size=120), timestamp=st.text(max_size=20))
def test_no_header_value_raises_anything_but_a_signature_error(signature: str, timestamp: str) -> None:
    with contextlib.suppress(SendGridSignatureError):
        verify_signature(LIBRARY_PAYLOAD.encode(), timestamp, signature, LIBRARY_PUBLIC_KEY, now=LIBRARY_NOW)


# --- parsing -----------------------------------------------------------------------------------------


def test_events_are_typed_and_custom_args_are_read() -> None:
    body = batch(
        event("click", outbox_id=42, campaign="spring-mri", variant="B", url="https://clinic.example/book"),
        event("bounce", type="bounce", reason="550 5.1.1 no such user", status="5.1.1"),
        event("group_unsubscribe", asm_group_id=12345, category="newsletter"),
        event("account_status_change", type="compliance_suspend"),
    )
    click, bounce, unsubscribe, unknown = parse_batch(body)
    assert (click.event, click.outbox_id, click.url) == ("click", 42, "https://clinic.example/book")
    assert (bounce.bounce_type, bounce.reason) == ("bounce", "550 5.1.1 no such user")
    assert unsubscribe.asm_group_id == 12345
    # Fields nothing acts on are not typed, but are kept as sent for the inbox.
    assert {k: click.data[k] for k in ("campaign", "variant")} == {"campaign": "spring-mri", "variant": "B"}
    assert (bounce.data["status"], unsubscribe.data["category"]) == ("5.1.1", "newsletter")
    assert unknown.event == "account_status_change"  # unknown event types are kept
    assert parse_event(click.to_json()) == click  # what the inbox stores per event parses back the same


def test_odd_optional_fields_do_not_cost_the_batch() -> None:
    [parsed] = parse_batch(
        batch(event("open", outbox_id="not a number", timestamp="soon", category=[1, "a"], reason=7))
    )
    assert parsed.outbox_id is None and parsed.occurred_at is None and parsed.reason is None
    assert parsed.data["category"] == [1, "a"]  # untyped, so never a reason to refuse the event


def test_an_empty_batch_is_no_events() -> None:
    assert parse_batch(b"[]") == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not valid JSON"),
        (b'{"event": "open"}', "body is not a JSON array"),
        (b"[1]", "event 0 is not a JSON object"),
        (
            json.dumps([event("open"), {**event("open"), "sg_event_id": ""}]).encode(),
            "event 1 has no sg_event_id",
        ),
        (
            json.dumps([{k: v for k, v in event("open").items() if k != "sg_event_id"}]).encode(),
            "event 0 has no sg_event_id",
        ),
        (json.dumps([{**event("open"), "sg_event_id": 5}]).encode(), "event 0: sg_event_id is not"),
        (json.dumps([{**event("open"), "sg_event_id": "x" * 129}]).encode(), "event 0: sg_event_id is not"),
        (json.dumps([{**event("open"), "event": None}]).encode(), "event 0 has no event name"),
        (json.dumps([{**event("open"), "event": "op en"}]).encode(), "event 0: event is not an event name"),
        (b"[" * 100_000, "body is not valid JSON"),
    ],
)
def test_malformed_batches_fail_with_a_reason_and_no_address(body: bytes, reason: str) -> None:
    with pytest.raises(SendGridPayloadError, match=reason) as caught:
        parse_batch(body)
    assert "alex@example.com" not in str(caught.value)
