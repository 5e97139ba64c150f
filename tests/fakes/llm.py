"""A fake OpenAI-compatible chat-completions server over real HTTP, recording what it was asked.

Tests script its answer (content, HTTP status, a raw non-JSON body, a delay) to check that the SMS classifier
consults a model only when unsure and falls back to its own reading whenever the model misbehaves.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from litestar import Litestar, Request, Response, post

from tests.servers import ThreadedServer


class FakeChatModel:
    """`POST /v1/chat/completions` as OpenAI-compatible servers answer it; tests script the reply."""

    def __init__(self, model: str = "gpt-4o-mini") -> None:
        self.model = model
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests: list[dict[str, Any]] = []
            self.status = 200
            self.content: str = json.dumps({"intent": "cancel", "confidence": 0.92})
            self.raw_body: bytes | None = None
            self.delay = 0.0

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url + "/v1"

    def __enter__(self) -> FakeChatModel:
        fake = self

        @post("/v1/chat/completions")
        async def completions(request: Request) -> Response[bytes]:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with fake._lock:
                fake.requests.append({"headers": headers, "json": json.loads(body)})
            if fake.delay:
                await asyncio.sleep(fake.delay)
            if fake.raw_body is not None or fake.status != 200:
                content = fake.raw_body or b'{"error": {"message": "model overloaded"}}'
                return Response(content, status_code=fake.status, media_type="text/plain")
            answer = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": fake.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": fake.content},
                        "finish_reason": "stop",
                    }
                ],
            }
            return Response(json.dumps(answer).encode(), media_type="application/json")

        self._server = ThreadedServer(Litestar([completions], openapi_config=None)).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.stop()
