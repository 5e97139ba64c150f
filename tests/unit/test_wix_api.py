"""The Wix Bookings Reader client against the fake Wix API over real HTTP: the documented request shape,
cursor paging to the last page, and 429 / 5xx retried (honouring Retry-After) while other 4xx are not."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from providers.wix_api import WixApiError, WixBookingsClient
from providers.wix_simulator import booking_payload
from tests.fakes.wix_api import FakeWixApi

API_KEY, SITE_ID = "IST.wix-api-key", "a8f5c1b2-0000-4000-8000-00000000site"
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def wix_api() -> Iterator[FakeWixApi]:
    with FakeWixApi(API_KEY, SITE_ID) as fake:
        yield fake


@pytest.fixture
def fake(wix_api: FakeWixApi) -> FakeWixApi:
    wix_api.reset()
    return wix_api


def changed_at(moment: datetime, revision: int = 1) -> dict[str, Any]:
    """A booking whose last change (`updatedDate`) was at `moment`."""
    return booking_payload(
        booking_id=str(uuid.uuid4()), revision=revision, created=moment - timedelta(minutes=revision - 1)
    )


def read_all(
    fake: FakeWixApi, since: datetime, until: datetime, *, page_size: int = 100, **options: Any
) -> tuple[list[dict[str, Any]], list[float], int]:
    """Every page's bookings, the pauses the client took, and its request count."""
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def run() -> tuple[list[dict[str, Any]], int]:
        async with WixBookingsClient(fake.url, API_KEY, SITE_ID, sleep=sleep, **options) as client:
            found = [
                b async for page in client.bookings_updated(since, until, page_size=page_size) for b in page
            ]
            return found, client.requests

    found, requests = asyncio.run(run())
    return found, pauses, requests


def test_pages_through_the_window_in_update_order_with_the_documented_request(fake: FakeWixApi) -> None:
    inside = [changed_at(T0 + timedelta(minutes=i)) for i in range(250)]
    before, at_end = changed_at(T0 - timedelta(seconds=1)), changed_at(T0 + timedelta(hours=5))
    fake.put(*reversed(inside), before, at_end)

    found, pauses, requests = read_all(fake, T0, T0 + timedelta(hours=5))

    assert [b["id"] for b in found] == [b["id"] for b in inside]  # [since, until), oldest change first
    assert requests == len(fake.requests) == 3 and pauses == []
    first, second = fake.requests[0], fake.requests[1]
    assert first["headers"]["authorization"] == API_KEY and first["headers"]["wix-site-id"] == SITE_ID
    assert first["body"] == {
        "query": {
            "filter": {
                "updatedDate": {"$gte": "2026-12-01T00:00:00.000Z", "$lt": "2026-12-01T05:00:00.000Z"}
            },
            "sort": [{"fieldName": "updatedDate", "order": "ASC"}],
            "cursorPaging": {"limit": 100},
        }
    }
    assert (
        set(second["body"]["query"]) == {"cursorPaging"} and second["body"]["query"]["cursorPaging"]["cursor"]
    )


def test_429_waits_as_long_as_retry_after_says_and_5xx_is_retried(fake: FakeWixApi) -> None:
    fake.put(*(changed_at(T0 + timedelta(minutes=i)) for i in range(3)))
    fake.script(
        (429, {"message": "rate limit exceeded"}, {"Retry-After": "7"}),
        (503, {"message": "unavailable"}, {}),
        (500, {}, {}),
    )

    found, pauses, requests = read_all(fake, T0, T0 + timedelta(days=1))

    assert len(found) == 3 and requests == 4
    assert pauses[0] >= 7 and len(pauses) == 3


def test_a_failure_mid_paging_is_retried_on_the_same_cursor(fake: FakeWixApi) -> None:
    fake.put(*(changed_at(T0 + timedelta(minutes=i)) for i in range(5)))

    async def run() -> list[str]:
        async with WixBookingsClient(fake.url, API_KEY, SITE_ID, sleep=_no_sleep) as client:
            found: list[str] = []
            async for page in client.bookings_updated(T0, T0 + timedelta(days=1), page_size=2):
                found += [b["id"] for b in page]
                if len(found) == 2:
                    fake.script((502, {}, {}))
            return found

    found = asyncio.run(run())
    assert len(found) == len(set(found)) == 5
    assert fake.requests[1]["body"] == fake.requests[2]["body"]  # the refused page was asked for again


def test_persistent_5xx_gives_up_retryable_and_a_bad_key_at_once(fake: FakeWixApi) -> None:
    fake.script(*[(503, {"message": "unavailable"}, {})] * 3)
    with pytest.raises(WixApiError) as down:
        read_all(fake, T0, T0 + timedelta(days=1), max_attempts=3)
    assert down.value.retryable and down.value.status_code == 503 and len(fake.requests) == 3

    fake.reset()

    async def wrong_key() -> None:
        async with WixBookingsClient(fake.url, "not-the-key", SITE_ID, sleep=_no_sleep) as client:
            async for _ in client.bookings_updated(T0, T0 + timedelta(days=1)):
                pass

    with pytest.raises(WixApiError) as refused:
        asyncio.run(wrong_key())
    assert not refused.value.retryable and refused.value.status_code == 403 and len(fake.requests) == 1
    assert "not authorized" in str(refused.value)


async def _no_sleep(seconds: float) -> None:
    return None
