"""Shared steps for integration tests: post a signed webhook, wait for the CRM, read what it holds."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from prefect.settings import PREFECT_API_URL
from sqlalchemy import create_engine, make_url
from sqlmodel import select

from models import Booking, InboxStatus, MessageStatus, OutboundMessage, WebhookEvent, session_scope
from models.db import normalize_url
from models.settings import get_settings
from providers.wix_simulator import WixKeys, booking_payload, sign_wix_jwt, wix_event

BRISBANE = ZoneInfo("Australia/Brisbane")
T = TypeVar("T")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# One client for every webhook a test posts (thread-safe; a gateway killed closes its connections, which the
# pool then drops): a new httpx client per post cost ~27 ms of CPU (its SSL context), 30 s per 1,000 bookings.
_WEBHOOKS = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=32))


def local_slot(days_ahead: int, hour: int, minute: int = 0, tz: ZoneInfo = BRISBANE) -> datetime:
    """An appointment time a few days from now, at a chosen local wall-clock time."""
    day = (datetime.now(tz) + timedelta(days=days_ahead)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def spoken(moment: datetime, clock: str) -> str:
    """How the patient should read it, e.g. "Tue 3 Mar, 9:00am" (the clock part is spelled by the test)."""
    return f"{moment:%a} {moment.day} {moment:%b}, {clock}"


def new_booking_id() -> str:
    return str(uuid.uuid4())


def signed_event(
    keys: WixKeys, event_type: str, booking: dict[str, Any], event_id: str | None = None
) -> bytes:
    inner = wix_event(event_type, booking, event_id=event_id or str(uuid.uuid4()))
    return sign_wix_jwt(keys, inner, event_type)


def booking(booking_id: str, revision: int, start: datetime, **overrides: Any) -> dict[str, Any]:
    return booking_payload(booking_id=booking_id, revision=revision, start=start, **overrides)


def post_wix(gateway_url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return _WEBHOOKS.post(
        f"{gateway_url}/webhooks/wix/bookings",
        content=body,
        headers={"Content-Type": "text/plain", **(headers or {})},
    )


def post_new_booking(gateway_url: str, keys: WixKeys, start: datetime) -> str:
    """Post a signed `booking_created` (revision 1) for a fresh booking id and return that id."""
    booking_id = new_booking_id()
    post_wix(
        gateway_url, signed_event(keys, "wix.bookings.v2.booking_created", booking(booking_id, 1, start))
    )
    return booking_id


def wait_until(probe: Callable[[], T], timeout: float = 90.0, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def inbox_rows() -> list[WebhookEvent]:
    with session_scope() as session:
        return list(session.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all())


def inbox_dispatched_to(flow_run_ids: set[str]) -> set[int]:
    """Ids of the inbox events still `dispatched` to one of `flow_run_ids`, read without the write lock a CRM
    session takes at BEGIN on SQLite (`models.db`): a frozen stack may hold it (WAL readers never wait)."""
    url = make_url(normalize_url(get_settings().crm_database_url))
    if url.get_backend_name() == "sqlite":
        url = make_url(f"sqlite:///file:{url.database}?mode=ro&uri=true")
    engine = create_engine(url)
    table = WebhookEvent.__table__  # type: ignore[attr-defined]
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(table.c.id, table.c.status, table.c.flow_run_id)).all()
    finally:
        engine.dispose()
    return {
        row.id for row in rows if row.status == InboxStatus.DISPATCHED and row.flow_run_id in flow_run_ids
    }


def flow_run_state(flow_run_id: str) -> str | None:
    response = httpx.get(f"{PREFECT_API_URL.value()}/flow_runs/{flow_run_id}", timeout=10)
    if response.status_code == 503:  # the SQLite-backed server is briefly locked: ask again next poll
        return None
    response.raise_for_status()
    state = response.json().get("state") or {}
    return state.get("type")


def wait_processed(count: int, timeout: float = 90.0) -> list[WebhookEvent]:
    """Wait until `count` inbox events are finished and the flow runs that handled them have ended
    (the inbox row is marked processed before the run sends the patient's message)."""

    def done() -> list[WebhookEvent] | None:
        rows = inbox_rows()
        finished = [r for r in rows if r.status in {InboxStatus.PROCESSED, InboxStatus.FAILED}]
        if len(finished) < count:
            return None
        run_ids = {r.flow_run_id for r in rows if r.flow_run_id}
        if any(flow_run_state(run_id) not in TERMINAL for run_id in run_ids):
            return None
        if any(m.status == MessageStatus.SENDING for m in messages(channel=None)):
            return None
        return rows

    return wait_until(done, timeout)


def messages(
    wix_booking_id: str | None = None, *, reminders: bool = False, channel: str | None = "sms"
) -> list[OutboundMessage]:
    """Outbox rows (of one booking), without the scheduled reminders unless asked for; SMS unless another
    channel (or None: every channel) is asked for."""
    with session_scope() as session:
        query = select(OutboundMessage).order_by(OutboundMessage.id)
        if channel is not None:
            query = query.where(OutboundMessage.channel == channel)
        if not reminders:
            query = query.where(OutboundMessage.kind != "reminder")
        if wix_booking_id:
            query = query.join(Booking, Booking.id == OutboundMessage.booking_id).where(
                Booking.wix_booking_id == wix_booking_id
            )
        return list(session.exec(query).all())


def stored_booking(wix_booking_id: str) -> Booking | None:
    with session_scope() as session:
        return session.exec(select(Booking).where(Booking.wix_booking_id == wix_booking_id)).first()


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
