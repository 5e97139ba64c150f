"""The campaign's provider tasks: post batch groups to SendGrid or MobileMessage, settle a stopped run.

A batch group is one Prefect task run (`send-batches-<n>`): it claims batches one after another (each
re-checked against suppressions and consent at the claim) and posts them, up to `GROUP_BATCHES`, so a
100,000-recipient email campaign shows as a dozen task runs in the Prefect UI rather than one opaque run,
without paying a task run per request. The flow runs as many groups side by side as the provider allows in
flight. A batch the provider could not take (429, 5xx, refused connection, every MobileMessage slot busy)
goes back to `pending` and its group raises `ProviderDelayed`, which Prefect retries after the delays
declared on the task (about 30 minutes in all); the retry claims those messages again, re-checked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from prefect import Task, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from campaigns import bulk_outbox as campaign_outbox
from campaigns.bulk_outbox import Batch, CampaignMessage
from campaigns.content import email_content, personal_fields
from campaigns.spec import CampaignSpec
from flows.tasks.sms import get_sms_client, sms_slot
from messaging.email_wording import ClinicIdentity
from messaging.outbox import Outcome
from messaging.provider_slots import ProviderSlots, SlotTimeoutError
from models import Channel, MessageStatus, Settings
from models.run_logger import run_logger
from models.types import utcnow
from providers.mobilemessage import MAX_MESSAGES_PER_REQUEST, MobileMessageError, SmsMessage
from providers.sendgrid import MAX_PERSONALIZATIONS, EmailRecipient, SendGridClient, SendGridError, build_mail

GROUP_BATCHES = 10  # requests per task run: 10,000 emails or 100,000 SMS
# Waits between a group's attempts while the provider cannot take its batches: doubling from 2 s to a minute,
# about 30 minutes in all; after that the run ends Failed and a new launch resumes the campaign.
RETRY_DELAYS = [min(60, 2 * 2**attempt) for attempt in range(34)]
PROGRESS_EVERY_SECONDS = 2.0
CAMPAIGN_GC_THRESHOLD = 50_000  # net allocations between young collections while sending (`lean_gc`)


class ProviderDelayed(RuntimeError):
    """The provider could not take a batch now; its messages are pending again. Retried by Prefect."""


def in_flow_run() -> bool:
    return FlowRunContext.get() is not None


def step(prefect_task: Task[Any, Any]) -> Callable[..., Any]:
    """The task itself in a flow run (a task run in the UI, with its retries); outside one (the flow's
    function called directly, as the unit tests do) the plain function, with no Prefect API to report to."""
    return prefect_task if in_flow_run() else prefect_task.fn


# --- one provider request ------------------------------------------------------------------------------


class Poster:
    """Turns a claimed batch into one provider request and the request's result into outcomes."""

    def __init__(self, spec: CampaignSpec, settings: Settings) -> None:
        self.settings, self.spec = settings, spec
        self.clinic = ClinicIdentity.from_settings(settings)
        self.email_sandbox = settings.email_campaign_provider != "sendgrid"
        self.sms_sandbox = settings.sms_provider == "sandbox"
        self._sendgrid: SendGridClient | None = None

    @property
    def sandbox(self) -> bool:
        return self.email_sandbox if self.spec.channel == Channel.EMAIL else self.sms_sandbox

    @property
    def batch_size(self) -> int:
        return MAX_PERSONALIZATIONS if self.spec.channel == Channel.EMAIL else MAX_MESSAGES_PER_REQUEST

    @property
    def in_flight(self) -> int:
        if self.spec.channel == Channel.EMAIL:
            return max(1, self.settings.sendgrid_max_in_flight)
        return max(1, self.settings.mobilemessage_max_in_flight)

    def slot(self) -> ProviderSlots | None:
        """MobileMessage's five requests are shared with every other sender on this database."""
        return sms_slot() if self.spec.channel == Channel.SMS and not self.sms_sandbox else None

    async def post(self, key: str, variant: str, messages: list[CampaignMessage]) -> list[Outcome]:
        if self.sandbox:
            return [
                Outcome(m.id, MessageStatus.SANDBOXED, "sandbox mode: nothing left the machine", "sandbox")
                for m in messages
            ]
        if self.spec.channel == Channel.EMAIL:
            return await self._post_email(variant, messages)
        return await self._post_sms(key, messages)

    def email_body(self, variant_name: str, messages: list[CampaignMessage]) -> dict[str, Any]:
        variant = self.spec.variant(variant_name)
        settings = self.settings
        recipients = []
        for m in messages:
            data, substitutions = personal_fields(variant, m.first_name, m.last_name, self.clinic)
            name = " ".join(p for p in (m.first_name, m.last_name) if p) or None
            custom_args = {"outbox_id": str(m.id), "campaign": self.spec.slug, "variant": variant_name}
            recipients.append(EmailRecipient(m.recipient, name, custom_args, data, substitutions))
        return build_mail(
            from_email=settings.sendgrid_from_email,
            from_name=settings.sendgrid_from_name or settings.clinic_name,
            content=email_content(
                variant, self.clinic, with_unsubscribe=settings.sendgrid_unsubscribe_group_id is not None
            ),
            recipients=recipients,
            categories=["campaign", f"campaign-{self.spec.slug}", *self.spec.categories],
            asm_group_id=settings.sendgrid_unsubscribe_group_id,
            send_at=self.spec.sendgrid_send_at(utcnow()),
        )

    async def _post_email(self, variant: str, messages: list[CampaignMessage]) -> list[Outcome]:
        if self._sendgrid is None:
            self._sendgrid = SendGridClient.from_settings(self.settings)
        client = self._sendgrid
        try:  # building a 1,000-recipient body is CPU work too: off the event loop, with the request
            accepted = await asyncio.to_thread(lambda: client.send(self.email_body(variant, messages)))
        except SendGridError as exc:
            if exc.ambiguous:
                status, detail = MessageStatus.SENT, f"unconfirmed, not resent: {exc}"
            elif exc.retryable:
                status, detail = MessageStatus.PENDING, str(exc)
            else:
                status, detail = MessageStatus.FAILED, str(exc)
            return [Outcome(m.id, status, detail, "sendgrid") for m in messages]
        # One X-Message-Id for the whole request: with the address it finds each recipient's row when an
        # event comes back without our custom_args.
        return [Outcome(m.id, MessageStatus.SENT, None, "sendgrid", accepted.message_id) for m in messages]

    async def _post_sms(self, key: str, messages: list[CampaignMessage]) -> list[Outcome]:
        sender = self.settings.mobilemessage_from_number
        sms = [SmsMessage(m.recipient, m.body, sender, f"msg:{m.id}") for m in messages]
        try:
            results = await get_sms_client().send(sms, idempotency_key=key)
        except MobileMessageError as exc:
            status = MessageStatus.PENDING if exc.retryable else MessageStatus.FAILED
            return [Outcome(m.id, status, str(exc), "mobilemessage") for m in messages]
        if len(results) != len(messages):  # never guess which result belongs to whom
            detail = f"MobileMessage answered {len(results)} results for {len(messages)} messages"
            return [Outcome(m.id, MessageStatus.FAILED, detail, "mobilemessage") for m in messages]
        outcomes = []
        for m, result in zip(messages, results, strict=True):
            if result.status == "success":
                outcomes.append(Outcome(m.id, MessageStatus.SENT, None, "mobilemessage", result.message_id))
            else:
                status = MessageStatus.BLOCKED if result.status == "blocked" else MessageStatus.FAILED
                reason = f"provider result {result.status}" + (f": {result.error}" if result.error else "")
                outcomes.append(Outcome(m.id, status, reason, "mobilemessage", result.message_id))
        return outcomes


