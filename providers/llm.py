"""The one HTTP client for an OpenAI-compatible chat-completions endpoint (hosted, or llama.cpp / vLLM).

It is only ever a second opinion: the caller always holds a rules answer, so there is one attempt, a hard
overall deadline and no retries — a slow or broken model must never hold up a patient's reply. Replies are
patient data, so an `LlmError` never carries the prompt, the reply or the model's words: only a reason that
is safe to log.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Self

import httpx

from models.settings import Settings


@dataclass(frozen=True)
class LlmLabel:
    label: str
    confidence: float


class LlmError(Exception):
    """No usable answer (unreachable, timed out, HTTP error, unreadable JSON, unknown label)."""


class LlmClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers=headers,
        )
        self._model = model
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> Self:
        if not settings.sms_llm_url:
            raise ValueError("SMS_LLM_URL is not set")
        key = settings.sms_llm_api_key
        return cls(
            settings.sms_llm_url,
            settings.sms_llm_model,
            api_key=key.get_secret_value() if key else None,
            timeout=settings.sms_llm_timeout_seconds,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat_json(self, system: str, user: str) -> dict[str, Any]:
        """One chat completion in JSON mode at temperature 0 (repeatable answers); the content as a dict."""
        payload = {
            "model": self._model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        try:
            # httpx timeouts are per phase; the caller's budget is for the whole exchange.
            async with asyncio.timeout(self._timeout):
                response = await self._http.post("/chat/completions", json=payload)
        except (TimeoutError, httpx.TimeoutException):
            raise LlmError("timed out") from None
        except httpx.HTTPError as exc:
            raise LlmError(f"could not reach the model ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise LlmError(f"the model endpoint answered {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
            return _json_object(content)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmError(f"unreadable answer ({type(exc).__name__})") from None

    async def classify(self, text: str, *, instructions: str, labels: Collection[str]) -> LlmLabel:
        """Ask for `{"intent": <one of labels>, "confidence": 0..1}` about `text`; else LlmError."""
        answer = await self.chat_json(instructions, text)
        label = answer.get("intent")
        confidence = answer.get("confidence")
        if not isinstance(label, str) or label.strip().lower() not in labels:
            raise LlmError("the model answered with an unknown intent")
        numeric = isinstance(confidence, int | float) and not isinstance(confidence, bool)
        if not numeric or not math.isfinite(confidence):
            raise LlmError("the model answered without a numeric confidence")
        return LlmLabel(label.strip().lower(), min(max(float(confidence), 0.0), 1.0))


def _json_object(content: Any) -> dict[str, Any]:
    """The JSON object in the content; tolerates a ```json fence, which small local models like to add."""
    if not isinstance(content, str):
        raise TypeError("content is not text")
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the content")
    value = json.loads(content[start : end + 1])
    if not isinstance(value, dict):
        raise TypeError("content is not a JSON object")
    return value
