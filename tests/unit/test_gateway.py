"""The gateway's contract with providers: verify, store durably and idempotently, then answer; never a 500.

Prefect is deliberately unreachable here (a closed port): acceptance must not depend on it.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import create_engine, text

from models import InboxStatus, Settings, WebhookEvent, session_scope
from providers.wix_simulator import WixKeys, booking_payload, sign_hmac, sign_wix_jwt, simple_event, wix_event
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

URL = "/webhooks/wix/bookings"
SECRET = b"gateway-unit-secret"
KEYS = WixKeys()
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


def _settings(database_url: str, **overrides: object) -> Settings:
    values = {
        "crm_database_url": database_url,
        "wix_public_key": KEYS.public_pem,
        "wix_webhook_secret": SECRET.decode(),
        "gateway_max_body_bytes": 64 * 1024,
        "dispatch_poll_seconds": 60.0,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def client(db: str) -> AsyncIterator[AsyncTestClient]:
    app = create_app(_settings(db), prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


def _jwt(
    event_type: str = "wix.bookings.v2.booking_created", event_id: str | None = None, **kw: object
) -> bytes:
    booking = booking_payload(booking_id=str(uuid.uuid4()), start=START)
    return sign_wix_jwt(KEYS, wix_event(event_type, booking, event_id=event_id), event_type, **kw)  # type: ignore[arg-type]


def _rows() -> list[int]:
    with session_scope() as session:
        return list(session.execute(text("SELECT id FROM webhookevent")).scalars())


async def test_a_verified_wix_jwt_is_stored_before_the_answer(client: AsyncTestClient, db: str) -> None:
    body = _jwt(event_id="evt-123")
    response = await client.post(URL, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    # A brand-new connection (another process, as it were) already sees the committed row.
    fresh = create_engine(db)
    with fresh.connect() as connection:
        row = connection.execute(
            text("SELECT id, source, dedupe_key, event_type, status FROM webhookevent")
        ).one()
    fresh.dispose()
    assert row.id == response.json()["event_id"]
    assert (row.source, row.dedupe_key, row.status) == ("wix", "evt-123", InboxStatus.RECEIVED)
    assert row.event_type == "wix.bookings.v2.booking_created"
    with session_scope() as session:
        stored = session.get(WebhookEvent, row.id)
        assert stored is not None and stored.body == body  # decrypts to the exact signed bytes


async def test_redelivery_is_answered_duplicate_with_the_original_id(client: AsyncTestClient) -> None:
    first = await client.post(URL, content=_jwt(event_id="evt-dup"))
    again = await client.post(URL, content=_jwt(event_id="evt-dup"))  # re-signed, same Wix event id
    assert first.json()["status"] == "accepted"
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert len(_rows()) == 1


async def test_concurrent_redeliveries_store_one_row(client: AsyncTestClient) -> None:
    import asyncio

    body = _jwt(event_id="evt-race")
    answers = await asyncio.gather(*(client.post(URL, content=body) for _ in range(20)))
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["accepted"] + ["duplicate"] * 19
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert len(_rows()) == 1


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("expired", lambda: _jwt(iat=int(datetime.now(UTC).timestamp()) - 3600)),
        (
            "wrong key",
            lambda: sign_wix_jwt(
                WixKeys(),
                wix_event("wix.bookings.v2.booking_created", booking_payload()),
                "wix.bookings.v2.booking_created",
            ),
        ),
        ("tampered", lambda: _jwt()[:-6] + b"AAAAAA"),
        ("not a token", lambda: b'{"hello": "world"}'),
        ("empty", lambda: b""),
    ],
)
async def test_bad_jwt_is_401_and_stores_nothing(client: AsyncTestClient, case: str, body) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(URL, content=body())
    assert response.status_code == 401, case
    assert "signature" in response.json()["detail"]
    assert _rows() == []


async def test_hmac_simple_json_accepted_and_deduplicated_on_the_body(client: AsyncTestClient) -> None:
    body = simple_event("bookings/created", str(uuid.uuid4()), start=START)
    headers = {"X-Wix-Webhook-Signature": sign_hmac(body, SECRET)}
    first = await client.post(URL, content=body, headers=headers)
    second = await client.post(
        URL, content=body, headers={"X-Wix-Webhook-Signature": sign_hmac(body, SECRET, prefix=False)}
    )
    assert first.json()["status"] == "accepted"
    assert second.json()["status"] == "duplicate"
    import hashlib

    with session_scope() as session:
        row = session.get(WebhookEvent, first.json()["event_id"])
        assert row is not None and row.dedupe_key == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    "signature",
    ["sha256=" + "0" * 64, "", "sha256=", "not-hex", sign_hmac(b"other body", SECRET)],
)
async def test_bad_hmac_is_401(client: AsyncTestClient, signature: str) -> None:
    body = simple_event("bookings/created", start=START)
    response = await client.post(URL, content=body, headers={"X-Wix-Webhook-Signature": signature})
    assert response.status_code == 401
    assert _rows() == []


async def test_hmac_when_no_secret_is_configured_is_401(db: str) -> None:
    app = create_app(_settings(db, wix_webhook_secret=None), prefect_api_url="http://127.0.0.1:9/api")
    body = simple_event("bookings/created", start=START)
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            URL, content=body, headers={"X-Wix-Webhook-Signature": sign_hmac(body, SECRET)}
        )
    assert response.status_code == 401


async def test_signed_but_malformed_body_is_400_with_a_reason(client: AsyncTestClient) -> None:
    body = b'{"event": "bookings/created", "data": {"booking_id": "b1"}}'
    response = await client.post(
        URL, content=body, headers={"X-Wix-Webhook-Signature": sign_hmac(body, SECRET)}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed body: ")
    assert len(response.json()["detail"]) > len("malformed body: ")
    assert _rows() == []


async def test_a_verified_event_that_is_not_about_bookings_is_acknowledged_and_ignored(
    client: AsyncTestClient,
) -> None:
    inner = {"id": str(uuid.uuid4()), "entityFqdn": "wix.contacts.v4.contact", "slug": "created"}
    body = sign_wix_jwt(KEYS, inner, "wix.contacts.v4.contact_created")
    response = await client.post(URL, content=body)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert _rows() == []


async def test_an_oversized_body_is_413(client: AsyncTestClient) -> None:
    response = await client.post(URL, content=b"x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert _rows() == []


async def test_what_startup_built_is_left_out_of_full_collections_while_serving(db: str) -> None:
    """A full collection walking the import-time heap held the GIL 136 ms: the c=64 p99 (gateway_ingest)."""
    app = create_app(_settings(db), prefect_api_url="http://127.0.0.1:9/api")
    assert gc.get_freeze_count() == 0
    async with AsyncTestClient(app=app) as client:
        assert gc.get_freeze_count() > 100_000  # Prefect, Litestar, SQLAlchemy, pydantic and the app itself
        assert (await client.get("/healthz")).status_code == 200
    assert gc.get_freeze_count() == 0  # handed back on shutdown


async def test_health_ready_and_openapi(client: AsyncTestClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    # Prefect is unreachable in these tests: webhooks are still taken (200), processing is what is down.
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["prefect"].startswith("unavailable")
    assert checks["runner"] == "unknown"
    assert checks["dispatcher"] == "ok"  # nothing to hand over yet

    posted = await client.post(URL, content=_jwt(), headers={"Content-Type": "application/json"})
    assert posted.json()["status"] == "accepted"
    for _ in range(100):  # the dispatcher wakes for the new row and fails to reach Prefect
        checks = (await client.get("/readyz")).json()["checks"]
        if checks["dispatcher"] != "ok":
            break
        await asyncio.sleep(0.05)
    assert checks["dispatcher"].startswith("retrying (1 failed rounds): ConnectError")
    schema = (await client.get("/schema/openapi.json")).json()
    assert URL in schema["paths"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.text(max_size=512).map(str.encode),
        st.builds(lambda parts: b".".join(parts), st.lists(st.binary(max_size=64), min_size=3, max_size=3)),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda v: __import__("json").dumps({"event": "bookings/created", "data": v}).encode()),
    ),
    signed=st.booleans(),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "multipart/form-data"]
    ),
)
async def test_no_input_yields_a_500(
    client: AsyncTestClient, body: bytes, signed: bool, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if signed:
        headers["X-Wix-Webhook-Signature"] = sign_hmac(body, SECRET)
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code in {200, 400, 401, 413}, (response.status_code, response.text)


async def test_a_401_does_not_say_which_integrations_are_configured(db: str) -> None:
    app = create_app(
        _settings(db, wix_webhook_secret=None, wix_public_key=None), prefect_api_url="http://127.0.0.1:9/api"
    )
    body = simple_event("bookings/created", start=START)
    async with AsyncTestClient(app=app) as client:
        hmac_signed = await client.post(
            URL, content=body, headers={"X-Wix-Webhook-Signature": sign_hmac(body, SECRET)}
        )
        jwt = await client.post(URL, content=_jwt())
    for response in (hmac_signed, jwt):
        assert response.status_code == 401
        assert response.json()["detail"] == "signature verification failed"
        assert "WIX" not in response.text and "unset" not in response.text


async def test_an_unexpected_error_is_a_typed_500_logged_with_its_request_id(
    client: AsyncTestClient, monkeypatch: pytest.MonkeyPatch, gateway_log: pytest.LogCaptureFixture
) -> None:
    careless = "patient Alex Smith 0412 345 678"  # what an exception's message might carry

    def broken(raw: bytes) -> None:
        raise RuntimeError(careless)

    monkeypatch.setattr("providers.wix.parse_simple", broken)
    body = simple_event("bookings/created", start=START)
    response = await client.post(
        URL, content=body, headers={"X-Wix-Webhook-Signature": sign_hmac(body, SECRET)}
    )

    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    assert response.json() == {"status": "error", "detail": "internal error", "request_id": request_id}
    [record] = [r for r in gateway_log.records if r.levelname == "ERROR" and request_id in r.getMessage()]
    logged = record.getMessage()
    assert "RuntimeError" in logged and "in broken" in logged and URL in logged  # type, frames, route
    assert (
        "Alex" not in gateway_log.text
        and "0412" not in gateway_log.text
        and "bookings/created" not in gateway_log.text
    )
    assert _rows() == []


async def test_a_request_id_from_the_proxy_is_kept_and_odd_ones_replaced(client: AsyncTestClient) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": "edge-7f3a9c1d"})
    assert kept.headers["X-Request-ID"] == "edge-7f3a9c1d"
    odd = await client.get("/healthz", headers={"X-Request-ID": "a\tb" * 50})
    assert len(odd.headers["X-Request-ID"]) == 16 and "\t" not in odd.headers["X-Request-ID"]


async def test_refused_requests_are_logged_once_a_minute_per_client_with_its_address(
    client: AsyncTestClient, gateway_log: pytest.LogCaptureFixture
) -> None:
    for _ in range(50):
        response = await client.post(URL, content=b"not a jwt")
        assert response.status_code == 401
    lines = [
        r.getMessage()
        for r in gateway_log.records
        if r.levelname == "WARNING" and "refused" in r.getMessage()
    ]
    assert len(lines) == 1, lines
    assert "refused wix webhook from testclient" in lines[0]  # Litestar's test client's address


def test_the_rejection_log_counts_what_it_did_not_write(gateway_log: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from webhook_gateway.errors import RejectionLog

    log = RejectionLog(interval=0.2, max_clients=2)
    one, two, three = (
        SimpleNamespace(client=SimpleNamespace(host=h), scope={})
        for h in ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    )
    for _ in range(5):
        log.refused(one, "x", "bad")  # type: ignore[arg-type]
    log.refused(two, "x", "bad")  # type: ignore[arg-type]
    log.refused(three, "x", "bad")  # type: ignore[arg-type]  # one is forgotten (bounded memory)
    __import__("time").sleep(0.25)
    log.refused(two, "x", "bad")  # type: ignore[arg-type]
    lines = [r.getMessage() for r in gateway_log.records]
    assert [line.split(" [")[0] for line in lines] == [
        "refused x from 10.0.0.1",
        "refused x from 10.0.0.2",
        "refused x from 10.0.0.3",
        "refused x from 10.0.0.2",
    ]
    assert len(log._seen) == 2


@pytest.mark.parametrize(
    ("configured", "instance", "site", "expected"),
    [
        ({"wix_instance_id": "inst-clinic"}, "inst-clinic", "other-site", 200),
        ({"wix_instance_id": "inst-clinic"}, "inst-other", "other-site", 403),
        ({"wix_site_id": "site-clinic"}, "inst-any", "site-clinic", 200),
        ({"wix_site_id": "site-clinic"}, "inst-any", "site-other", 403),
        ({"wix_site_id": "site-clinic"}, "inst-any", None, 403),
        ({}, "inst-any", "site-any", 200),
    ],
)
async def test_a_wix_webhook_for_another_site_is_refused_and_not_stored(
    db: str, configured: dict[str, str], instance: str, site: str | None, expected: int
) -> None:
    booking = booking_payload(booking_id=str(uuid.uuid4()), start=START)
    body = sign_wix_jwt(
        KEYS,
        wix_event("wix.bookings.v2.booking_created", booking),
        "wix.bookings.v2.booking_created",
        instance_id=instance,
        site_id=site,
    )
    app = create_app(_settings(db, **configured), prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as client:
        response = await client.post(URL, content=body)
    assert response.status_code == expected, response.text
    assert len(_rows()) == (1 if expected == 200 else 0)
    if expected == 403:
        assert response.json()["detail"] == "webhook is not for this site"