class Progress:
    """The progress artifact, updated at most every couple of seconds while batches go out."""

    def __init__(self, slug: str, total: int) -> None:
        self.slug, self.total, self.done = slug, total, 0
        self._artifact: UUID | None = None
        self._last = 0.0

    async def start(self, description: str) -> None:
        if in_flow_run():
            self._artifact = await acreate_progress_artifact(
                0.0, key=f"campaign-{self.slug}-progress"[:100], description=description
            )

    async def advance(self, count: int, *, final: bool = False) -> None:
        self.done += count
        if self._artifact is None or (not final and time.monotonic() - self._last < PROGRESS_EVERY_SECONDS):
            return
        self._last = time.monotonic()
        await aupdate_progress_artifact(self._artifact, min(100.0, 100.0 * self.done / max(self.total, 1)))

    def grow(self, count: int) -> None:
        """More messages queued (called from the queueing thread; an int add is atomic under the GIL)."""
        self.total += count


# --- the groups' shared claim order --------------------------------------------------------------------


class Sender:
    """What the batch groups of one send share: the claim cursors (claims go in id order, one at a time),
    the counts, the progress, and the audience still being queued beside them.

    A plain class, not a dataclass: Prefect looks through a task's parameters for futures, and need not walk
    the lock and the counters.
    """

    def __init__(
        self,
        campaign_id: int,
        spec: CampaignSpec,
        poster: Poster,
        progress: Progress,
        feeding: asyncio.Future[int] | None = None,
    ) -> None:
        self.campaign_id, self.spec, self.poster, self.progress = campaign_id, spec, poster, progress
        self.feeding = feeding  # the audience still being queued: nothing left now may mean "not yet"
        self.variants = [v.name for v in spec.variants]
        self.cursors = dict.fromkeys(self.variants, 0)
        self.counts: dict[str, int] = {}
        self.claimed = 0
        self.posted = 0
        self.stopped = False
        self.groups = itertools.count(1)
        self._lock = asyncio.Lock()

    def count(self, status: str, number: int = 1) -> None:
        key = str(status)  # "sent", not MessageStatus.SENT, in logs and results
        self.counts[key] = self.counts.get(key, 0) + number

    def rewind(self) -> None:
        """Messages went back to pending below the cursors: the next claims start from the first again."""
        self.cursors = dict.fromkeys(self.variants, 0)

    async def next_batch(self) -> Batch | None:
        """The next batch, claimed and re-checked now; None when nothing is left (or the send stops)."""
        async with self._lock:  # one claim at a time: the cursors move in order
            while not self.stopped:
                queued_all = self.feeding is None or self.feeding.done()  # before the claim, not after it
                waiting = self.progress.total - self.claimed
                if not queued_all and waiting < self.poster.batch_size * len(self.variants):
                    await asyncio.sleep(0.02)  # while queueing, post full batches only (10,000 SMS a request)
                    continue
                batch = await self._claim_any()
                if batch is not None or queued_all:
                    return batch
                await asyncio.sleep(0.02)  # the queue is behind the senders: wait for more rows
            return None

    async def _claim_any(self) -> Batch | None:
        for variant in self.variants:
            while True:
                batch, self.cursors[variant] = await asyncio.to_thread(
                    campaign_outbox.claim_batch,
                    self.campaign_id,
                    self.spec.slug,
                    self.spec.channel,
                    variant,
                    after_id=self.cursors[variant],
                    limit=self.poster.batch_size,
                )
                if batch is None:
                    break
                self.claimed += len(batch.messages) + len(batch.refused)
                for status in batch.refused.values():
                    self.count(status)
                if batch.refused:
                    await self.progress.advance(len(batch.refused))
                if batch.messages:
                    return batch
        return None


