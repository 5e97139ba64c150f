"""MobileMessage delivery of one claimed outbox message: send it exactly once, and say what happened.

Transient trouble (timeouts, 429, 5xx) is retried inside the client with backoff and jitter; if the provider
is still down after that, the outcome is "pending" and the message waits for the next sweep, so an outage
delays a message but never loses it. The outbox key doubles as MobileMessage's `Idempotency-Key`, so even a
send whose answer was lost is not delivered twice. Provider slots (`messaging/provider_slots.py`) keep every
process together within MobileMessage's five simultaneous requests.
"""

from __future__ import annotations

import asyncio

from messaging.outbox import ClaimedMessage, Outcome
from messaging.provider_slots import ProviderSlots, SlotTimeoutError
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


def sms_slot() -> ProviderSlots:
    """One of MobileMessage's five simultaneous requests, shared by every process on this database."""
    return ProviderSlots(PROVIDER, get_settings().mobilemessage_max_in_flight)


async def deliver_sms(claimed: ClaimedMessage) -> Outcome:
    settings = get_settings()
    if settings.sms_provider == "sandbox":
        return Outcome(
            claimed.id, MessageStatus.SANDBOXED, "sandbox mode: nothing left the machine", provider="sandbox"
        )
    sms = SmsMessage(
        to=claimed.recipient,
        message=claimed.body,
        sender=settings.mobilemessage_from_number,
        custom_ref=f"msg:{claimed.id}",
    )
    try:
        async with sms_slot().hold():
            results = await get_sms_client().send([sms], idempotency_key=claimed.idempotency_key)
    except (MobileMessageError, SlotTimeoutError) as exc:
        if isinstance(exc, SlotTimeoutError) or exc.retryable:
            return Outcome(claimed.id, MessageStatus.PENDING, str(exc), provider=PROVIDER)
        return Outcome(claimed.id, MessageStatus.FAILED, str(exc), provider=PROVIDER)

    result = results[0]
    if result.status == "success":
        return Outcome(claimed.id, MessageStatus.SENT, None, PROVIDER, result.message_id)
    status = MessageStatus.BLOCKED if result.status == "blocked" else MessageStatus.FAILED
    reason = f"provider result {result.status}" + (f": {result.error}" if result.error else "")
    return Outcome(claimed.id, status, reason, PROVIDER, result.message_id)
