"""What the README promises when things die, driven from outside: `avatar-crm up` as a subprocess, bookings
posted concurrently, parts of it killed. Each test asserts from the provider fake's log and the database:
every webhook acknowledged, every acknowledged event processed, every patient exactly their one
confirmation, nothing twice. Counts are kept small so the tests stay within a few minutes."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prefect.deployments import run_deployment
from sqlalchemy import update

from models import InboxStatus, MessageStatus, OutboundMessage, session_scope
from models.types import utcnow
from tests.integration.conftest import OPS_ALERT_PHONE, Rig
from tests.integration.helpers import inbox_dispatched_to, inbox_rows, wait_until
from tests.integration.stack import Posted, Stack, post_bookings, thaw

pytestmark = [pytest.mark.integration, pytest.mark.db]


@pytest.fixture
def stack(rig: Rig, sms, tmp_path: Path) -> Iterator[Stack]:
    """The whole system as `make up` runs it; the dispatcher re-examines dispatched events every 2 s."""
    stack = Stack(tmp_path, {"DISPATCH_RECOVERY_SECONDS": "2", "DISPATCH_POLL_SECONDS": "0.5"})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        print(stack.log_tail(40))


def _all_finished(count: int) -> list | None:
    rows = inbox_rows()
    done = [row for row in rows if row.status in {InboxStatus.PROCESSED, InboxStatus.FAILED}]
    return rows if len(rows) == count and len(done) == count else None


def _wait_every_patient_messaged(sms, posted: list[Posted], timeout: float) -> None:
    """Until each patient has a message: what a killed run had claimed is released and sent by the next
    reminder sweep (every minute), the claim's process being known dead."""
    phones = {p.phone.lstrip("+") for p in posted}
    wait_until(lambda: phones <= {m["to"].lstrip("+") for m in sms.sent}, timeout=timeout, interval=1)
    time.sleep(3)  # anything sent twice would show up now


def _assert_each_patient_got_one_confirmation(sms, posted: list[Posted]) -> None:
    # The stack's own ops alerts may rightly page on-call about the runs a kill crashed: those texts are
    # alerts, not patient messages (and must be nothing else).
    on_call = "61" + OPS_ALERT_PHONE.replace(" ", "").removeprefix("0")
    paged = [m for m in sms.sent if m["to"].lstrip("+") == on_call]
    assert all("ALERT" in m["message"] or "resolved" in m["message"].lower() for m in paged), paged
    patients = [m for m in sms.sent if m["to"].lstrip("+") != on_call]
    sent_to = Counter(message["to"].lstrip("+") for message in patients)
    expected = {p.phone.lstrip("+"): 1 for p in posted}
    assert {phone: sent_to.get(phone, 0) for phone in expected} == expected  # none lost, none twice
    assert sum(sent_to.values()) == len(posted)  # and nothing to anyone else
    keys = Counter(message["idempotency_key"] for message in patients)
    assert set(keys) == {f"booking:{p.booking_id}:confirmation:rev1" for p in posted}