# --- the tasks -----------------------------------------------------------------------------------------


def provider_delayed(_task: Any, _run: Any, state: Any) -> bool:
    """Retry a group only when waiting can help; a bug or a refusal ends the run at once."""
    return isinstance(getattr(state, "data", None), ProviderDelayed)


@task(
    name="send-batches",
    task_run_name="send-batches-{group}",
    cache_policy=NO_CACHE,
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=RETRY_DELAYS,
    retry_jitter_factor=0.5,
    retry_condition_fn=provider_delayed,
)
async def send_batch_group(sender: Sender, group: int) -> dict[str, Any]:
    """Claim and post up to GROUP_BATCHES batches; says whether nothing was left to claim (`drained`)."""
    slot = sender.poster.slot()
    try:
        async with slot.hold() if slot is not None else contextlib.nullcontext():  # one slot for the group
            posted = await _post_batches(sender)
    except SlotTimeoutError:  # MobileMessage's slots all busy elsewhere for long: as if it were down
        raise ProviderDelayed("every MobileMessage request slot stayed busy") from None
    return {"group": group, "batches": posted, "drained": posted < GROUP_BATCHES}


async def _post_batches(sender: Sender) -> int:
    """Post batches until GROUP_BATCHES are posted or none is left; returns how many were posted."""
    for posted in range(GROUP_BATCHES):
        batch = await sender.next_batch()
        if batch is None:
            return posted
        outcomes = await sender.poster.post(batch.key, batch.variant, batch.messages)
        await asyncio.to_thread(campaign_outbox.record_batch, outcomes)
        delayed = 0
        for outcome in outcomes:
            sender.count(outcome.status)
            delayed += outcome.status == MessageStatus.PENDING
        if delayed:
            sender.rewind()
            detail = outcomes[0].detail
            raise ProviderDelayed(f"a batch of {len(outcomes)} waits for the provider: {detail}")
        sender.posted += 1
        await sender.progress.advance(len(outcomes))
    return GROUP_BATCHES


