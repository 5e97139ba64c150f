"""Wix reconciliation end to end: `avatar-crm wix reconcile` reads the fake Wix API over HTTP, the gateway's
dispatcher hands what it fed to `booking-intake` runs on the real runner, and the fake MobileMessage receives
what the patients are owed: one confirmation per patient whose webhook never arrived, once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from models import get_settings
from providers.wix_simulator import DEFAULT_INSTANCE_ID
from tests.fakes.wix_api import FakeWixApi
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    booking,
    inbox_rows,
    local_slot,
    new_booking_id,
    post_wix,
    signed_event,
    stored_booking,
    utc,
    wait_processed,
)

pytestmark = [pytest.mark.integration, pytest.mark.db]

API_KEY = "IST.integration-wix-key"


@pytest.fixture
def wix_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWixApi]:
    # The webhooks the tests sign name DEFAULT_INSTANCE_ID as their site: the same site the API key reads.
    with FakeWixApi(API_KEY, DEFAULT_INSTANCE_ID) as fake:
        yield fake
    get_settings.cache_clear()


def reconcile(fake: FakeWixApi, monkeypatch: pytest.MonkeyPatch, since: datetime) -> str:
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["wix", "reconcile", "--since", since.isoformat()])
    assert result.exit_code == 0, result.output
    return result.output


def test_reconciliation_brings_the_crm_to_a_full_match_and_each_new_patient_one_confirmation(
    rig: Rig, sms, gateway_url: str, wix_api: FakeWixApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    start = local_slot(days_ahead=4, hour=10)
    created = datetime.now(UTC) - timedelta(minutes=20)
    lost = {new_booking_id(): f"+614123450{i:02d}" for i in range(4)}  # their created webhooks never came
    moved, reordered = new_booking_id(), new_booking_id()

    # Delivered webhooks: `moved` rev 1 (its rev-2 reschedule is lost); `reordered` rev 2, then rev 1 late.
    for booking_id, revision, event_type in (
        (moved, 1, "wix.bookings.v2.booking_created"),
        (reordered, 2, "wix.bookings.v2.booking_confirmed"),
        (reordered, 1, "wix.bookings.v2.booking_created"),
    ):
        payload = booking(booking_id, revision, start, phone="+61412345699", created=created)
        assert post_wix(gateway_url, signed_event(rig.wix_keys, event_type, payload)).status_code == 200
    wait_processed(3)
    sent_before = len(sms.sent)

    wix_api.put(
        *(booking(booking_id, 1, start, phone=phone, created=created) for booking_id, phone in lost.items()),
        booking(moved, 2, start + timedelta(days=1), phone="+61412345699", created=created),
        booking(reordered, 2, start, phone="+61412345699", created=created),
    )
    output = reconcile(wix_api, monkeypatch, since)
    assert "wix total: 6" in output and "fed: 5" in output and "missing: 4" in output and "stale: 1" in output

    rows = wait_processed(8)
    assert Counter(row.source for row in rows) == {"wix": 3, "wix-reconcile": 5}
    new_sms = sms.sent[sent_before:]
    confirmations = Counter(m["to"] for m in new_sms if "is booked for" in m["message"])
    assert confirmations == Counter(lost.values())  # each new patient exactly once
    [reschedule] = [m for m in new_sms if "has moved to" in m["message"]]  # `moved`: its lost rev 2
    assert reschedule["to"] == "+61412345699" and len(new_sms) == len(lost) + 1
    for booking_id in [*lost, moved, reordered]:
        held, wix_now = stored_booking(booking_id), wix_api.bookings[booking_id]
        assert held is not None and held.revision == int(wix_now["revision"])
        assert held.status == wix_now["status"] and held.start_at == utc(
            datetime.fromisoformat(wix_now["startDate"])
        )

    again = reconcile(wix_api, monkeypatch, since)
    assert "fed: 0" in again and "matching: 6" in again and "sync rate: 100.00%" in again
    time.sleep(2)  # a dispatcher poll or four: nothing new to dispatch, nothing sent
    assert len(inbox_rows()) == 8 and len(sms.sent) == sent_before + len(lost) + 1
