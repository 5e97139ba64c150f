"""The provider tasks flows call: send one outbox message, or every due one, and record what happened.

Sending a batch uses a fixed pool of workers (as many as the provider allows in flight) rather than one
coroutine per message, and writes the results back in one transaction: a sweep of a thousand reminders is a
handful of commits, not thousands.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.tasks.email import deliver_email, gmail_slot
from flows.tasks.sms import deliver_sms, sms_slot
from flows.tasks.staff import deliver_staff_notice
from messaging import outbox
from messaging.outbox import ClaimedMessage, Outcome
from messaging.provider_slots import ProviderSlots, SlotTimeoutError
from models import Channel, MessageStatus
from models.run_logger import describe_counts, run_logger

SENDERS: dict[str, Callable[[ClaimedMessage], Awaitable[Outcome]]] = {
    Channel.SMS.value: deliver_sms,
    Channel.EMAIL.value: deliver_email,
    Channel.OPS.value: deliver_staff_notice,
}
# The provider slots each channel's batch workers hold (one slot per worker, as many workers as slots); a
# channel without an entry (OPS: Prefect artifacts) is sent by one worker holding nothing.
SLOTS: dict[str, Callable[[], ProviderSlots]] = {
    Channel.SMS.value: sms_slot,
    Channel.EMAIL.value: gmail_slot,
}


async def deliver(claimed: ClaimedMessage) -> Outcome:
    sender = SENDERS.get(claimed.channel)
    if sender is None:
        return Outcome(claimed.id, MessageStatus.FAILED, f"no sender for channel {claimed.channel}")
    try:
        return await sender(claimed)
    except Exception as exc:  # an unexpected bug must not strand the claim: retry later with the same key
        return Outcome(claimed.id, MessageStatus.PENDING, f"{type(exc).__name__}: {exc}"[:300])


async def deliver_all(claimed: list[ClaimedMessage]) -> list[Outcome]:
    """Send a batch, each channel through its own provider's slots (email never holds an SMS slot)."""
    by_channel: dict[str, list[ClaimedMessage]] = {}
    for item in claimed:
        by_channel.setdefault(item.channel, []).append(item)
    batches = await asyncio.gather(*(_deliver_channel(ch, items) for ch, items in by_channel.items()))
    return [outcome for batch in batches for outcome in batch]


async def _deliver_channel(channel: str, claimed: list[ClaimedMessage]) -> list[Outcome]:
    queue: asyncio.Queue[ClaimedMessage] = asyncio.Queue()
    for item in claimed:
        queue.put_nowait(item)
    outcomes: list[Outcome] = []
    make_slot = SLOTS.get(channel)

    async def drain() -> None:
        while not queue.empty():
            outcomes.append(await deliver(queue.get_nowait()))

    async def worker() -> None:
        if make_slot is None:
            await drain()
            return
        try:
            async with make_slot().hold():  # one slot per worker for the whole batch
                await drain()
        except SlotTimeoutError:  # every slot busy elsewhere for long: what is left waits for the next sweep
            while not queue.empty():
                claimed = queue.get_nowait()
                outcomes.append(Outcome(claimed.id, MessageStatus.PENDING, "provider slots busy"))

    limit = make_slot().limit if make_slot is not None else 1
    await asyncio.gather(*(worker() for _ in range(max(1, min(len(claimed), limit)))))
    return outcomes


def _log(logger: logging.Logger | logging.LoggerAdapter, outcome: Outcome) -> None:  # type: ignore[type-arg]
    if outcome.status in {MessageStatus.FAILED, MessageStatus.BLOCKED}:
        logger.error("message %s %s: %s", outcome.message_id, outcome.status, outcome.detail)
    elif outcome.status == MessageStatus.PENDING:
        logger.warning("message %s delayed: %s", outcome.message_id, outcome.detail)
    else:
        logger.info("message %s %s", outcome.message_id, outcome.status)


async def send_one(message_id: int) -> str:
    """Send one outbox message if it is still due and allowed; returns its status afterwards. Safe to call
    again for the same message (the claim says whether it is still due), so a retried caller sends it once."""
    logger = run_logger(__name__)
    claimed = await asyncio.to_thread(outbox.claim, message_id)
    if isinstance(claimed, str):
        logger.info("message %s not sent now: %s", message_id, claimed)
        return claimed
    async with outbox.leases_kept([claimed.id]):
        outcome = await deliver(claimed)
    await asyncio.to_thread(outbox.record_many, [outcome])
    _log(logger, outcome)
    return outcome.status


@task(name="send-message", task_run_name="send-message-{message_id}", cache_policy=NO_CACHE)
async def send_message(message_id: int) -> str:
    """`send_one` as a task run of its own, for flows whose unit of work is the message."""
    return await send_one(message_id)


@task(name="send-due-messages", cache_policy=NO_CACHE)
async def send_due(now: datetime, limit: int = 1000) -> dict[int, str]:
    """Claim every due message (re-checked against bookings, suppressions, deadlines), send, record."""
    logger = run_logger(__name__)
    await asyncio.to_thread(outbox.release_abandoned)
    claimed, refused = await asyncio.to_thread(outbox.claim_due, now, channels=list(SENDERS), limit=limit)
    async with outbox.leases_kept([c.id for c in claimed]):
        outcomes = await deliver_all(claimed)
    await asyncio.to_thread(outbox.record_many, outcomes)
    for outcome in outcomes:
        _log(logger, outcome)
    results = {**refused, **{o.message_id: str(o.status) for o in outcomes}}
    logger.info("%s due: %s", len(results), describe_counts(Counter(results.values()), "nothing"))
    return results