@task(name="settle-abandoned", task_run_name="settle-abandoned", cache_policy=NO_CACHE)
async def settle_abandoned(campaign_id: int, spec: CampaignSpec, poster: Poster) -> dict[str, int]:
    """Messages a stopped run left `sending`. SMS: posted again in the same batch with the same
    Idempotency-Key, so MobileMessage answers with the original result and sends nothing twice. Email:
    SendGrid has no such key, so they are recorded as sent-unconfirmed, never posted again."""
    counts: dict[str, int] = {}
    for batch in await asyncio.to_thread(campaign_outbox.abandoned, campaign_id, spec.channel):
        ids = [m.id for m in batch.messages]
        if spec.channel == Channel.EMAIL or not batch.key:
            detail = "unconfirmed, not resent: a previous run stopped while posting it"
            await asyncio.to_thread(campaign_outbox.settle_unconfirmed, ids, detail)
            counts["unconfirmed"] = counts.get("unconfirmed", 0) + len(ids)
            continue
        slot = poster.slot()  # MobileMessage's in-flight limit holds for a replay too
        async with slot.hold() if slot is not None else contextlib.nullcontext():
            outcomes = await poster.post(batch.key, batch.variant, batch.messages)
        await asyncio.to_thread(campaign_outbox.record_batch, outcomes)
        for outcome in outcomes:
            counts[str(outcome.status)] = counts.get(str(outcome.status), 0) + 1
    return counts


async def send_lanes(sender: Sender) -> None:
    """As many batch groups at a time as the provider allows in flight, each lane starting its next group
    when one ends, until nothing is left to claim. A lane that fails (its retries spent) stops the others
    claiming; they finish the request they are in, and the failure is raised."""
    send = step(send_batch_group)

    async def lane() -> None:
        try:
            while not (await send(sender, next(sender.groups)))["drained"]:
                pass
        except BaseException:
            sender.stopped = True
            raise

    results = await asyncio.gather(*(lane() for _ in range(sender.poster.in_flight)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            run_logger(__name__).warning("batch group failed: %s", result)
            raise result


@contextlib.contextmanager
def lean_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector out of a campaign's way; refcounting still frees as usual.

    A campaign allocates millions of short-lived objects (request bodies, rows). Freezing what exists now
    keeps each collection from walking everything Prefect imported (measured: body building 2.5x faster at
    100,000 recipients). And at the default threshold (a collection every 700 net allocations) collections
    ran in the middle of building each 1,000-recipient body and promoted the live body into the older
    generations: 2,900 collections took 0.7 s, holding the GIL, per 100,000 recipients. At 50,000 there were
    two. Cyclic garbage can then grow by at most that many objects (a few MB) before it is collected.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(CAMPAIGN_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
