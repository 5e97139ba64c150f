"""`sms-triage`: understand a patient's SMS reply and act on it, or hand it to a person.

What a reply can do is decided in `messaging/replies.py` (confirm; cancel or reschedule go to staff; opt-out,
opt-in, help; anything unsure goes to staff, never guessed). The flow reads the reply, classifies it (the
rules first, the optional model only for what they are unsure of), applies it in one transaction with the
messages it calls for, and sends those.
"""

from __future__ import annotations

import asyncio

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.states import Completed, State

from flows.tasks.send import send_message
from inbox.service import SMS_REPLIES, InboxEvent, handle
from messaging.replies import TriageOutcome, apply_inbox_reply, classify_inbound
from messaging.sms_classifier import Classification
from providers.mobilemessage_webhooks import InboundSms


@task(name="classify-reply", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
async def classify_reply(reply: InboxEvent[InboundSms]) -> Classification:
    return await classify_inbound(reply.payload)


@task(
    name="apply-reply",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 3, 10],
    retry_jitter_factor=0.5,
)
async def apply_reply_task(reply: InboxEvent[InboundSms], classification: Classification) -> TriageOutcome:
    return await asyncio.to_thread(apply_inbox_reply, reply, classification)


@flow(name="sms-triage", description=__doc__.split("\n\n")[0])
async def sms_triage(event_id: int) -> State:
    """Classify inbox event `event_id` (an inbound SMS) and act on it."""
    logger = get_run_logger()
    async with handle(event_id, SMS_REPLIES) as reply:
        classification = await classify_reply(reply)
        outcome = await apply_reply_task(reply, classification)
    logger.info(
        "reply %s read as %s (%.2f, %s): %s",
        event_id,
        outcome.intent,
        outcome.confidence,
        classification.source,
        outcome.summary,
    )
    for message_id in outcome.to_send:
        await send_message(message_id)
    return Completed(message=f"{outcome.intent}: {outcome.summary}")


if __name__ == "__main__":
    import sys

    asyncio.run(sms_triage(int(sys.argv[1])))
