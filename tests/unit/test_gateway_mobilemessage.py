"""MobileMessage's two webhooks through the real gateway: verify, store durably and idempotently, then answer;
never accept an unsigned webhook, never a 500.

Prefect is deliberately unreachable here (a closed port): acceptance must not depend on it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import create_engine, text

from models import InboxStatus, Settings, WebhookEvent, session_scope
from providers.mobilemessage_webhooks import parse_inbound, parse_receipt
from tests.fakes.mobilemessage import inbound_payload, receipt_payload, sign_webhook
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

INCOMING = "/webhooks/mobilemessage/incoming"
STATUS = "/webhooks/mobilemessage/status"
SECRET = b"mm-gateway-unit-secret"
PRE_SIGNED = "Yes, I'd like to confirm my appointment"


def _settings(database_url: str, **overrides: object) -> Settings:
    values = {
        "crm_database_url": database_url,
        "mobilemessage_webhook_secret": SECRET.decode(),
        "gateway_max_body_bytes": 64 * 1024,
        "dispatch_poll_seconds": 60.0,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def client(db: str) -> AsyncIterator[AsyncTestClient]:
    app = create_app(_settings(db), prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


def _signed(payload: dict[str, object], **kw: object) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", **sign_webhook(body, SECRET, **kw)}  # type: ignore[arg-type]


def _rows() -> list[tuple[int, str, str, str]]:
    with session_scope() as session:
        query = text("SELECT id, source, dedupe_key, event_type FROM webhookevent ORDER BY id")
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


async def test_a_signed_inbound_sms_is_stored_before_the_answer(client: AsyncTestClient, db: str) -> None:
    body, headers = _signed(inbound_payload(PRE_SIGNED, original_custom_ref="msg:12"))
    response = await client.post(INCOMING, content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    fresh = create_engine(db)  # another connection already sees the committed row
    with fresh.connect() as connection:
        row = connection.execute(
            text("SELECT id, source, dedupe_key, event_type, status FROM webhookevent")
        ).one()
    fresh.dispose()
    assert row.id == response.json()["event_id"]
    assert (row.source, row.event_type, row.status) == ("mobilemessage", "sms.inbound", InboxStatus.RECEIVED)
    assert row.dedupe_key == parse_inbound(body).dedupe_key
    with session_scope() as session:
        stored = session.get(WebhookEvent, row.id)
        assert stored is not None and stored.body == body  # the exact signed bytes


async def test_an_unsubscribe_is_stored_as_its_own_event_type(client: AsyncTestClient) -> None:
    body, headers = _signed(inbound_payload("", kind="unsubscribe"))
    response = await client.post(INCOMING, content=body, headers=headers)
    assert response.json()["status"] == "accepted"
    [(_, source, _, event_type)] = _rows()
    assert (source, event_type) == ("mobilemessage", "sms.unsubscribe")


async def test_a_redelivered_inbound_sms_is_a_duplicate(client: AsyncTestClient) -> None:
    payload = inbound_payload(PRE_SIGNED)
    body, headers = _signed(payload)
    first = await client.post(INCOMING, content=body, headers=headers)
    # MobileMessage re-signs a retry with a new timestamp; the event is still the same one.
    again_body, again_headers = _signed(payload, timestamp=int(headers["X-MM-Timestamp"]) + 30)
    again = await client.post(INCOMING, content=again_body, headers=again_headers)

    assert first.json()["status"] == "accepted"
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert len(_rows()) == 1


async def test_a_delivery_receipt_is_stored_under_its_own_source(client: AsyncTestClient) -> None:
    body, headers = _signed(receipt_payload("mm-1", "delivered", part_number=2, total_parts=2))
    response = await client.post(STATUS, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    [(event_id, source, dedupe_key, event_type)] = _rows()
    assert event_id == response.json()["event_id"]
    assert (source, event_type) == ("mobilemessage-status", "sms.status.delivered")
    assert dedupe_key == parse_receipt(body).dedupe_key

    again = await client.post(STATUS, content=body, headers=headers)
    assert again.json() == {"status": "duplicate", "event_id": event_id}
    later, later_headers = _signed(receipt_payload("mm-1", "failed", part_number=2, total_parts=2))
    assert (await client.post(STATUS, content=later, headers=later_headers)).json()["status"] == "accepted"
    assert len(_rows()) == 2


async def test_the_same_hash_under_the_two_sources_does_not_collide(client: AsyncTestClient) -> None:
    inbound, inbound_headers = _signed(inbound_payload())
    receipt, receipt_headers = _signed(receipt_payload())
    assert (await client.post(INCOMING, content=inbound, headers=inbound_headers)).status_code == 200
    assert (await client.post(STATUS, content=receipt, headers=receipt_headers)).status_code == 200
    assert sorted(source for _, source, _, _ in _rows()) == ["mobilemessage", "mobilemessage-status"]


def _bad_headers(body: bytes) -> dict[str, dict[str, str]]:
    good = sign_webhook(body, SECRET)
    return {
        "unsigned": {},
        "missing signature": {"X-MM-Timestamp": good["X-MM-Timestamp"]},
        "missing timestamp": {"X-MM-Signature": good["X-MM-Signature"]},
        "wrong secret": sign_webhook(body, b"not our secret"),
        "other body": sign_webhook(body + b" ", SECRET),
        "stale": sign_webhook(body, SECRET, int(good["X-MM-Timestamp"]) - 301),
        "future": sign_webhook(body, SECRET, int(good["X-MM-Timestamp"]) + 301),
        "not hex": {**good, "X-MM-Signature": "g" * 64},
        "not seconds": {**good, "X-MM-Timestamp": "now"},
    }


@pytest.mark.parametrize("url", [INCOMING, STATUS])
@pytest.mark.parametrize("case", list(_bad_headers(b"")))
async def test_bad_or_missing_signatures_are_401_and_store_nothing(
    client: AsyncTestClient, url: str, case: str
) -> None:
    body = json.dumps(inbound_payload() if url == INCOMING else receipt_payload()).encode()
    response = await client.post(url, content=body, headers=_bad_headers(body)[case])
    assert response.status_code == 401, (case, response.text)
    assert response.json()["detail"] == "signature verification failed"  # the same whatever the reason
    assert _rows() == []


@pytest.mark.parametrize("secret", [None, ""])
@pytest.mark.parametrize("url", [INCOMING, STATUS])
async def test_without_a_configured_secret_everything_is_refused(
    db: str, url: str, secret: str | None, gateway_log: pytest.LogCaptureFixture
) -> None:
    app = create_app(
        _settings(db, mobilemessage_webhook_secret=secret), prefect_api_url="http://127.0.0.1:9/api"
    )
    async with AsyncTestClient(app=app) as client:
        body, headers = _signed(inbound_payload() if url == INCOMING else receipt_payload())
        unsigned = await client.post(url, content=body)
        signed = await client.post(url, content=body, headers=headers)
    assert unsigned.status_code == signed.status_code == 401
    assert signed.json()["detail"] == "signature verification failed"  # not which integrations are set up
    if secret is None:  # that is for the log
        assert "MOBILEMESSAGE_WEBHOOK_SECRET is not set" in gateway_log.text
    assert _rows() == []


async def test_the_tolerance_comes_from_settings(db: str) -> None:
    app = create_app(
        _settings(db, mobilemessage_webhook_tolerance_seconds=5), prefect_api_url="http://127.0.0.1:9/api"
    )
    body = json.dumps(inbound_payload()).encode()
    async with AsyncTestClient(app=app) as client:
        headers = sign_webhook(body, SECRET)
        old = sign_webhook(body, SECRET, int(headers["X-MM-Timestamp"]) - 60)
        assert (await client.post(INCOMING, content=body, headers=old)).status_code == 401
        assert (await client.post(INCOMING, content=body, headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("url", "payload", "reason"),
    [
        (INCOMING, b"not json", "body is not valid JSON"),
        (INCOMING, b"[]", "body is not a JSON object"),
        (INCOMING, json.dumps({**inbound_payload(), "sender": ""}).encode(), "sender missing"),
        (INCOMING, json.dumps({**inbound_payload(), "message": None}).encode(), "message missing"),
        (STATUS, json.dumps({**receipt_payload(), "message_id": ""}).encode(), "message_id missing"),
        (STATUS, json.dumps({**receipt_payload(), "status": None}).encode(), "status missing"),
    ],
)
async def test_signed_but_malformed_bodies_are_400_with_a_reason(
    client: AsyncTestClient, url: str, payload: bytes, reason: str
) -> None:
    response = await client.post(url, content=payload, headers=sign_webhook(payload, SECRET))
    assert response.status_code == 400
    assert response.json()["detail"] == f"malformed body: {reason}"
    assert "61412345678" not in response.text
    assert _rows() == []


async def test_both_routes_are_in_the_openapi_schema(client: AsyncTestClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert INCOMING in schema["paths"] and STATUS in schema["paths"]


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = ["to", "sender", "from", "message", "received_at", "timestamp", "type", "original_message_id"]
_FIELDS += ["original_custom_ref", "status", "message_id", "custom_ref", "part_number", "total_parts"]
_FUZZ_BASES = [
    inbound_payload(),
    inbound_payload(kind="unsubscribe"),
    receipt_payload(),
]  # built once, not per example


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.text(max_size=512).map(str.encode),
        st.builds(
            lambda base, extra: json.dumps({**base, **extra}).encode(),
            st.sampled_from(_FUZZ_BASES),
            st.dictionaries(st.sampled_from(_FIELDS), _JSON_VALUES, max_size=4),
        ),
    ),
    url=st.sampled_from([INCOMING, STATUS]),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
async def test_validly_signed_bodies_never_yield_a_5xx(
    client: AsyncTestClient, body: bytes, url: str, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    headers.update(sign_webhook(body, SECRET))
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code in {200, 400}, (response.status_code, response.text)
