"""Open and click tracking through the real gateway on a loopback port.

What must hold: a genuine click token redirects (302) to exactly the URL that was in the email and records
the click; anything forged or altered is a 404 and redirects nowhere (no open redirect); the pixel is the same
GIF for everyone and records only genuine first opens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from html import unescape
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import select

from flows.tasks.send import send_message
from models import (
    Channel,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    OutboundMessageEvent,
    Purpose,
    Settings,
    get_engine,
    get_settings,
    session_scope,
)
from providers import tracking_tokens
from providers.tracking_tokens import InvalidDestination, TrackingClaim, click_token, open_token, verify
from providers.wix_simulator import WixKeys
from tests.fakes.google import FakeGoogle
from tests.google_env import fake_google_fixture, google_fixture  # noqa: F401
from tests.inbox_events import apply_wix
from tests.servers import ThreadedServer
from webhook_gateway.app import create_app
from webhook_gateway.tracking import PIXEL, record

pytestmark = pytest.mark.db

DESTINATION = "https://www.google.com/maps/search/?api=1&query=Bondi+Junction+%26+Co"


@pytest.fixture(scope="module")
def gateway(database_url: str) -> Iterator[str]:
    """The gateway app as production builds it (Prefect unreachable: tracking must not need it)."""
    settings = Settings(crm_database_url=database_url, dispatch_poll_seconds=60.0)  # type: ignore[call-arg]
    with ThreadedServer(create_app(settings, prefect_api_url="http://127.0.0.1:9/api")) as server:
        yield server.url


@pytest.fixture
def message_id(db: str) -> int:
    """A sent patient email to track."""
    with session_scope() as session:
        message = OutboundMessage(
            idempotency_key=f"test:{uuid.uuid4()}",
            channel=Channel.EMAIL,
            purpose=Purpose.TRANSACTIONAL,
            kind=MessageKind.CONFIRMATION,
            recipient="alex@example.com",
            body="{}",
            status=MessageStatus.SENT,
        )
        session.add(message)
        session.flush()
        return message.id  # type: ignore[return-value]


def _get(url: str) -> httpx.Response:
    return httpx.get(url, follow_redirects=False, timeout=10)


def _events(message_id: int) -> list[tuple[str, str | None]]:
    with session_scope() as session:
        rows = session.exec(
            select(OutboundMessageEvent.status, OutboundMessageEvent.detail)
            .where(OutboundMessageEvent.message_id == message_id)
            .order_by(OutboundMessageEvent.id)  # type: ignore[arg-type]
        ).all()
        return [(status, detail) for status, detail in rows]


def _message(message_id: int) -> OutboundMessage:
    with session_scope() as session:
        message = session.get(OutboundMessage, message_id)
        assert message is not None
        session.expunge(message)
        return message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(payload: dict[str, object], key: bytes) -> str:
    """A token made exactly like ours, but with a key of the forger's choosing."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(
        hmac.new(key, b"avatar-crm email tracking v1", hashlib.sha256).digest(), body, hashlib.sha256
    )
    return f"{_b64(body)}.{_b64(mac.digest())}"


