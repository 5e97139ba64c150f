"""`campaign-send` and `campaign-winner`: marketing email (SendGrid) and SMS (MobileMessage) at scale.

campaign-send(spec): the audience is streamed from the database and written to the outbox in bulk (one row
per recipient, key `campaign:{slug}:{contact_id}`), then claimed in provider-sized batches (1,000 emails or
10,000 SMS a request), re-checked against suppressions and consent, and posted with several requests in
flight; results are written back in bulk. A crashed or repeated run resumes from the outbox: what was sent
is not sent again. With several variants only the A/B test group is sent; a `campaign-winner` run is
scheduled for after the wait.

campaign-winner(campaign, winner=None): compares the variants (`flows/ab_stats.py`: minimum sample and a
two-proportion test); names a winner only when the difference is significant, otherwise marks the campaign
AWAITING_CHOICE and says how a person chooses. With a winner, the rest of the audience gets it.
"""

# No `from __future__ import annotations`: Prefect builds the parameter model (the Prefect UI's run form)
# from these annotations, and the runner hands flows to their process pickled (see flows/reminder_sweep.py).
import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import flow
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.runtime import flow_run as current_run
from sqlmodel import select

from flows import campaign_outbox
from flows.ab_stats import Decision, VariantResult, choose_winner
from flows.campaign_audience import (
    REMAINDER,
    assign_variant,
    audience_conditions,
    audience_groups,
    empty_test_group,
    excluded_by_filter,
    stream_recipients,
)
from flows.campaign_content import (
    SMS_MAX_LENGTH,
    check_content,
    email_content,
    personal_fields,
    preview_markdown,
    sms_text,
    summary,
)
from flows.campaign_outbox import ACCEPTED, Batch, CampaignMessage, NewMessage
from flows.campaign_spec import CampaignSpec, slugify
from flows.run_logger import describe_counts, run_logger
from flows.tasks.sms import get_sms_client, sms_slot
from messaging.email_wording import ClinicIdentity
from messaging.outbox import Outcome
from messaging.provider_slots import ProviderSlots, SlotTimeoutError
from messaging.reminder_policy import ReminderPolicy
from models import Campaign, CampaignStatus, Channel, MessageStatus, Settings, get_settings, session_scope
from models.types import utcnow
from providers.mobilemessage import MAX_MESSAGES_PER_REQUEST, MobileMessageError, SmsMessage
from providers.sendgrid import MAX_PERSONALIZATIONS, EmailRecipient, SendGridClient, SendGridError, build_mail

SEND_DEPLOYMENT = "campaign-send/campaign-send"
WINNER_DEPLOYMENT = "campaign-winner/campaign-winner"
GIVE_UP_AFTER = timedelta(
    minutes=30
)  # a provider outage this long since the last accepted batch ends the run
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0
PROGRESS_EVERY_SECONDS = 2.0
QUEUE_CHUNK = 2000
CAMPAIGN_GC_THRESHOLD = 50_000  # net allocations between young collections while sending (`_lean_gc`)


class CampaignError(RuntimeError):
    """The campaign cannot go on as asked; the message says what to do."""


def _in_run() -> bool:
    return FlowRunContext.get() is not None


def _clinic(settings: Settings) -> ClinicIdentity:
    return ClinicIdentity.from_settings(settings)


# --- the campaign row ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignState:
    id: int
    slug: str
    status: str
    winner: str | None
    spec: CampaignSpec
    winner_reason: str | None = None


def _state(row: Campaign) -> CampaignState:
    return CampaignState(
        row.id,  # type: ignore[arg-type]
        row.slug,
        row.status,
        row.winner_variant,
        CampaignSpec.model_validate(row.spec),
        row.winner_reason,
    )


