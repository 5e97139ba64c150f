"""`avatar-crm task-worker`: Prefect's background task worker for lone booking events.

While bookings trickle in, the gateway hands each one to a task worker as a task run
(`flows.booking_intake.booking_intake_task`) rather than a flow run: no process worker, no new process, no
flow-run orchestration, so the patient's confirmation leaves in about a second and a box serves several times
the bookings (docs/benchmarks.md). One per worker host, beside the process worker, which still runs every
flow run (backlogs of bookings, a booking event's later runs, everything else).

Prefect matches a task run to a task worker by the task's key, which it derives from the function's code and
file: gateways and task workers must run the same release from the same install path (as `up --scaled` and the
systemd units do). The gateway hands bookings to task runs only while Prefect reports a task worker serving
that key, so a mismatch, or no task worker at all, costs flow runs, never a booking.
"""

from __future__ import annotations

import asyncio

from models.log_format import configure_logging

TASKS_AT_ONCE = 16  # booking task runs under way at once in one task worker (each mostly waits on I/O)


def main(name: str, limit: int = TASKS_AT_ONCE) -> None:
    from blocks.settings_source import install

    install()  # settings from the blocks first, as every flow run's process does
    configure_logging()
    from prefect.task_worker import serve

    from flows.booking_intake import booking_intake_task

    print(f"task worker {name}: serving {booking_intake_task.name} ({limit} at once)", flush=True)
    asyncio.run(serve(booking_intake_task, limit=limit))
