"""Delivery of a claimed staff notice: a markdown artifact in the Prefect UI (key `staff-notifications`),
where ops already look. The notices themselves are queued by `messaging/staff_notices.py`."""

from __future__ import annotations

from prefect.artifacts import acreate_markdown_artifact

from messaging.outbox import ClaimedMessage, Outcome
from models import MessageStatus

PROVIDER = "prefect-artifact"
ARTIFACT_KEY = "staff-notifications"


async def deliver_staff_notice(claimed: ClaimedMessage) -> Outcome:
    artifact_id = await acreate_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=f"### Staff action needed\n\n{claimed.body}\n\n_Outbox message {claimed.id}_",
        description="Staff action needed: a patient's reply, or an ops alert (docs/alerts.md)",
    )
    return Outcome(claimed.id, MessageStatus.SENT, None, PROVIDER, str(artifact_id))
