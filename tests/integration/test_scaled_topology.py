"""The scaled topology as `avatar-crm up --scaled` runs it (Prefect and the CRM on PostgreSQL, Prefect's
messaging on Redis, its API server and services apart, two process workers on the `avatar-crm` pool, each
with a task worker for lone bookings, two gateways), driven from outside: 1,000 signed bookings at 10 a
second spread over both gateways, and mid-way one gateway and one worker host (the worker with every process
it had started, among them a booking run under way, its warm engine and its task worker) killed with SIGKILL.
Asserted from the database and the fake MobileMessage: every acknowledged booking applied once, every patient
exactly one confirmation, none lost, and the killed run's bookings given to a new run. A booking a killed
gateway did not acknowledge is posted again to the other one, as Wix retries an unanswered webhook.

PostgreSQL only: the topology has no SQLite form (it runs in .ci/run's PostgreSQL pass)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import func, select

from models import Booking, InboxStatus, OutboundMessage, WebhookEvent, session_scope
from providers.wix_simulator import WixKeys
from tests.conftest import is_postgres
from tests.integration.conftest import Rig
from tests.integration.helpers import (
    booking,
    inbox_rows,
    local_slot,
    new_booking_id,
    post_wix,
    signed_event,
    wait_until,
)
from tests.integration.stack import Stack, descendants, freeze_tree, kill_tree, thaw
from tests.servers import drop_databases, flush_redis, free_port

pytestmark = [pytest.mark.integration, pytest.mark.db]

REDIS_DB = 12  # Prefect's messaging here, its docket in 13, the gateways' rate limits in 14
COUNT = 1000
PACE = 0.1  # seconds between deliveries: 10 bookings/s over 100 s, so both kills land while they still arrive
KILL_AFTER = 150  # bookings processed before the kills
# The rig's OPS_ALERT_PHONE: the stack's own ops-alerts schedule may rightly page on-call about the runs the
# kill crashed; those texts are alerts, not patient messages.
ON_CALL = "61491570156"


@pytest.fixture
def prefect_database() -> Iterator[str]:
    """A PostgreSQL database of this test's own for Prefect (`up --scaled` creates it), dropped afterwards."""
    name = f"prefect_scaled_{uuid.uuid4().hex[:10]}"
    yield name
    drop_databases(make_url(os.environ["CRM_DATABASE_URL"]).set(database="postgres"), [name])


def _child(stack: Stack, marker: str) -> int:
    """The pid (and process group) of the supervisor's child whose command line holds `marker`."""
    assert stack.process is not None
    pids = Path(f"/proc/{stack.process.pid}/task/{stack.process.pid}/children").read_text().split()
    for pid in pids:
        if marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
            return int(pid)
    raise AssertionError(f"no child running {marker!r}")


def _flow_run_of(pid: int) -> str | None:
    """The flow run a worker's child process runs (the process worker hands it the id in its environment)."""
    with contextlib.suppress(OSError):
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if entry.startswith(b"PREFECT__FLOW_RUN_ID="):
                return entry.partition(b"=")[2].decode()
    return None


def _host_frozen_mid_run(stack: Stack) -> list[int] | None:
    """A worker host frozen (SIGSTOP: the worker, its warm engine and its task worker, with everything under
    them: the engine commands and the runs forked for them) while a booking run of that worker still has
    events not done: killing them then surely cuts that run short (and whatever booking task runs the task
    worker had). Checked after the freeze, since a run can finish its last event between a look and a kill.
    The roots' pids; None, and everything thawed, when no host is in that state."""
    for n in (1, 2):
        roots = [
            _child(stack, f"--type process --name scaled-{n}"),
            _child(stack, f"engine-{n}.sock"),
            _child(stack, f"task-worker --name scaled-{n}"),
        ]
        frozen = [pid for root in roots for pid in freeze_tree(root)]
        time.sleep(0.3)  # a commit already sent lands before the look
        waiting = {row.flow_run_id for row in inbox_rows() if row.status == InboxStatus.DISPATCHED}
        # The worker's children are its runs' commands (each a run's stand-in, with the run's id).
        if any(_flow_run_of(child) in waiting for child in descendants(roots[0])):
            return roots
        thaw(frozen)
    return None


@dataclass
class Webhook:
    """One booking's `booking_created`: the same event (same id) each time it is delivered, signed afresh
    per delivery as Wix does (its tokens expire after minutes; a retry can come later than that)."""

    booking_id: str
    phone: str
    payload: dict[str, Any]
    keys: WixKeys
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    answers: list[int | None] = field(default_factory=list)

    def deliver(self, gateway_url: str) -> bool:
        body = signed_event(self.keys, "wix.bookings.v2.booking_created", self.payload, self.event_id)
        try:
            status: int | None = post_wix(gateway_url, body).status_code
        except httpx.HTTPError:
            status = None
        self.answers.append(status)
        return status == 200


def _booking(rig: Rig, phone: str, hour: int = 10) -> Webhook:
    booking_id = new_booking_id()
    payload = booking(
        booking_id, 1, local_slot(5, hour), phone=phone, email=None, contact_id=str(uuid.uuid4())
    )
    return Webhook(booking_id, phone, payload, rig.wix_keys)


