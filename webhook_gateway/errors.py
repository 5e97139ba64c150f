"""What the gateway refuses, what it says when something goes wrong, and what it writes down.

A request's head is bounded (size and number of headers) by the server as it reads, with the options every
way of starting the gateway passes (`SERVER_OPTIONS`), and checked again before any route.

Every request gets an id (a proxy's `X-Request-ID` if it is a plain token, else a new one), echoed in the
response, so a provider's failed delivery can be matched to the log line. An unexpected exception answers a
typed 500 naming that id and is logged with its traceback (Litestar logs exceptions only in debug mode):
the exception's type and the frames, never its message, the body or the query string, which may carry
patient details or tickets. Refused webhooks are logged once per client address a minute, with the address,
so a flood of forged requests costs one line a minute, not one each.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime

from litestar import MediaType, Request, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from webhook_gateway.outcomes import is_webhook, note_reason

logger = logging.getLogger(__name__)

# One text for every refused signature: which integrations are configured is nobody else's business.
UNAUTHORIZED = "signature verification failed"
REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}", re.ASCII)
_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_arrived_at: ContextVar[datetime | None] = ContextVar("request_arrived_at", default=None)


def request_id() -> str:
    """The id of the request being handled ("-" outside one)."""
    return _request_id.get()


def request_arrived_at() -> datetime | None:
    """When the gateway began handling the request (None outside one): the receipt of a webhook, from which
    its latency to the committed inbox row and to the end of its processing is measured (reporting/)."""
    return _arrived_at.get()


# What a request's head may hold. The size is enforced by the server as it reads (`SERVER_OPTIONS`: nothing
# past it is buffered, so a 50 MB header costs nothing); both are checked here again for any other server.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100
# How the gateway is served wherever it is started (`make up`, `avatar-crm gateway`): uvicorn's h11 parser is
# the one that bounds what it buffers of an incomplete request head (httptools reads a header of any size).
SERVER_OPTIONS: dict[str, object] = {"http": "h11", "h11_max_incomplete_event_size": MAX_HEADER_BYTES}


def server_cli_options() -> list[str]:
    """`SERVER_OPTIONS` as uvicorn command-line options."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in SERVER_OPTIONS.items()]


class RequestIdMiddleware(ASGIMiddleware):
    """Gives the request its id, and refuses a head past the limits (431) before anything reads it."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS or sum(len(k) + len(v) + 4 for k, v in headers) > MAX_HEADER_BYTES:
            _record_outcome(scope, 431)
            await _too_large(send)
            return
        given = next((v.decode("latin-1") for k, v in headers if k == b"x-request-id"), "")
        rid = given if _SAFE_REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        token = _request_id.set(rid)
        arrived = _arrived_at.set(datetime.now(UTC))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = rid
                _record_outcome(scope, message["status"])
            await send(message)

        try:
            await next_app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
            _arrived_at.reset(arrived)


def _record_outcome(scope: Scope, status: int) -> None:
    """Count a webhook request's answer (`webhookoutcome`, the error-rate KPI): a queue put, no I/O."""
    if not is_webhook(scope):
        return
    app = scope.get("litestar_app")
    recorder = app.state.get("outcomes") if app is not None else None
    if recorder is not None:
        recorder.record(scope, status)


async def _too_large(send: Send) -> None:
    body = b'{"status":"error","detail":"request headers too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def internal_error(request: Request, exc: Exception) -> Response[dict[str, str]]:
    """Any exception no handler expected: logged with its traceback and request id, answered a typed 500."""
    frames = "".join(traceback.TracebackException.from_exception(exc).stack.format())
    logger.error(
        "500 on %s %s [request %s]: %s\n%s",
        request.method,
        request.url.path,
        request_id(),
        type(exc).__name__,
        frames.rstrip(),
    )
    return Response(
        {"status": "error", "detail": "internal error", "request_id": request_id()},
        status_code=500,
        media_type=MediaType.JSON,
    )


class RejectionLog:
    """Refused requests, logged once per client address per `interval` seconds (with how many were refused).

    Bounded: at most `max_clients` addresses are remembered; past that the oldest are forgotten, which can
    only mean an extra line, never a lost one.
    """

    def __init__(self, interval: float = 60.0, max_clients: int = 10_000) -> None:
        self.interval = interval
        self.max_clients = max_clients
        self._seen: dict[str, tuple[float, int]] = {}  # client -> (last logged at, refused since)
        self._lock = threading.Lock()

    def refused(self, request: Request, what: str, reason: str) -> None:
        note_reason(request.scope, reason)  # counted with the answer (`webhookoutcome`), whatever is logged
        client = request.client.host if request.client else "unknown"
        now = time.monotonic()
        with self._lock:
            logged_at, since = self._seen.get(client, (float("-inf"), 0))
            if now - logged_at < self.interval:
                self._seen[client] = (logged_at, since + 1)
                return
            self._seen.pop(client, None)
            self._seen[client] = (now, 0)
            while len(self._seen) > self.max_clients:
                del self._seen[next(iter(self._seen))]
        more = f" ({since} more refused since the last line)" if since else ""
        logger.warning("refused %s from %s [request %s]: %s%s", what, client, request_id(), reason, more)