def open_campaign(spec: CampaignSpec, status: CampaignStatus) -> CampaignState:
    """The campaign's row, created on first launch. A launch under an existing slug resumes that campaign,
    and must describe the same campaign: changed content or audience needs a new name."""
    with session_scope() as session:
        row = session.exec(select(Campaign).where(Campaign.slug == spec.slug).with_for_update()).first()
        run_id = str(current_run.id) if _in_run() else None
        if row is None:
            row = Campaign(
                slug=spec.slug,
                name=spec.name,
                channel=spec.channel,
                status=status,
                spec=spec.comparable(),
                send_at=spec.send_at,
                flow_run_id=run_id,
            )
        elif row.status == CampaignStatus.PREVIEWED:
            row.spec, row.name, row.channel, row.send_at = (
                spec.comparable(),
                spec.name,
                spec.channel,
                spec.send_at,
            )
            row.status = status
        elif row.spec != spec.comparable():
            raise CampaignError(
                f"campaign {spec.slug!r} was launched with different settings; resuming it must use the same "
                "file. To send something else, give the campaign a new name (or slug)."
            )
        elif status == CampaignStatus.SENDING and row.status == CampaignStatus.SCHEDULED:
            row.status = status
        if status != CampaignStatus.PREVIEWED:
            row.flow_run_id = run_id or row.flow_run_id
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        return _state(row)


def ab_test_refusal(spec: CampaignSpec, settings: Settings) -> str | None:
    """Why this A/B test may not start (its test group is empty), or None; asked by launch and by the run.

    Only before the first send: a campaign already under way resumes whatever its audience has become.
    """
    with session_scope() as session:
        status = session.exec(select(Campaign.status).where(Campaign.slug == spec.slug)).first()
    if status not in (None, CampaignStatus.PREVIEWED, CampaignStatus.SCHEDULED):
        return None
    return empty_test_group(spec, now=utcnow(), timezone=settings.clinic_timezone)


def load_campaign(slug: str) -> CampaignState:
    with session_scope() as session:
        row = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
        if row is None:
            raise CampaignError(f"no campaign {slug!r}")
        return _state(row)


def set_campaign(campaign_id: int, **values: Any) -> None:
    with session_scope() as session:
        row = session.get(Campaign, campaign_id, with_for_update=True)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        session.add(row)


# --- queueing the audience -----------------------------------------------------------------------------


def _variant_for(state: CampaignState, contact_id: int) -> str | None:
    """The test assignment; once a winner is chosen, everyone not yet queued gets the winner."""
    return state.winner or assign_variant(state.spec, contact_id)


def _single_variant(state: CampaignState) -> str | None:
    """The variant every recipient still to be queued gets, if there is one (no A/B test group to split)."""
    return state.winner or (None if state.spec.is_ab_test else state.spec.variants[0].name)


def queue_audience(
    state: CampaignState, settings: Settings, on_queued: Callable[[int], None] | None = None
) -> int:
    """Stream the audience into the outbox (new rows only); returns how many were queued now.

    Runs in a thread beside the senders, which start on the first rows while the rest are still queued.
    """
    spec, clinic, now = state.spec, _clinic(settings), utcnow()
    summaries = {v.name: summary(v) for v in spec.variants}
    queued = 0
    single = _single_variant(state)
    if spec.channel == Channel.EMAIL and single is not None:  # the same row for everyone: let SQL write them
        conditions = audience_conditions(spec.audience, spec.channel, now, settings.clinic_timezone)
        after: int | None = 0
        while after is not None:
            new, after = campaign_outbox.queue_page_in_database(
                state.id,
                spec.slug,
                spec.channel,
                single,
                summaries[single],
                conditions,
                after_id=after,
                limit=QUEUE_CHUNK,
            )
            queued += new
            if on_queued is not None:
                on_queued(new)
        return queued
    for page in stream_recipients(spec, now=now, timezone=settings.clinic_timezone):
        messages: list[NewMessage] = []
        too_long: list[NewMessage] = []
        for recipient in page:
            variant = _variant_for(state, recipient.contact_id)
            if variant is None:
                continue  # A/B remainder: waits for the winner
            if spec.channel == Channel.SMS:
                text = sms_text(spec.variant(variant), clinic, recipient.first_name, recipient.last_name)
                target = too_long if len(text) > SMS_MAX_LENGTH else messages
                target.append(NewMessage(recipient.contact_id, recipient.address, text, variant))
            else:
                messages.append(
                    NewMessage(recipient.contact_id, recipient.address, summaries[variant], variant)
                )
        for start in range(0, len(messages), QUEUE_CHUNK):
            new = campaign_outbox.queue_many(
                state.id, spec.slug, spec.channel, messages[start : start + QUEUE_CHUNK]
            )
            queued += new
            if on_queued is not None:
                on_queued(new)
        if too_long:  # recorded, so the results say who did not get it and why
            detail = f"the SMS is longer than MobileMessage's {SMS_MAX_LENGTH} characters"
            campaign_outbox.queue_many(
                state.id, spec.slug, spec.channel, too_long, status=MessageStatus.FAILED, detail=detail
            )
    return queued