def _webhooks(rig: Rig) -> list[Webhook]:
    made = []
    for n in range(COUNT):
        booking_id, phone = new_booking_id(), f"+61401{n:06d}"
        payload = booking(
            booking_id, 1, local_slot(5, 9 + n % 8), phone=phone, email=None, contact_id=str(uuid.uuid4())
        )
        made.append(Webhook(booking_id, phone, payload, rig.wix_keys))
    return made


def test_two_gateways_two_workers_one_of_each_killed_every_booking_applied_once_one_sms_each(
    rig: Rig, sms, tmp_path: Path, prefect_database: str, figures
) -> None:
    if not is_postgres():
        pytest.skip("the scaled topology runs on PostgreSQL: this test runs in the PostgreSQL pass")
    flush_redis(REDIS_DB)
    stack = Stack(
        tmp_path,
        {
            "DISPATCH_RECOVERY_SECONDS": "2",
            "DISPATCH_POLL_SECONDS": "0.5",
            "DISPATCH_CLAIM_SECONDS": "10",
            "DISPATCH_STUCK_TASK_SECONDS": "30",  # the killed task worker's booking task runs
            "STOP_GRACE_SECONDS": "5",
        },
        arguments=(
            "up", "--scaled", "--workers", "2", "--gateways", "2",
            "--prefect-database", prefect_database, "--redis", f"redis://127.0.0.1:6379/{REDIS_DB}",
        ),
    )  # fmt: skip
    stack.gateway_port = _two_free_ports()
    webhooks = _webhooks(rig)
    started = time.monotonic()
    try:
        stack.start(timeout=300)
        ready = time.monotonic() - started
        gateways = [stack.gateway_url, f"http://127.0.0.1:{stack.gateway_port + 1}"]

        def deliver(n: int) -> bool:
            time.sleep(
                max(0.0, first + n * PACE - time.monotonic())
            )  # a steady stream: the kills land mid-way
            return webhooks[n].deliver(gateways[n % 2])

        first = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            delivered = pool.map(deliver, range(COUNT))
            wait_until(lambda: _processed() >= KILL_AFTER, 240, 0.2)
            processed_at_kill = _processed()
            os.killpg(_child(stack, f"--port {stack.gateway_port + 1}"), signal.SIGKILL)
            killed = sum(map(kill_tree, wait_until(lambda: _host_frozen_mid_run(stack), 180, 0.1)))
            killed_at = time.monotonic()
            first_try = list(delivered)
        retried = [w for w, ok in zip(webhooks, first_try, strict=True) if not ok]
        for webhook in retried:  # Wix delivers an unanswered webhook again; the surviving gateway answers
            assert webhook.deliver(gateways[0]), webhook.answers
        rows = wait_until(lambda: _all_finished(COUNT), timeout=900, interval=2)
        drained = time.monotonic()
        assert [row.status for row in rows] == [InboxStatus.PROCESSED] * COUNT, [r.last_error for r in rows]
        with session_scope() as session:
            applied = Counter(b.wix_booking_id for b in session.exec(select(Booking)).all())
        assert applied == dict.fromkeys((w.booking_id for w in webhooks), 1)  # every booking, once
        expected = {w.phone.lstrip("+") for w in webhooks}
        wait_until(lambda: expected <= {m["to"].lstrip("+") for m in sms.sent}, timeout=240, interval=1)
        time.sleep(5)  # anything sent twice would show up now
        texted = Counter(m["to"].lstrip("+") for m in sms.sent if m["to"].lstrip("+") != ON_CALL)
        assert texted == dict.fromkeys(expected, 1)  # each patient exactly one confirmation, nobody else
        paged = [m["message"] for m in sms.sent if m["to"].lstrip("+") == ON_CALL]
        assert all("ALERT" in text or "resolved" in text.lower() for text in paged), paged
        redispatched = sum(row.redispatches for row in rows)
        # the killed run's unfinished bookings went to a new run (and were not doubled)
        assert redispatched >= 1
        log = stack.log_tail(None)
        assert log.count("exited with code -9") >= 3  # the supervisor saw the kills (and restarted them)
        tasks = log.count(") -> task run ")  # lone bookings the task workers ran (the rest: flow runs)
        assert tasks >= 1, "no booking went to a task worker"
        warm, cold = log.count("runs warm ("), log.count("runs cold (")
        if "warm engine listening" in log and "(no known commit" not in log:
            # The engines hold the deployed commit: every run they took ran on their imported code.
            assert warm >= 1 and cold == 0, (warm, cold)
    finally:
        stack.stop()
        flush_redis(REDIS_DB)
    # Once everything has stopped: still one confirmation each (nothing sent twice while it stopped).
    sent = list(sms.sent)
    paged = [m["message"] for m in sent if m["to"].lstrip("+") == ON_CALL]
    texted = Counter(m["to"].lstrip("+") for m in sent if m["to"].lstrip("+") != ON_CALL)
    assert texted == dict.fromkeys(expected, 1), [(phone, n) for phone, n in texted.items() if n != 1]
    figures(
        f"scaled topology (2 gateways, 2 workers, PostgreSQL + Redis): ready in {ready:.0f}s; {COUNT} "
        f"bookings, killed when {processed_at_kill} were processed (the worker host: {killed} processes with "
        f"its runs; {warm} runs warm, {cold} cold; {tasks} bookings to task workers), {len(retried)} "
        "unanswered by the killed "
        f"gateway and delivered again to the other; "
        f"{len(applied)} applied once each, {sum(texted.values())} patient SMS "
        f"({len(paged)} to on-call), {redispatched} re-dispatched after the "
        f"kills; drained {drained - killed_at:.0f}s after the kills ({drained - started:.0f}s in all)"
    )


