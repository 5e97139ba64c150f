"""The MobileMessage provider task: send one outbox message, exactly once, and record what happened.

Transient trouble (timeouts, 429, 5xx) is retried inside the client with backoff and jitter; if the provider
is still down after that, the message goes back to pending for the outbox sweep, so an outage delays a
message but never loses it. The outbox key doubles as MobileMessage's `Idempotency-Key`, so even a send
whose answer was lost is not delivered twice. Provider slots (`flows/provider_slots.py`) keep every
process together within MobileMessage's five simultaneous requests.
"""

from __future__ import annotations

import asyncio
import logging

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows import outbox
from flows.provider_slots import ProviderSlots, SlotTimeoutError
from models import MessageStatus, get_settings
from providers.mobilemessage import MobileMessageClient, MobileMessageError, SmsMessage

PROVIDER = "mobilemessage"

_clients: dict[int, MobileMessageClient] = {}


def get_sms_client() -> MobileMessageClient:
    """One client per event loop (httpx connections belong to the loop that opened them)."""
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None:
        client = _clients[loop_id] = MobileMessageClient.from_settings(get_settings())
    return client


def _logger() -> logging.Logger | logging.LoggerAdapter:  # type: ignore[type-arg]
    try:
        return get_run_logger()
    except Exception:  # called outside a run (CLI, tests of the plain function)
        return logging.getLogger(__name__)


@task(name="send-sms", task_run_name="send-sms-{message_id}", cache_policy=NO_CACHE)
async def send_sms(message_id: int) -> str:
    """Returns the message's status afterwards: sent, sandboxed, blocked, failed, pending (retry later), …"""
    logger = _logger()
    claimed = outbox.claim(message_id)
    if isinstance(claimed, str):
        logger.info("message %s not sent now: %s", message_id, claimed)
        return claimed

    settings = get_settings()
    if settings.sms_provider == "sandbox":
        outbox.record(
            message_id, MessageStatus.SANDBOXED, "sandbox mode: nothing left the machine", provider="sandbox"
        )
        logger.info("message %s sandboxed (SMS_PROVIDER=sandbox)", message_id)
        return MessageStatus.SANDBOXED

    sms = SmsMessage(
        to=claimed.recipient,
        message=claimed.body,
        sender=settings.mobilemessage_from_number,
        custom_ref=f"msg:{message_id}",
    )
    try:
        async with ProviderSlots(PROVIDER, settings.mobilemessage_max_in_flight).hold():
            results = await get_sms_client().send([sms], idempotency_key=claimed.idempotency_key)
    except (MobileMessageError, SlotTimeoutError) as exc:
        if isinstance(exc, SlotTimeoutError) or exc.retryable:
            when = outbox.retry_later(message_id, str(exc))
            logger.warning(
                "message %s delayed by provider trouble (%s); next try at %s", message_id, exc, when
            )
            return MessageStatus.PENDING
        outbox.record(message_id, MessageStatus.FAILED, str(exc), provider=PROVIDER)
        logger.error("message %s failed permanently: %s", message_id, exc)
        return MessageStatus.FAILED

    result = results[0]
    if result.status == "success":
        outbox.record(
            message_id, MessageStatus.SENT, None, provider=PROVIDER, provider_message_id=result.message_id
        )
        logger.info("message %s accepted by MobileMessage as %s", message_id, result.message_id)
        return MessageStatus.SENT
    status = MessageStatus.BLOCKED if result.status == "blocked" else MessageStatus.FAILED
    reason = f"provider result {result.status}" + (f": {result.error}" if result.error else "")
    outbox.record(message_id, status, reason, provider=PROVIDER, provider_message_id=result.message_id)
    logger.error("message %s %s: %s", message_id, status, reason)
    return status