# --- posting batches -----------------------------------------------------------------------------------


class Poster:
    """Turns a claimed batch into one provider request and the request's result into outcomes."""

    def __init__(self, state: CampaignState, settings: Settings) -> None:
        self.state, self.settings, self.spec = state, settings, state.spec
        self.clinic = _clinic(settings)
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
        if _in_run():
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


class _Round:
    """One pass over the pending messages: workers claim batches in id order per variant until none are
    left or the provider fails (then the round stops claiming and the caller backs off)."""

    def __init__(
        self,
        state: CampaignState,
        poster: Poster,
        progress: Progress,
        counts: dict[str, int],
        feeding: asyncio.Future[int] | None,
    ) -> None:
        self.state, self.poster, self.progress, self.counts = state, poster, progress, counts
        self.feeding = feeding  # the audience still being queued: nothing left now may mean "not yet"
        self.variants = [v.name for v in state.spec.variants]
        self.cursors = dict.fromkeys(self.variants, 0)
        self.lock = asyncio.Lock()
        self.outage = asyncio.Event()
        self.last_success: float | None = None
        self.claimed = 0

    def _count(self, status: str, number: int = 1) -> None:
        key = str(status)  # "sent", not MessageStatus.SENT, in logs and results
        self.counts[key] = self.counts.get(key, 0) + number

    async def next_batch(self) -> Batch | None:
        async with self.lock:  # one claim at a time: the cursors move in order
            while True:
                queued_all = self.feeding is None or self.feeding.done()  # before the claim, not after it
                waiting = self.progress.total - self.claimed
                if not queued_all and waiting < self.poster.batch_size * len(self.variants):
                    await asyncio.sleep(0.02)  # while queueing, post full batches only (10,000 SMS a request)
                    continue
                batch = await self._claim_any()
                if batch is not None or queued_all or self.outage.is_set():
                    return batch
                await asyncio.sleep(0.02)  # the queue is behind the senders: wait for more rows

    async def _claim_any(self) -> Batch | None:
        for variant in self.variants:
            while not self.outage.is_set():
                batch, self.cursors[variant] = await asyncio.to_thread(
                    campaign_outbox.claim_batch,
                    self.state.id,
                    self.state.spec.slug,
                    self.state.spec.channel,
                    variant,
                    after_id=self.cursors[variant],
                    limit=self.poster.batch_size,
                )
                if batch is None:
                    break
                self.claimed += len(batch.messages) + len(batch.refused)
                for status in batch.refused.values():
                    self._count(status)
                if batch.refused:
                    await self.progress.advance(len(batch.refused))
                if batch.messages:
                    return batch
        return None

    async def worker(self) -> None:
        while (batch := await self.next_batch()) is not None:
            outcomes = await self.poster.post(batch.key, batch.variant, batch.messages)
            await asyncio.to_thread(campaign_outbox.record_batch, outcomes)
            delayed = 0
            for outcome in outcomes:
                self._count(outcome.status)
                delayed += outcome.status == MessageStatus.PENDING
            if delayed:
                run_logger(__name__).warning("batch of %s delayed: %s", len(outcomes), outcomes[0].detail)
                self.outage.set()  # stop claiming; the round ends and backs off
            else:
                self.last_success = time.monotonic()
                await self.progress.advance(len(outcomes))

    async def run_worker(self) -> None:
        slot = self.poster.slot()
        if slot is None:
            await self.worker()
            return
        try:
            async with slot.hold():  # one provider slot per worker for the whole round
                await self.worker()
        except SlotTimeoutError:
            self.outage.set()

    async def run(self) -> None:
        await asyncio.gather(*(self.run_worker() for _ in range(self.poster.in_flight)))