def test_a_genuine_click_redirects_to_exactly_the_signed_url_and_is_recorded(
    gateway: str, message_id: int
) -> None:
    token = click_token(message_id, DESTINATION)
    response = _get(f"{gateway}/t/c/{token}")

    assert response.status_code == 302
    assert response.headers["location"] == DESTINATION
    assert "no-store" in response.headers["cache-control"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert _events(message_id) == [("opened", "implied by a click"), ("clicked", DESTINATION)]
    first = _message(message_id)
    assert first.clicked_at is not None and first.opened_at is not None
    assert first.status == MessageStatus.SENT  # engagement is history, not a delivery status

    again = _get(f"{gateway}/t/c/{token}")  # clicked twice: redirected again, recorded once
    assert again.status_code == 302 and again.headers["location"] == DESTINATION
    assert len(_events(message_id)) == 2
    assert _message(message_id).clicked_at == first.clicked_at


def test_each_link_is_one_click_event_and_the_stamps_are_when_the_history_says(
    gateway: str, message_id: int
) -> None:
    """What `messaging/engagement.py` records for SendGrid's events too (tests/unit/test_email_events.py)."""
    other = "https://clinic.example/prepare-for-your-mri"
    pixel = f"{gateway}/t/o/{open_token(message_id)}"
    _get(pixel)
    for url in (DESTINATION, DESTINATION, other, DESTINATION, other):
        assert _get(f"{gateway}/t/c/{click_token(message_id, url)}").headers["location"] == url
    _get(pixel)  # opened again later: still the one open

    assert _events(message_id) == [("opened", "tracking pixel"), ("clicked", DESTINATION), ("clicked", other)]
    with session_scope() as session:
        at = {
            (row.status, row.detail): row.at
            for row in session.exec(
                select(OutboundMessageEvent).where(OutboundMessageEvent.message_id == message_id)
            )
        }
    message = _message(message_id)
    assert message.opened_at == at[("opened", "tracking pixel")]
    assert message.clicked_at == at[("clicked", DESTINATION)] <= at[("clicked", other)]
    assert message.opened_at <= message.clicked_at  # type: ignore[operator]
    assert message.status == MessageStatus.SENT


def test_requests_racing_each_other_still_record_one_open_and_one_click_per_link(message_id: int) -> None:
    """Two devices, a double click, a mail client fetching the pixel twice: on PostgreSQL, without the
    row lock in `messaging/engagement.py`, most of these would each find the email unopened and add an
    "opened"."""
    other = "https://clinic.example/prepare-for-your-mri"
    claims = [
        *[TrackingClaim("open", message_id)] * 4,
        *[TrackingClaim("click", message_id, DESTINATION)] * 4,
        *[TrackingClaim("click", message_id, other)] * 2,
    ]
    start = threading.Barrier(len(claims))

    def request(claim: TrackingClaim) -> str:
        start.wait(timeout=30)
        return record(get_engine(), claim)

    with ThreadPoolExecutor(len(claims)) as pool:
        recorded = list(pool.map(request, claims))
    events = _events(message_id)
    assert [status for status, _ in events].count("opened") == 1
    assert sorted(detail for status, detail in events if status == "clicked") == sorted([DESTINATION, other])
    assert sum("opened" in r.split("+") for r in recorded) == 1


def _tampered(message_id: int) -> dict[str, str]:
    genuine = click_token(message_id, DESTINATION)
    body, mac = genuine.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    evil = _b64(json.dumps({**payload, "u": "https://evil.example/phish"}, separators=(",", ":")).encode())
    other_message = _b64(json.dumps({**payload, "m": message_id + 1}, separators=(",", ":")).encode())
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    return {
        "url swapped, signature kept": f"{evil}.{mac}",
        "message id swapped": f"{other_message}.{mac}",
        "one character changed": f"{flipped}.{mac}",
        "signature truncated": f"{body}.{mac[:-4]}",
        "no signature": body,
        "wrong key": _forge({"k": "click", "m": message_id, "u": "https://evil.example/"}, b"guessed-secret"),
        "an open token used as a click": open_token(message_id),
        "garbage": "not-a-token",
        "too long": "A" * 5000 + "." + mac,
        "two dots": f"{body}.{mac}.{mac}",
    }


@pytest.mark.parametrize("case", list(_tampered(1)))
def test_a_forged_or_altered_click_token_never_redirects(gateway: str, message_id: int, case: str) -> None:
    token = _tampered(message_id)[case]
    response = _get(f"{gateway}/t/c/{token}")
    assert response.status_code == 404, case
    assert "location" not in response.headers
    assert _events(message_id) == []
    assert _message(message_id).clicked_at is None


def test_only_web_urls_can_be_signed_or_followed(gateway: str, message_id: int) -> None:
    for url in ("javascript:alert(1)", "//evil.example/", "data:text/html,hi", "mailto:a@b.c", "https://a b"):
        with pytest.raises(InvalidDestination):
            click_token(message_id, url)
    # Even a correctly signed token (a leaked key, a bug) carrying such a URL redirects nowhere.
    secret = get_settings().require_session_secret()
    for url in ("javascript:alert(1)", "https://evil.example/\r\nSet-Cookie: a=b"):
        token = _forge({"k": "click", "m": message_id, "u": url}, secret)
        assert verify(token, "click") is None
        assert _get(f"{gateway}/t/c/{token}").status_code == 404


def test_the_pixel_is_the_same_for_everyone_and_records_genuine_opens_once(
    gateway: str, message_id: int
) -> None:
    genuine = _get(f"{gateway}/t/o/{open_token(message_id)}")
    forged = _get(
        f"{gateway}/t/o/{click_token(message_id, DESTINATION)}"
    )  # a click token is not an open token
    garbage = _get(f"{gateway}/t/o/xyz")
    for response in (genuine, forged, garbage):
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert "no-store" in response.headers["cache-control"]
        assert response.content == PIXEL and PIXEL.startswith(b"GIF89a")
    assert _events(message_id) == [("opened", "tracking pixel")]

    _get(f"{gateway}/t/o/{open_token(message_id)}")  # opened again (another device): still one open
    assert _events(message_id) == [("opened", "tracking pixel")]
    assert _message(message_id).clicked_at is None


def test_a_token_for_a_message_that_does_not_exist_records_nothing(gateway: str, db: str) -> None:
    response = _get(f"{gateway}/t/c/{click_token(987654, DESTINATION)}")
    assert response.status_code == 302 and response.headers["location"] == DESTINATION  # it was ours
    assert _events(987654) == []


def test_tokens_are_bound_to_the_secret() -> None:
    token = click_token(5, DESTINATION, secret=b"one")
    assert verify(token, "click", secret=b"one") == tracking_tokens.TrackingClaim("click", 5, DESTINATION)
    assert verify(token, "click", secret=b"two") is None


def test_the_links_in_a_sent_email_lead_where_they_said(gateway: str, google: FakeGoogle) -> None:
    """End to end: booking → email through Gmail (the fake) → the patient clicks the map link."""
    wix_id = str(uuid.uuid4())
    day = (datetime.now(ZoneInfo("Australia/Brisbane")) + timedelta(days=3)).date()
    start = datetime(day.year, day.month, day.day, 9, tzinfo=ZoneInfo("Australia/Brisbane"))
    apply_wix(WixKeys(), "wix.bookings.v2.booking_created", wix_id, 1, start, location="Bondi Junction")
    with session_scope() as session:
        email = session.exec(select(OutboundMessage).where(OutboundMessage.channel == Channel.EMAIL)).one()
        email_id = email.id
    assert email_id is not None
    assert asyncio.run(send_message.fn(email_id)) == MessageStatus.SENT
    [sent] = google.sent_emails
    html = sent["html"]
    assert "https://www.google.com/maps" not in html

    # The email's links point at PUBLIC_BASE_URL; here the gateway answers on a loopback port.
    [link] = re.findall(r'href="(https://crm\.example\.test/t/c/[^"]+)"', html)
    [pixel] = re.findall(r'src="(https://crm\.example\.test/t/o/[^"]+)"', html)
    local = unescape(link).replace("https://crm.example.test", gateway)
    response = _get(local)
    assert response.status_code == 302
    assert response.headers["location"] == "https://www.google.com/maps/search/?api=1&query=Bondi+Junction"
    _get(unescape(pixel).replace("https://crm.example.test", gateway))
    statuses = [status for status, _ in _events(email_id)]
    assert statuses[-2:] == ["opened", "clicked"] and _message(email_id).opened_at is not None
    assert datetime.now(UTC) - _message(email_id).clicked_at < timedelta(minutes=1)  # type: ignore[operator]
