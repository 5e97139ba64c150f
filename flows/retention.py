"""`retention`: purge what the CRM no longer needs to keep (stored webhook bodies, message texts, OAuth
states), daily; the periods are settings and what each keeps is in `models/retention.py` and the README.
Scheduled as the `retention` deployment, or `avatar-crm retention run [--dry-run]`."""

# No `from __future__ import annotations` here: the runner hands this flow to its process pickled, and
# Prefect builds the parameter model from the annotations; as strings, `datetime` no longer resolves there.
import asyncio
from datetime import datetime

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from models import get_settings
from models.retention import purge
from models.run_logger import describe_counts
from models.types import utcnow


def _run_name() -> str:
    """`retention-2026-12-06` (or `retention-dry-run-…`): the day purged, nothing about patients."""
    now = flow_run.parameters.get("now")
    if isinstance(now, str):
        now = datetime.fromisoformat(now)
    dry = "dry-run-" if flow_run.parameters.get("dry_run") else ""
    return f"retention-{dry}{(now or flow_run.scheduled_start_time):%Y-%m-%d}"


@flow(name="retention", flow_run_name=_run_name)
async def retention(now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Purge what is past its period at `now` (default: the current time); counts per kind, no contents."""
    moment = now or utcnow()
    counts = await asyncio.to_thread(purge, moment, get_settings(), dry_run=dry_run)
    get_run_logger().info(
        "%s at %s: %s", "would purge" if dry_run else "purged", moment.isoformat(), describe_counts(counts)
    )
    return counts