async def send_pending(
    state: CampaignState, poster: Poster, progress: Progress, feeding: asyncio.Future[int] | None = None
) -> dict[str, int]:
    """Post every pending message of the campaign; returns counts per outcome.

    Workers (as many as the provider allows in flight) each claim a batch just before posting it, so a
    stopped run leaves at most the batches that were being posted in `sending`. A provider outage returns
    a batch to pending; the run backs off and retries, and gives up (run Failed, campaign resumable)
    after `GIVE_UP_AFTER` without an accepted batch.
    """
    counts: dict[str, int] = {}
    last_success = time.monotonic()
    attempt = 0
    while True:
        round_ = _Round(state, poster, progress, counts, feeding)
        await round_.run()
        if feeding is not None and feeding.done():
            feeding.result()  # a failure while queueing ends the run here
        last_success = round_.last_success or last_success
        remaining = await asyncio.to_thread(campaign_outbox.pending_count, state.id)
        if remaining == 0:
            await progress.advance(0, final=True)
            return counts
        if time.monotonic() - last_success > GIVE_UP_AFTER.total_seconds():
            raise CampaignError(
                f"campaign {state.slug}: {remaining} messages still pending after the provider failed for "
                f"{GIVE_UP_AFTER}; nothing was lost — run the campaign again to resume"
            )
        attempt += 1
        delay = random.uniform(0.5, 1.0) * min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** min(attempt, 10))
        run_logger(__name__).warning(
            "%s messages waiting for the provider; retrying in %.0fs", remaining, delay
        )
        await asyncio.sleep(delay)


async def settle_abandoned(state: CampaignState, poster: Poster) -> dict[str, int]:
    """Messages a stopped run left `sending`. SMS: posted again in the same batch with the same
    Idempotency-Key, so MobileMessage answers with the original result and sends nothing twice. Email:
    SendGrid has no such key, so they are recorded as sent-unconfirmed, never posted again."""
    counts: dict[str, int] = {}
    for batch in await asyncio.to_thread(campaign_outbox.abandoned, state.id, state.spec.channel):
        ids = [m.id for m in batch.messages]
        if state.spec.channel == Channel.EMAIL or not batch.key:
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


# --- artifacts and scheduling --------------------------------------------------------------------------


async def _results_artifact(state: CampaignState, headline: str) -> list[dict[str, Any]]:
    table = await asyncio.to_thread(campaign_outbox.results_table, state.id)
    if _in_run():
        await acreate_table_artifact(
            table=table, key=f"campaign-{state.slug}-results"[:100], description=headline
        )
    return table


async def _markdown(key: str, text: str, description: str) -> None:
    if _in_run():
        await acreate_markdown_artifact(markdown=text, key=key[:100], description=description)


async def _schedule(deployment: str, parameters: dict[str, Any], at: datetime, key: str) -> str | None:
    """A flow run of `deployment` at `at` (idempotent on `key`); None when not running under Prefect."""
    if not _in_run():
        return None
    from prefect.deployments import run_deployment

    try:
        run = await run_deployment(
            deployment,
            parameters=parameters,
            scheduled_time=at,
            timeout=0,
            idempotency_key=key,
            as_subflow=False,
        )
    except Exception as exc:  # the deployment is not served: tell a person what to run instead
        run_logger(__name__).warning("could not schedule %s (%s: %s)", deployment, type(exc).__name__, exc)
        return None
    return str(run.id)


def _guard(state: CampaignState) -> ProviderSlots:
    """One sender per campaign at a time, across processes; released by the OS if the holder dies."""
    return ProviderSlots(f"campaign-{state.slug}", 1)


