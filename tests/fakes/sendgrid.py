"""A fake SendGrid v3 `mail/send` over real HTTP that checks every request against SendGrid's official
OpenAPI description (vendored in `tests/fixtures/sendgrid/tsg_mail_v3.yaml`, from twilio/sendgrid-oai),
in-process with openapi-core: path, method, the `Authorization: Bearer` security scheme and the JSON body.

A request that breaks the spec gets the 400 the real API (or Prism serving the same file) gives, with
`{"errors": [{"field", "message"}]}`, and is recorded in `invalid` so a test can fail on it. On top of the
schema it applies the documented rules the schema cannot express (research/providers.md §3.1): at most 1000
recipients (to + cc + bcc) a request, each address once per request. No bearer token: 401; a wrong key: 401
as SendGrid answers it. Valid requests: 202 with an empty body, recorded in `accepted`. Tests can script
responses ahead (e.g. 429 with Retry-After, 503) and add latency.

Requests are received concurrently but checked one at a time, as Prism checks them on its one Node.js
event loop: under the GIL, validating four 1,000-recipient bodies at once took the same CPU plus the
threads' switching, and slowed the fake's own intake, so a client keeping several requests in flight was
measured against a provider that got slower the more it was asked (campaign benchmark, 2026-12-03: pair
ratios median 0.82 against 1.05 when checked in turn).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Self

import yaml
from litestar import Litestar, Request, Response, post
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest

from tests.servers import FakeProvider

SPEC_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "sendgrid" / "tsg_mail_v3.yaml"
SENDGRID_HOST = "https://api.sendgrid.com"  # the spec's server; the fake stands in for it
MAX_RECIPIENTS = 1000

Scripted = tuple[int, dict[str, Any] | None, dict[str, str]]


@functools.cache
def mail_spec() -> OpenAPI:
    """SendGrid's Mail API description, loaded once per process."""
    return OpenAPI.from_dict(yaml.safe_load(SPEC_PATH.read_text()))


def spec_errors(method: str, path: str, headers: dict[str, str], body: bytes) -> list[dict[str, Any]]:
    """Why the request breaks SendGrid's OpenAPI description (empty when it conforms)."""
    request = MockRequest(
        SENDGRID_HOST,
        method.lower(),
        path,
        headers=headers,
        data=body,
        content_type=headers.get("content-type", "application/json").split(";")[0].strip().lower(),
    )
    errors = []
    for error in mail_spec().iter_request_errors(request):
        cause = error.__cause__
        details = getattr(cause, "schema_errors", None)
        if details:
            for detail in details:
                field = ".".join(str(p) for p in detail.absolute_path) or None
                errors.append({"field": field, "message": detail.message[:500]})
        else:
            errors.append({"field": None, "message": f"{type(error).__name__}: {error}"[:500]})
    return errors


def documented_rule_errors(payload: Any) -> list[dict[str, Any]]:
    """The mail/send 400s SendGrid documents that the schema does not express."""
    if not isinstance(payload, dict) or not isinstance(payload.get("personalizations"), list):
        return []
    errors = []
    addresses: list[str] = []
    for personalization in payload["personalizations"]:
        if not isinstance(personalization, dict):
            continue
        for field in ("to", "cc", "bcc"):
            for recipient in personalization.get(field) or []:
                if isinstance(recipient, dict) and isinstance(recipient.get("email"), str):
                    addresses.append(recipient["email"].lower())
    if len(addresses) > MAX_RECIPIENTS:
        errors.append({"field": "personalizations", "message": "limit of 1000 total recipients per request"})
    if len(set(addresses)) != len(addresses):
        errors.append(
            {
                "field": "personalizations",
                "message": "Each email address in the personalization block should be unique",
            }
        )
    return errors


class FakeSendGrid(FakeProvider):
    def __init__(self, api_key: str = "SG.test-key", *, latency: float = 0.0) -> None:
        self.api_key = api_key
        self.latency = latency
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one request checked at a time (see the module's docstring)
        self.reset()

    # --- what tests read and set ---------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests: list[dict[str, Any]] = []  # every request, with its answer
            self.accepted: list[dict[str, Any]] = []  # bodies answered 202
            self.invalid: list[dict[str, Any]] = []  # requests that broke the spec, with the errors
            self.max_in_flight_seen = 0
            self._in_flight = 0
            self._scripted: deque[Scripted] = deque()

    def script(self, *responses: Scripted) -> None:
        """The next valid requests get these (status, json body or None, headers) instead of a 202."""
        with self._lock:
            self._scripted.extend(responses)

    def recipients(self) -> list[str]:
        """Every `to` address SendGrid accepted, in order, duplicates kept."""
        return [to["email"] for body in self.accepted for p in body["personalizations"] for to in p["to"]]

    def start(self) -> Self:
        mail_spec()  # fail fast without the spec file
        return super().start()

    # --- the HTTP side --------------------------------------------------------------------------------

    def _app(self) -> Litestar:
        fake = self

        @post("/v3/mail/send", status_code=202)
        async def mail_send(request: Request) -> Response[bytes]:
            return await fake._handle(request)

        return Litestar([mail_send], openapi_config=None, request_max_body_size=30 * 1024 * 1024)

    async def _handle(self, request: Request) -> Response[bytes]:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self._in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            status, payload, extra = await asyncio.to_thread(self._answer, request.url.path, headers, body)
        finally:
            with self._lock:
                self._in_flight -= 1
        content = b"" if payload is None else json.dumps(payload).encode()
        return Response(content, status_code=status, headers=extra, media_type="application/json")

    def _answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        with self._checking:
            return self._check(path, headers, body)

    def _check(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        record: dict[str, Any] = {"path": path, "headers": headers, "received_at": time.time()}
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        record["json"] = payload
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            answer: Scripted = (401, {"errors": [{"field": None, "message": "authorization required"}]}, {})
        elif token != self.api_key:
            message = "The provided authorization grant is invalid, expired, or revoked"
            answer = (401, {"errors": [{"field": None, "message": message}]}, {})
        else:
            errors = spec_errors("post", path, headers, body) + documented_rule_errors(payload)
            if errors:
                answer = (400, {"errors": errors}, {})
                with self._lock:
                    self.invalid.append({"json": payload, "errors": errors})
            else:
                with self._lock:
                    scripted = self._scripted.popleft() if self._scripted else None
                    if scripted is None:
                        self.accepted.append(payload)
                answer = scripted or (202, None, {"X-Message-Id": f"fake{len(self.requests)}"})
        record["status"] = answer[0]
        with self._lock:
            self.requests.append(record)
        return answer
