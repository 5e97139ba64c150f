"""`/metrics`: what a Prometheus scrape shows (the requests made, per route and status; the inbox backlog;
the dispatcher's retries), and that it is refused without the token (404 while none is configured)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from models import Settings, WebhookEvent, session_scope
from providers.wix_simulator import WixKeys, booking_payload, sign_wix_jwt, wix_event
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

KEYS = WixKeys()
TOKEN = "metrics-test-token-0123456789"
WIX = "/webhooks/wix/bookings"


def _settings(database_url: str, **overrides: object) -> Settings:
    values = {
        "crm_database_url": database_url,
        "wix_public_key": KEYS.public_pem,
        "dispatch_poll_seconds": 60.0,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


def _booking() -> bytes:
    event_type = "wix.bookings.v2.booking_created"
    booking = booking_payload(booking_id=str(uuid.uuid4()), start=datetime.now(UTC) + timedelta(days=3))
    return sign_wix_jwt(KEYS, wix_event(event_type, booking, event_id=str(uuid.uuid4())), event_type)


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in the exposition text (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line) or re.fullmatch(rf"{name} (\S+)", line)
        if match is None:
            continue
        if len(match.groups()) == 1:
            return float(match.group(1)) if not labels else 0.0
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


async def _scrape(client: AsyncTestClient) -> str:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_a_scrape_shows_the_requests_made_and_the_backlog(db: str) -> None:
    app = create_app(_settings(db, metrics_token=TOKEN), prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as client:
        before = await _scrape(client)
        accepted = [await client.post(WIX, content=_booking()) for _ in range(3)]
        refused = [await client.post(WIX, content=b"not a jwt") for _ in range(2)]
        health = [await client.get("/healthz") for _ in range(4)]
        assert [r.status_code for r in accepted] == [200] * 3
        assert [r.status_code for r in refused] == [401] * 2
        assert [r.status_code for r in health] == [200] * 4
        after = await _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    requests = "avatar_crm_gateway_requests_total"
    assert delta(requests, method="POST", path=WIX, status_code="200") == 3
    assert delta(requests, method="POST", path=WIX, status_code="401") == 2
    assert delta(requests, method="GET", path="/healthz", status_code="200") == 4
    histogram = "avatar_crm_gateway_request_duration_seconds_count"
    assert delta(histogram, method="POST", path=WIX, status_code="200") == 3
    assert _sample(after, "avatar_crm_gateway_request_duration_seconds_bucket", path=WIX, le="+Inf") >= 3
    # Prefect is unreachable and the dispatcher polls once a minute: the three bookings wait in the inbox.
    with session_scope() as session:
        stored = session.execute(select(WebhookEvent.arrived_at, WebhookEvent.received_at)).all()
    assert len(stored) == 3
    assert all(arrived is not None and arrived <= received for arrived, received in stored)
    waiting = _sample(after, "avatar_crm_inbox_backlog", status="received") + _sample(
        after, "avatar_crm_inbox_backlog", status="dispatched"
    )
    assert waiting == 3
    assert _sample(after, "avatar_crm_inbox_backlog_oldest_seconds") >= 0
    assert "avatar_crm_dispatcher_retries" in after
    assert "avatar_crm_dispatcher_failed_rounds" in after


async def test_metrics_are_refused_without_the_token(db: str) -> None:
    app = create_app(_settings(db, metrics_token=TOKEN), prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        basic = await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert "avatar_crm_gateway_requests_total" not in response.text


async def test_metrics_are_not_there_while_no_token_is_configured(db: str) -> None:
    app = create_app(_settings(db), prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert "avatar_crm" not in response.text