async def _send_phase(state: CampaignState, settings: Settings, headline: str) -> dict[str, Any]:
    with _lean_gc():
        return await _send_guarded(state, settings, headline, Poster(state, settings))


@contextlib.contextmanager
def _lean_gc() -> Iterator[None]:
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


async def _send_guarded(
    state: CampaignState, settings: Settings, headline: str, poster: Poster
) -> dict[str, Any]:
    logger = run_logger(__name__)
    try:
        async with _guard(state).hold(max_wait=5):
            settled = await settle_abandoned(state, poster)
            if settled:
                logger.warning("settled messages a stopped run left sending: %s", describe_counts(settled))
            progress = Progress(state.slug, await asyncio.to_thread(campaign_outbox.pending_count, state.id))
            await progress.start(headline)
            feeding = asyncio.ensure_future(asyncio.to_thread(queue_audience, state, settings, progress.grow))
            try:
                counts = await send_pending(state, poster, progress, feeding)
            finally:
                queued = await feeding  # never leave the queue thread writing behind us
            logger.info("campaign %s: %s newly queued", state.slug, queued)
    except SlotTimeoutError:
        raise CampaignError(
            f"another run is sending campaign {state.slug} right now; let it finish"
        ) from None
    logger.info("campaign %s: %s", state.slug, describe_counts(counts, "nothing sent"))
    return {"queued": queued, "counts": counts, "settled": settled}


def quiet_hours_end(spec: CampaignSpec, settings: Settings, now: datetime) -> datetime | None:
    """For an SMS campaign during quiet hours (SMS_QUIET_HOURS, clinic time), when they end; else None.
    Marketing texts wait for the morning as reminders do: nobody is woken by a promotion."""
    if spec.channel != Channel.SMS:
        return None
    return ReminderPolicy.from_settings(settings).sendable_now(now, settings.clinic_timezone)


async def _hold_for_quiet_hours(
    state: CampaignState, settings: Settings, until: datetime, deployment: str, parameters: dict[str, Any]
) -> dict[str, Any]:
    """Schedule the same run for when quiet hours end; without Prefect, say when to run it again."""
    local = until.astimezone(ZoneInfo(settings.clinic_timezone))
    run = await _schedule(
        deployment, parameters, until, f"{deployment}:{state.slug}:quiet:{until.isoformat()}"
    )
    if run is None:
        raise CampaignError(
            f"SMS quiet hours ({settings.sms_quiet_hours} clinic time) last until {local:%a %d %b %H:%M}: "
            "run it again then, or launch it with `avatar-crm campaign launch` (not --local) to have it wait"
        )
    run_logger(__name__).info(
        "SMS quiet hours: campaign %s continues at %s (flow run %s)", state.slug, local, run
    )
    return {"status": CampaignStatus.SCHEDULED.value, "campaign": state.slug, "flow_run": run, "at": until}


def _check_ready(spec: CampaignSpec, settings: Settings) -> None:
    check_content(spec, _clinic(settings))
    email_live = spec.channel == Channel.EMAIL and settings.email_campaign_provider == "sendgrid"
    if email_live and settings.sendgrid_unsubscribe_group_id is None:
        raise CampaignError(
            "SENDGRID_UNSUBSCRIBE_GROUP_ID must be set: marketing email needs a working unsubscribe link"
        )


# --- the flows -----------------------------------------------------------------------------------------


def _send_run_name() -> str:
    spec = current_run.parameters.get("spec") or {}
    if isinstance(spec, CampaignSpec):
        return f"campaign-{spec.slug}"
    slug = spec.get("slug") or slugify(str(spec.get("name", "")))
    return f"campaign-{slug}" + ("-dry-run" if spec.get("dry_run") else "")


def _winner_run_name() -> str:
    params = current_run.parameters
    return f"campaign-{params.get('campaign')}-winner" + (
        f"-{params['winner']}" if params.get("winner") else ""
    )


