"""`google-contacts-import`: bring the clinic's Google Contacts into the CRM, daily or by hand.

What is read and how people are matched and merged (never overwriting what the clinic entered) is in
`messaging/google_contacts.py`. Not connected: when the clinic never connected Google (or staff disconnected
it) the run completes and says so; when Google refused the stored token (invalid_grant) the run fails, so ops
notice.
"""

# No `from __future__ import annotations`: the runner pickles this flow and Prefect builds the parameter
# model from the annotations.
import asyncio
from typing import Any

from prefect import flow, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from messaging.google_contacts import (
    ARTIFACT_KEY,
    ARTIFACT_MAX_ROWS,
    ImportResult,
    artifact_rows,
    not_connected_reason,
    run_import,
)
from models.run_logger import run_logger
from models.types import utcnow
from providers.google_api import GoogleNotConnected, GoogleTemporaryError


@task(
    name="import-google-contacts",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_jitter_factor=0.5,
    retry_condition_fn=lambda _task, _run, state: is_temporary(state),
)
async def import_contacts_task(full: bool) -> ImportResult:
    """Retried with backoff for temporary trouble (network, 429, 5xx); other errors end the run."""
    return await asyncio.to_thread(run_import, full)


def is_temporary(state: Any) -> bool:
    """Retry only what waiting can fix; the failed state carries the exception the task raised."""
    return isinstance(getattr(state, "data", None), GoogleTemporaryError)


def _run_name() -> str:
    kind = "full" if flow_run.parameters.get("full") else "changes"
    return f"google-contacts-{kind}-{utcnow():%Y%m%d-%H%M}"


@flow(name="google-contacts-import", flow_run_name=_run_name, description=__doc__.split("\n\n")[0])
async def google_contacts_import(full: bool = False) -> dict[str, int]:
    """Import (all contacts with `full`, else the changes since the last run); counts per outcome."""
    logger = run_logger(__name__)
    problem = await asyncio.to_thread(not_connected_reason)
    if problem is not None:
        reason, failure = problem
        if failure:
            raise GoogleNotConnected(f"nothing imported: {reason}")
        logger.info("nothing imported: %s", reason)
        return {}
    result = await import_contacts_task(full)
    counts = result.counts()
    logger.info("contacts import (%s): %s", result.mode, counts)
    if result.changes:
        shown = min(len(result.changes), ARTIFACT_MAX_ROWS)
        await acreate_table_artifact(
            key=ARTIFACT_KEY,
            table=artifact_rows(result),
            description=(
                f"Google Contacts import ({result.mode}): {counts}"
                + (
                    f"; first {shown} of {len(result.changes)} changes shown"
                    if shown < len(result.changes)
                    else ""
                )
            ),
        )
    return counts


if __name__ == "__main__":
    asyncio.run(google_contacts_import())
