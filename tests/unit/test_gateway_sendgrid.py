"""SendGrid's Event Webhook through the real gateway on a loopback port: a signed batch becomes one inbox row
per event, committed before the answer and deduplicated on `sg_event_id`; unsigned, badly signed, malformed
and oversized batches are refused with the right 4xx and store nothing. Prefect is unreachable here (a closed
port): acceptance must not depend on it. The dispatcher then hands SendGrid rows to `email-events` in batches.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import text, update
from sqlmodel import select

from messaging.email_events import apply_events
from models import (
    Channel,
    InboxStatus,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    Purpose,
    Settings,
    WebhookEvent,
    get_engine,
    session_scope,
)
from models.types import utcnow
from providers.sendgrid_webhooks import MAX_BODY_BYTES, parse_event
from providers.tracking_tokens import click_token, open_token
from tests.fakes.sendgrid_events import EventSigner, batch, event
from tests.servers import ThreadedServer
from webhook_gateway.app import BATCHED_SOURCES, DEPLOYMENTS, create_app
from webhook_gateway.dispatcher import Dispatcher

pytestmark = pytest.mark.db

URL = "/webhooks/sendgrid/events"
SIGNER = EventSigner()
GENERAL_LIMIT = 64 * 1024


def _settings(database_url: str, **overrides: object) -> Settings:
    values = {
        "crm_database_url": database_url,
        "sendgrid_webhook_public_key": SIGNER.public_key,
        "gateway_max_body_bytes": GENERAL_LIMIT,
        "dispatch_poll_seconds": 60.0,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def gateway(database_url: str) -> Iterator[str]:
    app = create_app(_settings(database_url), prefect_api_url="http://127.0.0.1:9/api")
    with ThreadedServer(app) as server:
        yield server.url


@pytest.fixture
def post(gateway: str, db: str) -> Iterator[Any]:
    with httpx.Client(base_url=gateway, timeout=30) as client:

        def _post(body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
            return client.post(
                URL, content=body, headers=SIGNER.headers(body) if headers is None else headers
            )

        yield _post


def _rows() -> list[tuple[int, str, str, str, str]]:
    with session_scope() as session:
        query = text("SELECT id, source, dedupe_key, event_type, status FROM webhookevent ORDER BY id")
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def _all_attempted() -> bool:
    with session_scope() as session:
        attempts = session.execute(text("SELECT dispatch_attempts FROM webhookevent")).scalars().all()
    return bool(attempts) and all(attempts)


def _ack(accepted: int, duplicate: int) -> dict[str, object]:
    status = "accepted" if accepted else "duplicate"
    return {"status": status, "accepted": accepted, "duplicate": duplicate}


def test_a_signed_batch_of_three_is_three_inbox_rows_committed_before_the_answer(post: Any) -> None:
    events = [event("delivered", outbox_id=7), event("open", outbox_id=7), event("click", outbox_id=7)]
    response = post(batch(*events))

    assert response.status_code == 200, response.text
    assert response.json() == _ack(3, 0)
    rows = _rows()  # read on another connection once the answer is in: already committed
    assert [(source, key, kind, status) for _, source, key, kind, status in rows] == [
        ("sendgrid", e["sg_event_id"], e["event"], InboxStatus.RECEIVED) for e in events
    ]
    with session_scope() as session:
        for (event_id, *_), sent in zip(rows, events, strict=True):
            stored = session.get(WebhookEvent, event_id)
            assert stored is not None and json.loads(stored.body) == sent  # that event's own JSON
            assert parse_event(stored.body).outbox_id == 7


def test_the_same_batch_again_is_all_duplicates(post: Any) -> None:
    body = batch(event("delivered"), event("open"), event("bounce", type="bounce"))
    assert post(body).json() == _ack(3, 0)
    # SendGrid retries with the same events (possibly re-signed later): nothing new is stored.
    again = post(
        body,
        SIGNER.headers(
            body, timestamp=int(SIGNER.headers(body)["X-Twilio-Email-Event-Webhook-Timestamp"]) + 30
        ),
    )
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "accepted": 0, "duplicate": 3}
    assert len(_rows()) == 3


def test_one_new_event_with_two_old_ones_stores_only_the_new_one(post: Any) -> None:
    old = [event("delivered"), event("open")]
    assert post(batch(*old)).json() == _ack(2, 0)
    new = event("click")
    assert post(batch(old[0], new, old[1])).json() == _ack(1, 2)
    assert [key for _, _, key, _, _ in _rows()] == [
        old[0]["sg_event_id"],
        old[1]["sg_event_id"],
        new["sg_event_id"],
    ]


def test_an_event_repeated_inside_one_batch_is_stored_once(post: Any) -> None:
    repeated = event("open")
    assert post(batch(repeated, repeated)).json() == _ack(1, 1)
    assert len(_rows()) == 1


def test_an_empty_batch_is_acknowledged_and_ignored(post: Any) -> None:
    response = post(b"[]")
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "accepted": 0, "duplicate": 0}
    assert _rows() == []


def test_a_batch_larger_than_the_general_limit_but_within_sendgrids_is_accepted(post: Any) -> None:
    events = [event("processed", email=f"patient{n}@example.com") for n in range(400)]
    body = batch(*events)
    assert GENERAL_LIMIT < len(body) < MAX_BODY_BYTES
    assert post(body).json() == _ack(400, 0)
    assert len(_rows()) == 400


def test_a_batch_over_the_body_limit_is_413_and_stores_nothing(post: Any) -> None:
    body = batch(*[event("open", padding="x" * 1000) for _ in range(1100)])
    assert len(body) > MAX_BODY_BYTES
    response = post(body)
    assert response.status_code == 413
    assert _rows() == []


@pytest.mark.parametrize(
    "case",
    [
        "unsigned",
        "missing signature",
        "missing timestamp",
        "other key",
        "tampered",
        "stale",
        "future",
        "garbage",
    ],
)
def test_bad_or_missing_signatures_are_401_and_store_nothing(post: Any, case: str) -> None:
    body = batch(event("unsubscribe"))
    good = SIGNER.headers(body)
    stamp = int(good["X-Twilio-Email-Event-Webhook-Timestamp"])
    headers = {
        "unsigned": {"Content-Type": "application/json"},
        "missing signature": {k: v for k, v in good.items() if k != "X-Twilio-Email-Event-Webhook-Signature"},
        "missing timestamp": {k: v for k, v in good.items() if k != "X-Twilio-Email-Event-Webhook-Timestamp"},
        "other key": EventSigner().headers(body),
        "tampered": SIGNER.headers(body.replace(b"unsubscribe", b"group_resubscribe")),
        "stale": SIGNER.headers(body, stamp - 25 * 3600 - 1),
        "future": SIGNER.headers(body, stamp + 3600),
        "garbage": {**good, "X-Twilio-Email-Event-Webhook-Signature": "%%%not-base64%%%"},
    }[case]
    response = post(body, headers)
    assert response.status_code == 401, (case, response.text)
    assert response.json()["detail"] == "signature verification failed"  # the same whatever the reason
    assert _rows() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not valid JSON"),
        (b'{"event": "open"}', "body is not a JSON array"),
        (batch(event("open"), {**event("open"), "sg_event_id": None}), "event 1 has no sg_event_id"),
        (batch({**event("open"), "event": ""}), "event 0 has no event name"),
    ],
)
def test_signed_but_malformed_batches_are_400_with_a_reason(post: Any, body: bytes, reason: str) -> None:
    response = post(body)
    assert response.status_code == 400
    assert response.json()["detail"] == f"malformed body: {reason}"
    assert "alex@example.com" not in response.text
    assert _rows() == []


@pytest.mark.parametrize("key", [None, ""])
async def test_without_a_configured_key_everything_is_refused(
    db: str, key: str | None, gateway_log: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(db, sendgrid_webhook_public_key=key), prefect_api_url="http://127.0.0.1:9/api")
    body = batch(event("spamreport"))
    async with AsyncTestClient(app=app) as client:
        unsigned = await client.post(URL, content=body)
        signed = await client.post(URL, content=body, headers=SIGNER.headers(body))
        schema = (await client.get("/schema/openapi.json")).json()
    assert unsigned.status_code == signed.status_code == 401
    assert signed.json()["detail"] == "signature verification failed"  # not which integrations are set up
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in gateway_log.text  # that is for the log
    assert _rows() == []
    assert URL in schema["paths"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
_FIELDS = ["event", "sg_event_id", "email", "timestamp", "outbox_id", "category", "type", "reason", "url"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=512),
        st.lists(
            st.builds(
                lambda extra: {**event("open"), **extra},
                st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=3),
            ),
            max_size=3,
        ).map(lambda events: json.dumps(events).encode()),
    )
)
def test_validly_signed_batches_never_yield_a_5xx(post: Any, body: bytes) -> None:
    response = post(body)
    try:
        body.decode("utf-8")
        expected = {200, 400}
    except UnicodeDecodeError:
        expected = {401}  # SendGrid signs UTF-8 text: other bytes cannot be verified
    assert response.status_code in expected, (response.status_code, response.text)


# --- engagement: SendGrid's opens and clicks are recorded as our own tracking records them ----------


def _email(provider: str) -> int:
    with session_scope() as session:
        message = OutboundMessage(
            idempotency_key=f"test:{uuid4()}",
            channel=Channel.EMAIL,
            purpose=Purpose.MARKETING,
            kind=MessageKind.CAMPAIGN,
            recipient="alex@example.com",
            body="{}",
            status=MessageStatus.DELIVERED,
            provider=provider,
        )
        session.add(message)
        session.flush()
        return message.id  # type: ignore[return-value]


def _engagement(message_id: int) -> tuple[list[tuple[str, str | None]], bool]:
    """The history as ops read it, and whether the stamps are the times of the first open and click in it."""
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessageEvent)
            .where(OutboundMessageEvent.message_id == message_id)
            .order_by(OutboundMessageEvent.id)  # type: ignore[arg-type]
        ).all()
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        first = {row.status: row.at for row in reversed(rows)}
        consistent = message.opened_at == first.get("opened") and message.clicked_at == first.get("clicked")
        return [(row.status, row.detail) for row in rows], consistent


def test_opens_and_clicks_from_a_signed_batch_are_recorded_as_the_tracking_routes_record_them(
    gateway: str, post: Any
) -> None:
    book, map_ = "https://clinic.example/book", "https://clinic.example/map"
    by_gmail, by_sendgrid = _email("gmail"), _email("sendgrid")
    journey = [("click", book), ("open", None), ("click", book), ("click", map_), ("open", None)]

    for kind, url in journey:  # the patient, through the tracking routes of the same gateway
        token = open_token(by_gmail) if url is None else click_token(by_gmail, url)
        assert httpx.get(f"{gateway}/t/{kind[0]}/{token}", timeout=10).status_code in {200, 302}
    start = int(time.time()) - 60
    reported = [  # the same journey as SendGrid reports it
        event(kind, outbox_id=by_sendgrid, timestamp=start + step, **({"url": url} if url else {}))
        for step, (kind, url) in enumerate(journey)
    ]
    assert post(batch(*reported)).json() == _ack(len(journey), 0)
    apply_events([event_id for event_id, *_ in _rows()])

    expected = [("opened", "implied by a click"), ("clicked", book), ("clicked", map_)]
    assert _engagement(by_gmail) == _engagement(by_sendgrid) == (expected, True)


# --- dispatch: one `email-events` run per batch of stored events ------------------------------------


@dataclass
class _FakePrefect:
    runs: list[dict[str, Any]] = field(default_factory=list)

    async def read_deployment_by_name(self, name: str) -> SimpleNamespace:
        assert name == DEPLOYMENTS["sendgrid"] == "email-events/email-events"
        return SimpleNamespace(id=uuid4())

    async def create_flow_run_from_deployment(self, deployment_id: UUID, **kw: Any) -> SimpleNamespace:
        self.runs.append(kw)
        return SimpleNamespace(id=uuid4())


async def test_stored_events_are_dispatched_to_email_events_as_one_batch(
    post: Any, database_url: str
) -> None:
    assert post(batch(event("delivered"), event("open"), event("click"))).json() == _ack(3, 0)
    # The gateway's own dispatcher claims them at once and fails (its Prefect is unreachable here): let it,
    # then make them due again, as its backoff would, for this dispatcher (its Prefect answers).
    for _ in range(200):
        if _all_attempted():
            break
        await asyncio.sleep(0.05)
    with session_scope() as session:
        session.execute(update(WebhookEvent).values(next_dispatch_at=utcnow()))
    prefect = _FakePrefect()
    dispatcher = Dispatcher(get_engine(database_url), prefect, DEPLOYMENTS, batched=BATCHED_SOURCES)  # type: ignore[arg-type]

    assert await dispatcher.dispatch_due() == 3
    [run] = prefect.runs
    ids = [row[0] for row in _rows()]
    assert run["parameters"] == {"event_ids": ids}
    assert run["tags"] == ["source:sendgrid"]
    assert {status for *_, status in _rows()} == {InboxStatus.DISPATCHED}


@pytest.mark.parametrize("signed", [False, True])
def test_an_unsigned_batch_is_refused_before_its_body_is_read(gateway: str, db: str, signed: bool) -> None:
    """Headers of a 1 MiB batch and no body: unsigned, the 401 comes at once; a signed one waits for it."""
    import socket
    from urllib.parse import urlsplit

    headers = SIGNER.headers(b"[]") if signed else {}
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY_BYTES - 1}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    address = urlsplit(gateway)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(head.encode())
        connection.settimeout(1.0 if signed else 5.0)
        try:
            answer = connection.recv(4096)
        except TimeoutError:
            answer = b""
    if signed:
        assert answer == b""  # still waiting for the body it must verify
    else:
        assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert _rows() == []