async def preview(spec: CampaignSpec, settings: Settings) -> dict[str, Any]:
    """The dry run: audience counts per variant and each variant as a sample patient would see it."""
    state = await asyncio.to_thread(open_campaign, spec, CampaignStatus.PREVIEWED)
    now = utcnow()
    counts = await asyncio.to_thread(audience_groups, spec, now=now, timezone=settings.clinic_timezone)
    total = sum(counts.values())
    excluded = await asyncio.to_thread(excluded_by_filter, spec, now=now, timezone=settings.clinic_timezone)
    landlines = excluded[0][1] - sum(n for _, n in excluded[1:]) - total  # SMS: left out after the query
    if landlines:
        excluded.append(("a landline (cannot get a text)", landlines))
    with_unsubscribe = settings.sendgrid_unsubscribe_group_id is not None
    lines = [
        f"# Dry run: {spec.name} (`{spec.slug}`), {spec.channel}",
        "",
        f"**{total}** recipients with marketing consent, an address and no suppression. Nothing was sent.",
        "",
        "| who | patients |",
        "|---|---|",
        f"| all patients | {excluded[0][1]} |",
        *(f"| left out: {label} | -{count} |" for label, count in excluded[1:]),
        f"| **recipients** | **{total}** |",
        "",
        "| group | recipients |",
        "|---|---|",
        *(f"| {group} | {count} |" for group, count in sorted(counts.items())),
        "",
    ]
    if spec.is_ab_test:
        ab = spec.ab_test
        lines += [
            f"A/B test: {ab.test_fraction:.0%} of the audience split over {len(spec.variants)} variants; "
            f"winner by {ab.metric} after {ab.wait_hours:g} h if each variant has ≥ {ab.min_sample} sent and "
            f"the difference is significant (alpha {ab.alpha}).",
            "",
        ]
        if all(group == REMAINDER for group in counts):
            refusal = empty_test_group(spec, now=utcnow(), timezone=settings.clinic_timezone)
            lines += [f"**Launching it would be refused:** {refusal}", ""]
    for variant in spec.variants:
        lines += [
            f"## Variant {variant.name}",
            "",
            preview_markdown(variant, spec.channel, _clinic(settings), with_unsubscribe=with_unsubscribe),
            "",
        ]
    markdown = "\n".join(lines)
    await _markdown(f"campaign-{state.slug}-preview", markdown, f"Dry run of {spec.name}: {total} recipients")
    return {
        "status": CampaignStatus.PREVIEWED.value,
        "campaign": spec.slug,
        "recipients": total,
        "excluded": dict(excluded[1:]),
        "groups": counts,
        "preview": markdown,
    }


