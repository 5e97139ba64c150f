"""The webhook error rate KPI: requests posted through the gateway (accepted, bad signatures, expired,
oversized, malformed) are counted in `webhookoutcome` with their reasons, and the KPI equals what the test
counted itself. Nothing of the request (body, address) is stored."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from models import Settings, WebhookOutcome, session_scope
from providers.mobilemessage_webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from providers.mobilemessage_webhooks import sign as mm_sign
from providers.wix_simulator import sign_hmac, simple_event
from reporting.kpis import TARGETS, Window, kpis
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

SECRET = b"error-rate-secret"
MM_SECRET = "error-rate-mm-secret"
WIX = "/webhooks/wix/bookings"
MM = "/webhooks/mobilemessage/incoming"


def _settings(db: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        crm_database_url=db,
        wix_webhook_secret=SECRET.decode(),
        mobilemessage_webhook_secret=MM_SECRET,
        gateway_max_body_bytes=16 * 1024,
        dispatch_poll_seconds=60.0,
    )


def _booking() -> bytes:
    return simple_event("bookings/created", str(uuid.uuid4()), start=datetime.now(UTC) + timedelta(days=3))


async def test_the_error_rate_counts_every_refusal_by_reason(db: str) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    app = create_app(_settings(db), prefect_api_url="http://127.0.0.1:9/api")
    statuses: list[int] = []
    async with AsyncTestClient(app=app) as client:
        for _ in range(5):  # accepted
            body = _booking()
            r = await client.post(
                WIX, content=body, headers={"X-Wix-Webhook-Signature": sign_hmac(body, SECRET)}
            )
            statuses.append(r.status_code)
        for _ in range(3):  # bad signature
            r = await client.post(
                WIX, content=_booking(), headers={"X-Wix-Webhook-Signature": "sha256=" + "0" * 64}
            )
            statuses.append(r.status_code)
        for _ in range(2):  # oversized
            r = await client.post(WIX, content=b"x" * (16 * 1024 + 1))
            statuses.append(r.status_code)
        malformed = json.dumps({"event": "bookings/created", "data": {}}).encode()
        r = await client.post(
            WIX, content=malformed, headers={"X-Wix-Webhook-Signature": sign_hmac(malformed, SECRET)}
        )
        statuses.append(r.status_code)
        # A MobileMessage webhook signed an hour ago: expired.
        old = str(int(time.time()) - 3600)
        body = b'{"messages": []}'
        r = await client.post(
            MM,
            content=body,
            headers={TIMESTAMP_HEADER: old, SIGNATURE_HEADER: mm_sign(body, old, MM_SECRET.encode())},
        )
        statuses.append(r.status_code)
        health = await client.get("/healthz")  # not a webhook: not counted
    assert health.status_code == 200
    assert statuses == [200] * 5 + [401] * 3 + [413] * 2 + [400] + [401]
    # The answers are written once the gateway stops (or within a second while it runs).
    k = kpis(Window(start, datetime.now(UTC) + timedelta(minutes=1)))
    assert k.tally.webhook_requests == 12
    assert dict(k.tally.webhook_4xx) == {"signature": 3, "too_large": 2, "malformed": 1, "expired": 1}
    assert dict(k.tally.webhook_5xx) == {}
    assert k.webhook_error_rate == pytest.approx(7 / 12)
    (target,) = [t for t in TARGETS if t.key == "webhook_error_rate"]
    assert target.verdict(k.webhook_error_rate) == "not met"
    with session_scope() as session:
        rows = session.execute(select(WebhookOutcome)).scalars().all()
    assert {row.route for row in rows} == {WIX, MM}
    assert all(
        set(row.model_dump()) == {"id", "minute", "route", "status", "reason", "count"} for row in rows
    )
    # Outside the window: nothing.
    assert kpis(Window(start - timedelta(days=1), start)).tally.webhook_requests == 0
    assert kpis(Window(start - timedelta(days=1), start)).webhook_error_rate is None
