"""The one HTTP client for MobileMessage.com.au (Australian SMS).

The real API: `POST /v1/messages` with HTTP Basic auth, up to 10,000 messages a call, at most 5 requests
in flight per account (more get 429), and an `Idempotency-Key` header that makes a repeated call return the
original response instead of sending again. That header is what makes retrying safe: a timeout may mean
the provider did send, and the retry with the same key then costs nothing and sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx

from models.settings import Settings
from providers.retry import MOBILEMESSAGE, Backoff, RetryPolicy, retry_after_seconds

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_REQUEST = 10_000
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


@dataclass(frozen=True)
class SmsMessage:
    to: str
    message: str
    sender: str
    custom_ref: str | None = None


@dataclass(frozen=True)
class SmsResult:
    to: str
    status: str  # the provider's word, verbatim: "success", "blocked", "failed", …
    message_id: str | None
    custom_ref: str | None
    cost: float | int | None
    error: str | None


class MobileMessageError(Exception):
    """A send that did not go through; `retryable` says whether trying later could succeed."""

    def __init__(self, reason: str, *, status_code: int | None, retryable: bool, attempts: int) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.retryable = retryable
        self.attempts = attempts


def needs_unicode(messages: Sequence[SmsMessage]) -> bool:
    return any(ch not in _GSM7 for message in messages for ch in message.message)


class MobileMessageClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        max_in_flight: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(username, password),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self._max_attempts = max(1, max_attempts)
        self._max_in_flight = max_in_flight
        self._retry = RetryPolicy(self._max_attempts, Backoff(base_delay, max_delay), MOBILEMESSAGE)
        self._sleep = sleep
        self._semaphores: dict[int, asyncio.Semaphore] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        password = settings.mobilemessage_api_password
        return cls(
            settings.mobilemessage_api_url,
            settings.mobilemessage_api_username or "",
            password.get_secret_value() if password else "",
            timeout=settings.mobilemessage_timeout_seconds,
            max_attempts=settings.mobilemessage_max_attempts,
            max_in_flight=settings.mobilemessage_max_in_flight,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, messages: Sequence[SmsMessage], *, idempotency_key: str) -> list[SmsResult]:
        """Send up to 10,000 messages in one call; the same key is reused on every retry of it."""
        if not messages:
            return []
        if len(messages) > MAX_MESSAGES_PER_REQUEST:
            raise ValueError(f"at most {MAX_MESSAGES_PER_REQUEST} messages per request")
        payload = {
            "enable_unicode": needs_unicode(messages),
            "messages": [
                {"to": m.to, "message": m.message, "sender": m.sender}
                | ({"custom_ref": m.custom_ref} if m.custom_ref else {})
                for m in messages
            ],
        }
        response = await self._request(
            "POST", "/v1/messages", json=payload, headers={"Idempotency-Key": idempotency_key}
        )
        return _parse_results(response)

    async def balance(self) -> dict[str, Any]:
        response = await self._request("GET", "/v1/account/balance")
        return response.json()

    # --- the retry loop ----------------------------------------------------------------------------

    def _semaphore(self) -> asyncio.Semaphore:
        """Per event loop: a semaphore belongs to the loop it was first used in."""
        loop_id = id(asyncio.get_running_loop())
        semaphore = self._semaphores.get(loop_id)
        if semaphore is None:
            semaphore = self._semaphores[loop_id] = asyncio.Semaphore(self._max_in_flight)
        return semaphore

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        reason = "no attempt made"
        status_code: int | None = None
        for attempt in range(1, self._max_attempts + 1):
            retry_after: float | None = None
            try:
                async with self._semaphore():
                    response = await self._http.request(method, path, **kwargs)
            except httpx.TimeoutException:
                reason, status_code = "timed out waiting for MobileMessage", None
            except httpx.TransportError as exc:
                reason, status_code = f"could not reach MobileMessage ({type(exc).__name__})", None
            else:
                status_code = response.status_code
                if status_code < 400:
                    return response
                reason = f"MobileMessage {status_code}: {_error_text(response)}"
                if status_code not in self._retry.retryable:
                    raise MobileMessageError(
                        reason, status_code=status_code, retryable=False, attempts=attempt
                    )
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt == self._max_attempts:
                break
            delay = self._retry.delay(attempt, retry_after)
            logger.warning("%s; retry %s/%s in %.1fs", reason, attempt, self._max_attempts - 1, delay)
            await self._sleep(delay)
        raise MobileMessageError(reason, status_code=status_code, retryable=True, attempts=self._max_attempts)


def _parse_results(response: httpx.Response) -> list[SmsResult]:
    try:
        body = response.json()
        results = body["results"]
        return [
            SmsResult(
                to=str(item.get("to", "")),
                status=str(item.get("status", "unknown")),
                message_id=item.get("message_id"),
                custom_ref=item.get("custom_ref"),
                cost=item.get("cost"),
                error=item.get("error") or item.get("message_error") or None,
            )
            for item in results
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # The provider accepted the call and may have sent: never resend blindly, surface it instead.
        raise MobileMessageError(
            f"MobileMessage answered {response.status_code} with an unreadable body ({type(exc).__name__})",
            status_code=response.status_code,
            retryable=False,
            attempts=1,
        ) from None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return body[key][:300]
    return response.reason_phrase or "error"