@flow(name="campaign-send", flow_run_name=_send_run_name, log_prints=False)
async def campaign_send(spec: CampaignSpec) -> dict[str, Any]:
    """Send a marketing campaign (or, with `dry_run`, count and preview it). Safe to run again: it resumes."""
    logger = run_logger(__name__)
    settings = get_settings()
    _check_ready(spec, settings)
    if spec.dry_run:
        return await preview(spec, settings)

    now = utcnow()
    if spec.send_at and spec.send_at > now + timedelta(minutes=1) and spec.sendgrid_send_at(now) is None:
        # Not yet, and SendGrid cannot hold it (SMS, or more than 72 h ahead): come back at send_at.
        state = await asyncio.to_thread(open_campaign, spec, CampaignStatus.SCHEDULED)
        run = await _schedule(
            SEND_DEPLOYMENT,
            {"spec": spec.model_dump(mode="json")},
            spec.send_at,
            f"campaign-send:{spec.slug}:{spec.send_at.isoformat()}",
        )
        if run is None:
            raise CampaignError(
                f"send_at is {spec.send_at.isoformat()}: launch it with `avatar-crm campaign launch` "
                "(not --local), which schedules the run for then"
            )
        logger.info("campaign %s scheduled for %s (flow run %s)", spec.slug, spec.send_at.isoformat(), run)
        return {"status": CampaignStatus.SCHEDULED.value, "campaign": spec.slug, "flow_run": run}

    quiet_until = quiet_hours_end(spec, settings, utcnow())
    if quiet_until is not None:
        state = await asyncio.to_thread(open_campaign, spec, CampaignStatus.SCHEDULED)
        if state.status != CampaignStatus.SENT:
            return await _hold_for_quiet_hours(
                state, settings, quiet_until, SEND_DEPLOYMENT, {"spec": spec.model_dump(mode="json")}
            )

    refusal = await asyncio.to_thread(ab_test_refusal, spec, settings)
    if refusal is not None:
        raise CampaignError(f"campaign {spec.slug} not sent (nothing was): {refusal}")
    state = await asyncio.to_thread(open_campaign, spec, CampaignStatus.SENDING)
    if state.status == CampaignStatus.SENT:
        logger.info("campaign %s was already sent; nothing to do", state.slug)
        return {
            "status": state.status,
            "campaign": state.slug,
            "results": await _results_artifact(state, "already sent"),
        }
    phase = "A/B test group" if spec.is_ab_test and state.winner is None else "campaign"
    try:
        outcome = await _send_phase(state, settings, f"{spec.name}: {phase}")
    except Exception:
        await _results_artifact(state, f"{spec.name}: stopped before the end — run it again to resume")
        raise

    if spec.is_ab_test and state.winner is None:
        if state.status not in (CampaignStatus.TESTING, CampaignStatus.AWAITING_CHOICE):
            decide_at = max(utcnow(), spec.send_at or now) + timedelta(hours=spec.ab_test.wait_hours)
            await asyncio.to_thread(
                set_campaign, state.id, status=CampaignStatus.TESTING, test_sent_at=utcnow()
            )
            run = await _schedule(
                WINNER_DEPLOYMENT, {"campaign": state.slug}, decide_at, f"campaign-winner:{state.slug}:auto"
            )
            outcome["winner_run"] = run
            logger.info(
                "test group sent; the winner is picked at %s (%s)",
                decide_at.isoformat(),
                f"flow run {run}" if run else f"run `avatar-crm campaign evaluate {state.slug}` then",
            )
        status = CampaignStatus.TESTING.value if state.status == CampaignStatus.SENDING else state.status
    else:
        await asyncio.to_thread(set_campaign, state.id, status=CampaignStatus.SENT, finished_at=utcnow())
        status = CampaignStatus.SENT.value
    table = await _results_artifact(state, f"{spec.name}: {phase} sent")
    return {"status": status, "campaign": state.slug, **outcome, "results": table}


def variant_results(state: CampaignState) -> list[VariantResult]:
    """Per test variant: how many went out and how many opened or clicked (as the campaign's metric says)."""
    counts = campaign_outbox.counts_by_variant(state.id)
    field = "clicked" if state.spec.ab_test.metric == "clicks" else "opened"
    results = []
    for variant in state.spec.variants:
        c = counts.get(variant.name, {})
        sent = sum(c.get(s, 0) for s in ACCEPTED)
        results.append(VariantResult(variant.name, sent, min(sent, c.get(field, 0))))
    return results


def _choice_help(slug: str, variants: list[str]) -> str:
    return (
        f"Choose by hand: `avatar-crm campaign choose {slug} {variants[0]}` (or a run of the campaign-winner "
        f"deployment with campaign={slug} and winner={variants[0]}); variants: {', '.join(variants)}."
    )


def check_winner_request(state: CampaignState, winner: str | None) -> None:
    """Raise CampaignError if a winner run (a person's `winner`, or the decision when None) cannot go now.

    The flow asks it, and so does the CLI before it starts a run that would only fail.
    """
    names = [v.name for v in state.spec.variants]
    if state.status == CampaignStatus.SENT:
        raise CampaignError(f"campaign {state.slug} is already sent (winner {state.winner or 'none'})")
    if not state.spec.is_ab_test:
        raise CampaignError(f"campaign {state.slug} has one variant; there is no winner to pick")
    if state.status not in (CampaignStatus.TESTING, CampaignStatus.AWAITING_CHOICE, CampaignStatus.SENDING):
        raise CampaignError(f"campaign {state.slug} is {state.status}; its test group has not been sent yet")
    if state.status == CampaignStatus.SENDING and state.winner is None:  # counts so far would decide early
        raise CampaignError(f"campaign {state.slug}'s test group is still being sent; choose once it is sent")
    if winner is not None and winner not in names:
        raise CampaignError(f"campaign {state.slug} has no variant {winner!r}; variants: {', '.join(names)}")
    if winner is not None and state.winner is not None and state.winner != winner:
        raise CampaignError(f"campaign {state.slug} is already sending variant {state.winner} to the rest")