def test_a_task_worker_killed_while_a_bookings_sms_is_at_the_provider_the_patient_still_gets_one_sms(
    rig: Rig, sms, tmp_path: Path, prefect_database: str, figures
) -> None:
    """A lone booking runs on the task worker, which is killed (SIGKILL) while the booking's SMS is at the
    provider: the booking was applied (its inbox row processed, the booking stored once) before the send, and
    the send's claim dies with the task worker's process, so the reminder sweep takes the message back and
    sends it again under the same idempotency key, which the provider answers from its first send: the
    patient has exactly one confirmation, and the outbox says sent."""
    if not is_postgres():
        pytest.skip("the scaled topology runs on PostgreSQL: this test runs in the PostgreSQL pass")
    flush_redis(REDIS_DB)
    stack = Stack(
        tmp_path,
        {"DISPATCH_RECOVERY_SECONDS": "2", "DISPATCH_POLL_SECONDS": "0.5"},
        arguments=(
            "up", "--scaled", "--workers", "1", "--gateways", "1",
            "--prefect-database", prefect_database, "--redis", f"redis://127.0.0.1:6379/{REDIS_DB}",
        ),
    )  # fmt: skip
    first, second = (_booking(rig, phone) for phone in ("+61401999001", "+61401999002"))
    try:
        stack.start(timeout=300)
        # Once Prefect has the task worker's subscription, a lone booking runs on it.
        wait_until(lambda: stack.prefect("POST", "/task_workers/filter", json={}).json() or None, 60, 0.5)
        assert first.deliver(stack.gateway_url)
        wait_until(lambda: any(m["to"].lstrip("+") == "61401999001" for m in sms.sent) or None, 60, 0.5)

        sms.latency = 6.0  # the next send hangs at the provider: the task worker is killed meanwhile
        asked = len(sms.requests)
        assert second.deliver(stack.gateway_url)
        wait_until(lambda: len(sms.requests) > asked or None, 60, 0.1)
        killed = kill_tree(_child(stack, "task-worker --name scaled-1"))
        sms.latency = 0.0
        log = stack.log_tail(None)
        assert log.count(") -> task run ") == 2, log  # both bookings went to the task worker

        rows = wait_until(lambda: _all_finished(2), timeout=60, interval=1)
        assert [r.status for r in rows] == [InboxStatus.PROCESSED] * 2, [r.last_error for r in rows]
        assert [r.redispatches for r in rows] == [0, 0]  # applied before the send: no second run needed
        resent = wait_until(lambda: _outbox_sent("+61401999002"), timeout=240, interval=2)
        time.sleep(3)  # anything sent twice would show up now
        texted = Counter(m["to"].lstrip("+") for m in sms.sent if m["to"].lstrip("+") != ON_CALL)
        assert texted == {"61401999001": 1, "61401999002": 1}
        asked_twice = [q for q in sms.requests if "61401999002" in str(q.get("json"))]
        assert len(asked_twice) >= 2  # the killed send and the sweep's, answered from the first
        with session_scope() as session:
            applied = Counter(b.wix_booking_id for b in session.exec(select(Booking)).all())
        assert applied == {first.booking_id: 1, second.booking_id: 1}
    finally:
        stack.stop()
        flush_redis(REDIS_DB)
    figures(
        f"task worker killed with a booking's SMS at the provider ({killed} processes): the sweep sent it "
        f"again under its key ({len(asked_twice)} requests, {resent}), the patient one SMS"
    )


def _outbox_sent(phone: str) -> str | None:
    """The outcome of the confirmation to `phone` once the outbox has it as sent (what it went through)."""
    with session_scope() as session:
        messages = [
            m
            for m in session.exec(select(OutboundMessage)).all()
            if m.recipient == phone and m.status == "sent"
        ]
        return f"sent after {messages[0].attempts} attempts" if messages else None


def _processed() -> int:
    with session_scope() as session:
        return session.exec(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.status == InboxStatus.PROCESSED)
        ).one()


def _all_finished(count: int) -> list[WebhookEvent] | None:
    rows = inbox_rows()
    done = [row for row in rows if row.status in {InboxStatus.PROCESSED, InboxStatus.FAILED}]
    return rows if len(rows) == count and len(done) == count else None


def _two_free_ports() -> int:
    """A free port whose next port is free too (the second gateway's)."""
    for _ in range(50):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port + 1))
            return port
    raise AssertionError("no two consecutive free ports")