def _kill_while_running_runs_hold_events(stack: Stack, at_least: int) -> set[int]:
    """SIGKILL the whole stack at a moment when flow runs Prefect holds as Running have at least `at_least`
    events still `dispatched`; those events' ids. The moment is checked with the stack frozen (its Prefect
    server aside), so nothing finishes between the check and the kill; the rows are read without the SQLite
    write lock a frozen process may hold, and a moment the server cannot answer is passed over."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        frozen = stack.freeze_all_but_prefect()
        held: set[int] = set()
        try:
            held = inbox_dispatched_to(stack.flow_run_ids("RUNNING"))
        except httpx.HTTPError:
            pass  # the server is busy (a 503 from its SQLite): another moment
        finally:
            if len(held) < at_least:
                thaw(frozen)
        if len(held) >= at_least:
            stack.kill_all()
            return held
        time.sleep(0.05)
    raise AssertionError(f"no moment with {at_least} events held by Running runs\n{stack.log_tail()}")


def test_whole_stack_killed_with_runs_in_flight_then_restarted_processes_every_acknowledged_event(
    stack: Stack, rig: Rig, sms, figures
) -> None:
    count = 40
    started = time.monotonic()
    posted = post_bookings(stack.gateway_url, rig.wix_keys, 0, count)
    assert [p.status for p in posted] == [200] * count
    assert {p.answer["status"] for p in posted if p.answer} == {"accepted"}

    # Kill everything, SIGKILL, once Running booking runs hold events still `dispatched` (a run marks its
    # row processed before it sends): those events can only get an outcome from a new run.
    orphaned = _kill_while_running_runs_hold_events(stack, at_least=3)
    killed_at = time.monotonic()
    before = Counter(row.status for row in inbox_rows())
    sent_before = len(sms.sent)
    assert before[InboxStatus.DISPATCHED] >= len(orphaned)

    stack.start()
    rows = wait_until(lambda: _all_finished(count), timeout=300, interval=1)
    drained = time.monotonic()

    assert [row.status for row in rows] == [InboxStatus.PROCESSED] * count, [row.last_error for row in rows]
    _wait_every_patient_messaged(sms, posted, timeout=150)
    messaged = time.monotonic()
    _assert_each_patient_got_one_confirmation(sms, posted)
    redispatched = sum(row.redispatches for row in rows)
    # The killed runs were found dead and their events run again (a run only Scheduled at the kill is
    # rightly just taken by the restarted worker).
    assert {row.id for row in rows if row.redispatches} >= orphaned
    figures(
        f"whole-stack SIGKILL: {count} events, {len(orphaned)} held by Running runs when killed, "
        f"rows then {dict(before)}, {sent_before} SMS sent before; after restart {redispatched} events "
        f"re-dispatched, {len(sms.sent)} SMS in all; events "
        f"drained {drained - killed_at:.0f}s after the kill, last SMS {messaged - killed_at:.0f}s after it "
        f"({messaged - started:.0f}s in all)"
    )


def test_prefect_server_killed_then_frozen_under_load_every_webhook_acknowledged_and_processed(
    stack: Stack, rig: Rig, sms, figures
) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(1) as background:
        first = background.submit(post_bookings, stack.gateway_url, rig.wix_keys, 0, 20)
        time.sleep(1.0)
        stack.signal_child("prefect", signal.SIGKILL)  # `make up` restarts it; the gateway keeps taking
        posted = first.result() + post_bookings(stack.gateway_url, rig.wix_keys, 20, 10)
    readyz = httpx.get(f"{stack.gateway_url}/readyz", timeout=10)
    assert readyz.status_code == 200 and readyz.json()["status"] in {"ready", "degraded"}
    stack.wait_ready(timeout=120)  # the server is back (restarted by the supervisor)

    frozen = stack.signal_child("prefect", signal.SIGSTOP)
    try:
        posted += post_bookings(stack.gateway_url, rig.wix_keys, 30, 10)
        degraded = httpx.get(f"{stack.gateway_url}/readyz", timeout=10).json()
        time.sleep(5)
    finally:
        os.killpg(frozen, signal.SIGCONT)
    count = len(posted)
    assert [p.status for p in posted] == [200] * count  # every webhook acknowledged, none refused
    assert {p.answer["status"] for p in posted if p.answer} == {"accepted"}
    assert degraded["status"] == "degraded" and degraded["checks"]["database"] == "ok"
    assert degraded["checks"]["prefect"].startswith("unavailable")

    rows = wait_until(lambda: _all_finished(count), timeout=240, interval=1)
    drained = time.monotonic()
    assert [row.status for row in rows] == [InboxStatus.PROCESSED] * count, [row.last_error for row in rows]
    _wait_every_patient_messaged(sms, posted, timeout=150)
    _assert_each_patient_got_one_confirmation(sms, posted)
    assert "prefect server exited with code -9; restarting it" in stack.log_tail(lines=None)
    figures(
        f"Prefect server SIGKILL + SIGSTOP: {count} events, {count} acks, "
        f"{sum(row.redispatches for row in rows)} re-dispatched, {len(sms.sent)} SMS; "
        f"drained {drained - started:.0f}s after the first "
        "post"
    )


THROTTLED = (429, {"message": "Too many requests"}, {"Retry-After": "0"})
UNAVAILABLE = (503, {"message": "Service temporarily unavailable"}, {"Retry-After": "0"})


def test_a_provider_answering_429_and_503_delays_messages_never_drops_or_doubles_them(
    rig: Rig, sms, gateway_url: str, figures
) -> None:
    count = 30
    sms.script(*[THROTTLED, UNAVAILABLE] * 6)  # the next 12 sends, whoever makes them
    started = time.monotonic()
    posted = post_bookings(gateway_url, rig.wix_keys, 0, count)
    assert [p.status for p in posted] == [200] * count
    rows = wait_until(lambda: _all_finished(count), timeout=120, interval=0.5)
    assert [row.status for row in rows] == [InboxStatus.PROCESSED] * count

    phones = {p.phone.lstrip("+") for p in posted}
    swept = 0
    while not phones <= {message["to"].lstrip("+") for message in sms.sent} and swept < 3:
        with session_scope() as session:  # what the outage left pending is due now, not after its backoff
            session.exec(  # type: ignore[call-overload]
                update(OutboundMessage)
                .where(
                    OutboundMessage.status == MessageStatus.PENDING, OutboundMessage.kind == "confirmation"
                )  # type: ignore[arg-type]
                .values(send_after=utcnow())
            )
        run = run_deployment("reminder-sweep/reminder-sweep", timeout=120)  # as its schedule would
        assert run.state is not None and run.state.is_completed(), run.state
        swept += 1
    refused = Counter(r["status"] for r in sms.requests if r["path"] == "/v1/messages" and r["status"] != 200)
    assert refused == {429: 6, 503: 6}  # the provider did refuse: the messages were delayed
    _assert_each_patient_got_one_confirmation(sms, posted)
    figures(
        f"provider 429/503: {count} events, {count} acks, {sum(refused.values())} refused requests, "
        f"{len(sms.sent)} SMS after {swept} extra sweeps, {time.monotonic() - started:.0f}s"
    )


def test_ctrl_c_lets_runs_under_way_finish_then_stops(rig: Rig, sms, tmp_path: Path, figures) -> None:
    """Ctrl-C on `make up` with booking runs mid-send: they finish (Completed, not Crashed), each patient
    has their one confirmation before `up` exits, and the next start finds nothing to redo."""
    # A grace long enough for three runs on a loaded machine: the test is about waiting, not about timing.
    stack = Stack(tmp_path, {"DISPATCH_POLL_SECONDS": "0.5", "STOP_GRACE_SECONDS": "150"})
    stack.start()
    count = 3
    try:
        sms.latency = 4.0  # each send takes a while: Ctrl-C comes while they are under way
        posted = post_bookings(stack.gateway_url, rig.wix_keys, 0, count, workers=count)
        assert [p.status for p in posted] == [200] * count
        # Ctrl-C once every event has its run (a create_flow_run the busy Prefect server answered 503 is
        # retried by the dispatcher) and a send is in flight: an event not yet dispatched would rightly wait
        # in the inbox for the next start, which is another test's story.
        wait_until(
            lambda: (
                any("status" not in r for r in sms.requests)
                and all(row.status != InboxStatus.RECEIVED for row in inbox_rows())
            ),
            timeout=90,
            interval=0.1,
        )
        assert stack.running_flow_runs() >= 1
        assert stack.process is not None
        stack.process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        assert stack.process.wait(timeout=240) == 0, stack.log_tail()
        stopped = time.monotonic() - interrupted
    finally:
        sms.latency = 0.0
        stack.stop()
    rows = inbox_rows()
    assert [row.status for row in rows] == [InboxStatus.PROCESSED] * count, stack.log_tail()
    _assert_each_patient_got_one_confirmation(sms, posted)
    waited = "flow run(s) under way to finish" in stack.log_tail(None)  # they may end as the gateway stops
    figures(
        f"Ctrl-C: {count} events, {count} processed, {len(sms.sent)} SMS; waited for runs: {waited}; "
        f"up exited {stopped:.0f}s after"
    )

    stack.start()  # the next start: no run of the stop left Crashed or Cancelled, nothing sent again
    try:
        # The stack's Prefect API wants its login: without it, 401 (health checks aside)
        anonymous = httpx.post(f"{stack.prefect_api}/flow_runs/filter", json={"limit": 1}, timeout=10)
        assert anonymous.status_code == 401
        assert httpx.get(f"{stack.prefect_api}/health", timeout=10).status_code == 200
        states = stack.prefect("POST", "/flow_runs/filter", json={"limit": 200}).json()
        finished = Counter(run["state_type"] for run in states if run["deployment_id"])
        assert finished.get("CRASHED", 0) == finished.get("CANCELLED", 0) == 0, finished
        assert finished.get("COMPLETED", 0) >= count
        sweep = "/deployments/name/reminder-sweep/reminder-sweep"
        # the schedules paused for the stop run again once the runner has registered its deployments
        wait_until(lambda: stack.prefect("GET", sweep).json()["paused"] is False, timeout=60, interval=1)
        time.sleep(5)
        _assert_each_patient_got_one_confirmation(sms, posted)
    finally:
        stack.stop()
