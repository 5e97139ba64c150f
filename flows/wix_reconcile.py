"""`wix-reconcile`: notice the bookings whose webhooks never arrived, and feed them to booking intake.

Hourly, or `avatar-crm wix reconcile`: reads every booking Wix changed since the last completed run, and
writes an inbox row for each one the CRM lacks or holds at an older revision, which the dispatcher hands to
`booking-intake` like a webhook (`bookings/reconcile.py` has the rules). The run records its window, totals
and the sync rate, and leaves a `wix-reconcile` artifact with counts and booking ids only.
"""

# No `from __future__ import annotations`: Prefect builds the parameter model from these annotations in
# the run's process (see reminder_sweep.py).
import asyncio
from datetime import datetime

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact

from bookings.reconcile import OFF, artifact_markdown, default_since, reconcile, summary
from models import get_settings
from models.run_logger import run_logger
from models.types import utcnow
from providers.wix_api import WixBookingsClient


@flow(name="wix-reconcile", flow_run_name="wix-reconcile", description=__doc__.split("\n\n")[0])
async def wix_reconcile(since: datetime | None = None, until: datetime | None = None) -> dict[str, object]:
    """Reconcile the bookings Wix changed in [since, until) (default: from the last completed run to now)."""
    logger = run_logger(__name__)
    settings = get_settings()
    if not settings.wix_api_configured:
        logger.warning(OFF)
        return {"status": "off", "reason": OFF}
    until = until or utcnow()
    since = since or await asyncio.to_thread(default_since, until)
    async with WixBookingsClient.from_settings(settings) as client:
        try:
            run, tally = await reconcile(client, since, until)
        except Exception as exc:
            logger.error("reconciliation failed after %s request(s): %s", client.requests, type(exc).__name__)
            raise
    result = summary(run)
    logger.info("%s", ", ".join(f"{key} {value}" for key, value in result.items()))
    if tally.mismatched:
        logger.warning("%s booking(s) differ from Wix at the same revision", len(tally.mismatched))
    await acreate_markdown_artifact(
        key="wix-reconcile",
        markdown=artifact_markdown(run, tally),
        description=f"sync rate {result['sync_rate']}",
    )
    return result
