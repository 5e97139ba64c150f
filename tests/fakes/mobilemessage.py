"""A fake MobileMessage.com.au speaking the documented API over real HTTP, recording what it was sent.

It enforces what the real service enforces and our client must respect: HTTP Basic auth (401), request
validation (400 `{"message": …}`), at most 5 requests in flight per account (429 "Too many concurrent
requests. Please wait."), at most 10,000 messages a call, and `Idempotency-Key` replay — the same key
returns the original response byte for byte and sends nothing again. Tests can script failures ahead of the
normal behaviour and mark numbers as opted out (`blocked`).

Webhook helpers (`sign_webhook`, `inbound_payload`, `receipt_payload`) build what MobileMessage posts to us:
the documented JSON shapes and the `X-MM-Timestamp`/`X-MM-Signature` headers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar, Request, Response, get, post

from tests.servers import FakeProvider, compact_json, json_or_none

TOO_MANY = "Too many concurrent requests. Please wait."
MAX_MESSAGES = 10_000
MAX_LENGTH = 765

Scripted = tuple[int, dict[str, Any], dict[str, str]]


class FakeMobileMessage(FakeProvider):
    def __init__(
        self, username: str, password: str, *, max_concurrent: int = 5, latency: float = 0.0
    ) -> None:
        self.username, self.password = username, password
        self.max_concurrent = max_concurrent
        self.latency = latency
        self._lock = threading.Lock()
        self.reset()

    # --- what tests read and set ---------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests: list[dict[str, Any]] = []
            self.sent: list[dict[str, Any]] = []
            self.results: list[dict[str, Any]] = []
            self.max_in_flight_seen = 0
            self._in_flight = 0
            self._scripted: deque[Scripted] = deque()
            self._blocked: set[str] = set()
            self._replays: dict[str, tuple[int, bytes]] = {}

    def script(self, *responses: Scripted) -> None:
        """The next requests to /v1/messages get these (status, json body, headers) instead of a send."""
        with self._lock:
            self._scripted.extend(responses)

    def block(self, phone: str) -> None:
        """This number has opted out with the provider: its messages come back `blocked`."""
        with self._lock:
            self._blocked.add(_digits(phone))

    # --- the HTTP side --------------------------------------------------------------------------------

    def _app(self) -> Litestar:
        fake = self

        @post("/v1/messages")
        async def send_messages(request: Request) -> Response[bytes]:
            return await fake._handle(request, fake._send)

        @get("/v1/account/balance")
        async def balance(request: Request) -> Response[bytes]:
            return await fake._handle(request, lambda _r, _b: (200, compact_json({"balance": 1000})))

        return Litestar([send_messages, balance], openapi_config=None)

    async def _handle(self, request: Request, respond: Any) -> Response[bytes]:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.url.path,
            "headers": headers,
            "json": json_or_none(body),
            "received_at": time.time(),
        }
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
            over_limit = self._in_flight > self.max_concurrent
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if over_limit:
                status, content, extra = 429, compact_json({"message": TOO_MANY}), {}
            elif not self._authorised(headers.get("authorization", "")):
                status, content, extra = 401, compact_json({"message": "Unauthorised"}), {}
            else:
                status, content, extra = self._scripted_or(respond, request.url.path, headers, body)
        finally:
            with self._lock:
                self._in_flight -= 1
        record["status"] = status
        return Response(content, status_code=status, headers=extra, media_type="application/json")

    def _scripted_or(
        self, respond: Any, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            if path == "/v1/messages" and self._scripted:
                status, payload, extra = self._scripted.popleft()
                return status, compact_json(payload), extra
        status, content = respond(headers, body)
        return status, content, {}

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (user, password) == (self.username, self.password)

    def _send(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        key = headers.get("idempotency-key")
        if key is not None and len(key) > 255:
            return 400, compact_json({"message": "Idempotency-Key must be at most 255 characters."})
        with self._lock:
            if key is not None and key in self._replays:
                return self._replays[key]
        payload = json_or_none(body)
        problem = _validate(payload)
        if problem:
            return 400, compact_json({"message": problem})
        results = []
        with self._lock:
            for item in payload["messages"]:
                blocked = _digits(item["to"]) in self._blocked
                result = {
                    "to": item["to"],
                    "message": item["message"],
                    "sender": item["sender"],
                    "custom_ref": item.get("custom_ref"),
                    "status": "blocked" if blocked else "success",
                    "cost": 0 if blocked else 1,
                    "message_id": None if blocked else str(uuid.uuid4()),
                }
                results.append(result)
                self.results.append(result | {"idempotency_key": key})
                if not blocked:
                    self.sent.append(result | {"idempotency_key": key})
            response = (
                200,
                compact_json(
                    {"status": "complete", "total_cost": sum(r["cost"] for r in results), "results": results}
                ),
            )
            if key is not None:
                self._replays[key] = response
        return response


def _validate(payload: Any) -> str | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return "The messages field is required and must be an array."
    messages = payload["messages"]
    if not messages:
        return "At least one message is required."
    if len(messages) > MAX_MESSAGES:
        return f"A maximum of {MAX_MESSAGES} messages can be sent per request."
    for index, item in enumerate(messages):
        if not isinstance(item, dict):
            return f"messages.{index} must be an object."
        for field in ("to", "message", "sender"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                return f"messages.{index}.{field} is required."
        if len(item["message"]) > MAX_LENGTH:
            return f"messages.{index}.message may not be greater than {MAX_LENGTH} characters."
        if not 8 <= len(_digits(item["to"])) <= 15:
            return f"messages.{index}.to is not a valid phone number."
    return None


def _digits(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return "61" + digits[1:] if digits.startswith("0") else digits


# --- webhooks MobileMessage sends us ------------------------------------------------------------------------


def sign_webhook(body: bytes, secret: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two signature headers MobileMessage sends: hex HMAC-SHA256 over `f"{timestamp}.{body}"`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-MM-Timestamp": stamp, "X-MM-Signature": signature}


def _wire_time(at: datetime | None) -> str:
    """MobileMessage's `received_at`: UTC, `YYYY-MM-DD HH:MM:SS`, no zone suffix."""
    moment = datetime.now(UTC) if at is None else at
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def inbound_payload(
    message: str = "Yes, I'd like to confirm my appointment",
    *,
    sender: str = "61412345678",
    to: str = "61400000010",
    received_at: datetime | None = None,
    kind: str = "inbound",
    original_message_id: str = "",
    original_custom_ref: str = "",
) -> dict[str, Any]:
    """An inbound-message webhook body as documented; unknown `original_*` are empty strings, as sent."""
    return {
        "to": to,
        "sender": sender,
        "message": message,
        "received_at": _wire_time(received_at),
        "type": kind,
        "original_message_id": original_message_id,
        "original_custom_ref": original_custom_ref,
    }


def receipt_payload(
    message_id: str | None = None,
    status: str = "delivered",
    *,
    to: str = "61412345678",
    sender: str = "AvatarImg",
    message: str | None = "Your appointment is confirmed for tomorrow at 3pm",
    custom_ref: str = "",
    received_at: datetime | None = None,
    part_number: int = 1,
    total_parts: int | None = 1,
) -> dict[str, Any]:
    """A status-update (delivery receipt) webhook body as documented: one per message part."""
    payload: dict[str, Any] = {
        "to": to,
        "sender": sender,
        "custom_ref": custom_ref,
        "status": status,
        "message_id": message_id or str(uuid.uuid4()),
        "received_at": _wire_time(received_at),
        "part_number": part_number,
    }
    if message is not None:
        payload["message"] = message
    if total_parts is not None:
        payload["total_parts"] = total_parts
    return payload
