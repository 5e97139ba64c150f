"""Wix's REST API, for what reconciliation reads: Bookings Reader V2 "Query Extended Bookings".

The request and response shapes we rely on (Wix's REST reference; sources and details in docs/wix.md):
- `POST {WIX_API_URL}/bookings/bookings-reader/v2/extended-bookings/query`, headers `Authorization: <API key>`
  and `wix-site-id: <site id>` (a site-level call made with an API key).
- Body `{"query": {"filter": …, "sort": [{"fieldName": …, "order": "ASC"}], "cursorPaging": {"limit": n}}}`
  (n ≤ 100);
  `updatedDate` supports `$gte`/`$lt` and is sortable; dates in filters are UTC. Later pages send only
  `{"query": {"cursorPaging": {"limit": …, "cursor": <pagingMetadata.cursors.next>}}}`: with a cursor, Wix
  takes the filter and sort from the cursor and ignores any sent again.
- Response `{"extendedBookings": [{"booking": {…Booking V2…}, …}], "pagingMetadata": {"count": …,
  "cursors": {"next": "…"|null}, "hasNext": …}}`; no next cursor means the last page.

Pages are read one request at a time (the friendliest pace for a rate-limited API); 429 and 5xx are retried
with backoff and jitter, honouring `Retry-After`, as every provider client here does. Reading is idempotent,
so a timeout is retried too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Self

import httpx

from models.settings import Settings
from providers.retry import WIX_API, Backoff, RetryPolicy, retry_after_seconds
from providers.wix_simulator import wix_time

logger = logging.getLogger(__name__)

QUERY_EXTENDED_BOOKINGS = "/bookings/bookings-reader/v2/extended-bookings/query"
MAX_PAGE_SIZE = 100  # "Retrieves up to 100 bookings"


class WixApiError(Exception):
    """A query Wix did not answer; `retryable` says whether a later run could succeed."""

    def __init__(self, reason: str, *, status_code: int | None, retryable: bool) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.retryable = retryable


def updated_between_query(since: datetime, until: datetime, page_size: int = MAX_PAGE_SIZE) -> dict[str, Any]:
    """The first page's body: bookings whose `updatedDate` is in [since, until), oldest change first."""
    return {
        "query": {
            "filter": {"updatedDate": {"$gte": wix_time(since), "$lt": wix_time(until)}},
            "sort": [{"fieldName": "updatedDate", "order": "ASC"}],
            "cursorPaging": {"limit": page_size},
        }
    }


class WixBookingsClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        site_id: str,
        *,
        timeout: float = 20.0,
        max_attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"Authorization": api_key, "wix-site-id": site_id, "Accept": "application/json"},
        )
        self._max_attempts = max(1, max_attempts)
        self._retry = RetryPolicy(self._max_attempts, Backoff(base_delay, max_delay), WIX_API)
        self._sleep = sleep
        self.requests = 0  # made, retries included: the benchmark and the run's summary report it

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        if not settings.wix_api_configured:
            raise ValueError("WIX_API_KEY and WIX_SITE_ID must be set to read bookings from Wix")
        assert settings.wix_api_key is not None and settings.wix_site_id is not None
        return cls(
            settings.wix_api_url,
            settings.wix_api_key.get_secret_value(),
            settings.wix_site_id.strip(),
            timeout=settings.wix_timeout_seconds,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def bookings_updated(
        self, since: datetime, until: datetime, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Each page's booking objects (`extendedBookings[].booking`, as Wix sent them), page after page."""
        body = updated_between_query(since, until, page_size)
        while True:
            page = await self._query(body)
            yield [item["booking"] for item in page["extendedBookings"]]
            cursor = page["next"]
            if not cursor:
                return
            body = {"query": {"cursorPaging": {"limit": page_size, "cursor": cursor}}}

    async def _query(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._request(body)
        try:
            document = response.json()
            items = document.get("extendedBookings") or []
            if not isinstance(items, list) or not all(
                isinstance(item, dict) and isinstance(item.get("booking"), dict) for item in items
            ):
                raise TypeError("extendedBookings[].booking")
            cursors = (document.get("pagingMetadata") or {}).get("cursors") or {}
            return {"extendedBookings": items, "next": cursors.get("next")}
        except (ValueError, TypeError, AttributeError) as exc:
            raise WixApiError(
                f"Wix answered {response.status_code} with an unreadable body ({exc})",
                status_code=response.status_code,
                retryable=False,
            ) from None

    async def _request(self, body: dict[str, Any]) -> httpx.Response:
        reason, status_code = "no attempt made", None
        for attempt in range(1, self._max_attempts + 1):
            retry_after: float | None = None
            self.requests += 1
            try:
                response = await self._http.post(QUERY_EXTENDED_BOOKINGS, json=body)
            except httpx.TimeoutException:
                reason, status_code = "timed out waiting for Wix", None
            except httpx.TransportError as exc:
                reason, status_code = f"could not reach Wix ({type(exc).__name__})", None
            else:
                status_code = response.status_code
                if status_code < 400:
                    return response
                reason = f"Wix {status_code}: {_error_text(response)}"
                if status_code not in self._retry.retryable:  # bad key, missing permission, bad query
                    raise WixApiError(reason, status_code=status_code, retryable=False)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt == self._max_attempts:
                break
            delay = self._retry.delay(attempt, retry_after)
            logger.warning("%s; retry %s/%s in %.1fs", reason, attempt, self._max_attempts - 1, delay)
            await self._sleep(delay)
        raise WixApiError(reason, status_code=status_code, retryable=True)


def _error_text(response: httpx.Response) -> str:
    """Wix's error body names the problem (`message`, or `details.applicationError.description`)."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return response.reason_phrase or "error"
    if isinstance(body, dict):
        if isinstance(body.get("message"), str) and body["message"]:
            return body["message"][:300]
        application = (body.get("details") or {}).get("applicationError") or {}
        if isinstance(application, dict) and isinstance(application.get("description"), str):
            return application["description"][:300]
    return response.reason_phrase or "error"