@flow(name="campaign-winner", flow_run_name=_winner_run_name)
async def campaign_winner(campaign: str, winner: str | None = None) -> dict[str, Any]:
    """Pick the A/B winner (or take a person's `winner`) and send it to the rest of the audience."""
    logger = run_logger(__name__)
    settings = get_settings()
    state = await asyncio.to_thread(load_campaign, campaign)
    spec = state.spec
    names = [v.name for v in spec.variants]
    if state.status == CampaignStatus.SENT:
        return {"status": state.status, "campaign": state.slug, "winner": state.winner}
    check_winner_request(state, winner)

    chosen, reason = state.winner, state.winner_reason
    if winner is not None:
        reason = reason if chosen == winner else "chosen by a person"
        chosen = winner
    elif chosen is None:
        results = await asyncio.to_thread(variant_results, state)
        decision: Decision = (
            Decision(
                None,
                "texts carry no open or click tracking, so an SMS test has no winner to measure; a "
                "person chooses",
                None,
            )
            if spec.channel == Channel.SMS
            else choose_winner(
                results,
                min_sample=spec.ab_test.min_sample,
                alpha=spec.ab_test.alpha,
                metric="click rate" if spec.ab_test.metric == "clicks" else "open rate",
            )
        )
        logger.info("A/B decision for %s: %s", campaign, decision.reason)
        if decision.winner is None:
            await asyncio.to_thread(
                set_campaign, state.id, status=CampaignStatus.AWAITING_CHOICE, winner_reason=decision.reason
            )
            table = "\n".join(f"| {r.variant} | {r.sent} | {r.converted} |" for r in results)
            await _markdown(
                f"campaign-{state.slug}-decision",
                f"# {spec.name}: no automatic winner\n\n{decision.reason}\n\n| variant | sent | "
                f"{spec.ab_test.metric} |\n|---|---|---|\n{table}\n\n{_choice_help(state.slug, names)}",
                f"{spec.name}: a person must choose the winner",
            )
            logger.warning(
                "no winner for %s: %s %s", campaign, decision.reason, _choice_help(state.slug, names)
            )
            return {
                "status": CampaignStatus.AWAITING_CHOICE.value,
                "campaign": state.slug,
                "reason": decision.reason,
            }
        chosen, reason = decision.winner, decision.reason

    quiet_until = quiet_hours_end(spec, settings, utcnow())
    if quiet_until is not None:  # the person's choice (or the decision) stands; the rest get it after
        if state.winner is None:
            await asyncio.to_thread(set_campaign, state.id, winner_variant=chosen, winner_reason=reason)
        return await _hold_for_quiet_hours(
            state, settings, quiet_until, WINNER_DEPLOYMENT, {"campaign": state.slug, "winner": chosen}
        )
    if state.winner is None:
        await asyncio.to_thread(
            set_campaign, state.id, winner_variant=chosen, winner_reason=reason, status=CampaignStatus.SENDING
        )
    state = await asyncio.to_thread(load_campaign, campaign)
    outcome = await _send_phase(state, settings, f"{spec.name}: variant {chosen} to the rest")
    await asyncio.to_thread(set_campaign, state.id, status=CampaignStatus.SENT, finished_at=utcnow())
    table = await _results_artifact(state, f"{spec.name}: winner {chosen} sent to the rest ({reason})")
    return {
        "status": CampaignStatus.SENT.value,
        "campaign": state.slug,
        "winner": chosen,
        "reason": reason,
        **outcome,
        "results": table,
    }
