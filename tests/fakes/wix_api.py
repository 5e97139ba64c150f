"""A fake Wix REST API: Bookings Reader V2 "Query Extended Bookings", over real HTTP.

What it enforces is what our client must get right against the real one (docs/wix.md): the API key in
`Authorization` and the site in `wix-site-id` (403 otherwise, Wix's answer to a key without access); the body
`{"query": {"filter", "sort", "cursorPaging": {"limit" ≤ 100}}}` (400 otherwise); filters on `updatedDate`
with `$gte`/`$gt`/`$lt`/`$lte` (UTC ISO strings) and sorting by `updatedDate` or `id`; cursor paging where a
request carrying a cursor takes filter and sort from it; answers `{"extendedBookings": [{"booking": …}],
"pagingMetadata": {"count", "cursors": {"next"}, "hasNext"}}`. Tests script 429 (with `Retry-After`) and 5xx
answers ahead of the normal ones. Bookings are Booking V2 objects (`providers.wix_simulator.booking_payload`).
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from datetime import datetime
from typing import Any

from litestar import Litestar, Request, Response, post

from providers.wix_api import MAX_PAGE_SIZE, QUERY_EXTENDED_BOOKINGS
from tests.servers import FakeProvider, compact_json, json_or_none

Scripted = tuple[int, dict[str, Any], dict[str, str]]
_COMPARE = {
    "$gte": lambda a, b: a >= b,
    "$gt": lambda a, b: a > b,
    "$lte": lambda a, b: a <= b,
    "$lt": lambda a, b: a < b,
}


class FakeWixApi(FakeProvider):
    def __init__(self, api_key: str, site_id: str) -> None:
        self.api_key, self.site_id = api_key, site_id
        self._lock = threading.Lock()
        self.reset()

    # --- what tests read and set ---------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.bookings: dict[str, dict[str, Any]] = {}
            self.requests: list[dict[str, Any]] = []
            self._scripted: deque[Scripted] = deque()

    def put(self, *bookings: dict[str, Any]) -> None:
        """Wix now holds these booking objects (each replaces the same id's earlier state)."""
        with self._lock:
            for booking in bookings:
                self.bookings[booking["id"]] = booking

    def script(self, *responses: Scripted) -> None:
        """The next queries get these (status, json body, headers) instead of an answer."""
        with self._lock:
            self._scripted.extend(responses)

    def env(self) -> dict[str, str]:
        return {"WIX_API_URL": self.url, "WIX_API_KEY": self.api_key, "WIX_SITE_ID": self.site_id}

    # --- the HTTP side --------------------------------------------------------------------------------

    def _app(self) -> Litestar:
        fake = self

        @post(QUERY_EXTENDED_BOOKINGS, status_code=200)
        async def query(request: Request) -> Response[bytes]:
            body = json_or_none(await request.body())
            with fake._lock:
                fake.requests.append({"headers": dict(request.headers), "body": body})
                scripted = fake._scripted.popleft() if fake._scripted else None
            if scripted is not None:
                status, payload, headers = scripted
                return Response(
                    compact_json(payload), status_code=status, headers=headers, media_type="application/json"
                )
            status, payload = fake._answer(request.headers, body)
            return Response(compact_json(payload), status_code=status, media_type="application/json")

        return Litestar(route_handlers=[query])

    def _answer(self, headers: Any, body: Any) -> tuple[int, dict[str, Any]]:
        if headers.get("authorization") != self.api_key or headers.get("wix-site-id") != self.site_id:
            return 403, _error("PERMISSION_DENIED", "API key or site not authorized")
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, dict):
            return 400, _error("INVALID_ARGUMENT", "query is required")
        paging = query.get("cursorPaging") or {}
        limit = paging.get("limit", 50)
        if not isinstance(limit, int) or not 0 < limit <= MAX_PAGE_SIZE:
            return 400, _error("INVALID_ARGUMENT", f"cursorPaging.limit must be 1..{MAX_PAGE_SIZE}")
        if paging.get("cursor"):
            try:
                state = json.loads(base64.urlsafe_b64decode(paging["cursor"]))
            except ValueError:
                return 400, _error("INVALID_ARGUMENT", "invalid cursor")
            query_filter, sort, offset = state["filter"], state["sort"], state["offset"]
        else:
            query_filter, sort, offset = query.get("filter") or {}, query.get("sort") or [], 0
        try:
            matched = self._matching(query_filter, sort)
        except ValueError as exc:
            return 400, _error("INVALID_ARGUMENT", str(exc))
        page = matched[offset : offset + limit]
        has_next = offset + limit < len(matched)
        cursor = None
        if has_next:
            state = {"filter": query_filter, "sort": sort, "offset": offset + limit}
            cursor = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        return 200, {
            "extendedBookings": [{"booking": booking, "allowedActions": None} for booking in page],
            "pagingMetadata": {"count": len(page), "cursors": {"next": cursor}, "hasNext": has_next},
        }

    def _matching(self, query_filter: dict[str, Any], sort: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            bookings = list(self.bookings.values())
        for field_name, condition in query_filter.items():
            if field_name != "updatedDate" or not isinstance(condition, dict):
                raise ValueError(f"filter on {field_name} is not supported by this fake")
            for operator, value in condition.items():
                if operator not in _COMPARE:
                    raise ValueError(f"operator {operator} is not supported on updatedDate")
                bound = _instant(value)
                bookings = [b for b in bookings if _COMPARE[operator](_instant(b["updatedDate"]), bound)]
        keys = [(item.get("fieldName"), item.get("order", "ASC")) for item in sort] or [("id", "ASC")]
        for field_name, order in reversed(keys):
            if field_name not in {"updatedDate", "id"}:
                raise ValueError(f"sort by {field_name} is not supported by this fake")
            convert = _instant if field_name == "updatedDate" else str
            bookings.sort(key=lambda b: convert(b[field_name]), reverse=order == "DESC")
        return bookings


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.utcoffset() is None:
        raise ValueError("dates in filters must be UTC")
    return moment


def _error(code: str, message: str) -> dict[str, Any]:
    """Wix's error body: a message and the application error's code and description."""
    return {"message": message, "details": {"applicationError": {"code": code, "description": message}}}
