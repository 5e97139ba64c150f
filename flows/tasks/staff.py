"""Staff notifications: what a person at the clinic must act on (a patient asking to cancel or move).

They go through the outbox like any message, so a notification is queued in the same transaction as the
change that calls for it and is never lost or doubled. They are always delivered to the Prefect UI as a
markdown artifact (key `staff-notifications`), where ops already look, and also by email to
STAFF_NOTIFICATION_EMAIL when that is set and Google is connected.
"""

from __future__ import annotations

from prefect.artifacts import acreate_markdown_artifact

from flows.outbox import ClaimedMessage, Outcome
from models import MessageStatus

PROVIDER = "prefect-artifact"
ARTIFACT_KEY = "staff-notifications"


async def deliver_staff_notice(claimed: ClaimedMessage) -> Outcome:
    artifact_id = await acreate_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=f"### Staff action needed\n\n{claimed.body}\n\n_Outbox message {claimed.id}_",
        description="A patient's SMS needs a person",
    )
    return Outcome(claimed.id, MessageStatus.SENT, None, PROVIDER, str(artifact_id))
