"""The ops pages against the whole rig (the real Prefect server and flow runner): a Wix event whose stored
body is not a Wix event fails its real `booking-intake` run; the inbox page shows it failed with the reason,
the runs page lists the failed run with its link into the Prefect UI, and a replay from the console goes
through the gateway's dispatcher to a second real run (a new idempotency key), which fails the same way."""

from __future__ import annotations

import time
from uuid import UUID

import pytest
from litestar.testing import TestClient

from models import InboxStatus, StaffRole, WebhookEvent, get_settings, session_scope
from providers.google_oidc import CACHE
from tests.console_env import STAFF, add_staff, audit_rows, console_settings, last_audit_id, sign_in
from tests.fakes.google_oidc import FakeGoogleOIDC
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.integration.conftest import Rig
from webhook_gateway.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.db]
BASE = "http://testserver.local"


def _row(event_id: int) -> WebhookEvent:
    with session_scope() as session:
        row = session.get(WebhookEvent, event_id)
        assert row is not None
        session.expunge(row)
        return row


def _wait_failed(event_id: int, redispatches: int, seconds: float = 90) -> WebhookEvent:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = _row(event_id)
        if row.status == InboxStatus.FAILED and row.redispatches == redispatches:
            return row
        time.sleep(0.5)
    raise AssertionError(f"event {event_id} never failed (run {redispatches + 1}): {_row(event_id)}")


def test_ops_see_a_failed_run_with_its_prefect_link_and_replay_it_through_the_dispatcher(
    rig: Rig, sms: FakeMobileMessage, db: str
) -> None:
    add_staff()
    mark = last_audit_id()
    with session_scope() as session:  # as the gateway stores one; the body is no Wix JWT
        row = WebhookEvent(
            source="wix",
            dedupe_key="ops-broken-1",
            event_type="wix.bookings.v2.booking_created",
            body=b"{not a Wix event",
        )
        session.add(row)
        session.flush()
        event_id = row.id
    assert event_id is not None
    CACHE.clear()
    get_settings.cache_clear()
    with FakeGoogleOIDC() as fake:
        settings = console_settings(db, fake, BASE).model_copy(update={"dispatch_poll_seconds": 0.5})
        app = create_app(settings, prefect_api_url=rig.prefect_api_url)
        with TestClient(app, base_url=BASE) as ops:
            assert sign_in(ops, fake, STAFF[StaffRole.OPS]).status_code == 303
            first = _wait_failed(event_id, 0)
            assert first.flow_run_id and "WixPayloadError" in (first.last_error or "")

            events = ops.get("/console/ops/events?status=failed")
            assert f'<tr id="event-{event_id}">' in events.text and "WixPayloadError" in events.text

            ui = rig.prefect_api_url.rstrip("/").removesuffix("/api")
            deadline = time.monotonic() + 30
            while True:  # the run's final state may reach the API a moment after the row
                runs = ops.get("/console/ops/runs")
                assert runs.status_code == 200 and "prefect-unreachable" not in runs.text
                if f"{ui}/runs/flow-run/{first.flow_run_id}" in runs.text or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert f'href="{ui}/runs/flow-run/{first.flow_run_id}"' in runs.text
            assert "booking-intake" in runs.text and "Failed" in runs.text

            replay = ops.post(
                "/console/ops/events/replay",
                headers={"x-csrftoken": ops.cookies["avatar_crm_console_csrf"]},
                data={"event_id": str(event_id), "reason": "checking the fix"},
                follow_redirects=False,
            )
            assert replay.status_code == 303, replay.text
            second = _wait_failed(event_id, 1)
            assert second.flow_run_id and second.flow_run_id != first.flow_run_id
            UUID(second.flow_run_id)
    replayed = [
        r for r in audit_rows("inbox_event.replayed", after=mark) if r.subject == f"inbox_event:{event_id}"
    ]
    assert [(r.actor, r.outcome, r.reason) for r in replayed] == [
        (STAFF[StaffRole.OPS], "allowed", "checking the fix")
    ]
