"""`campaign-send` and `campaign-winner`: marketing email (SendGrid) and SMS (MobileMessage) at scale.

campaign-send(spec), as its task runs show it: `settle-abandoned` (what a stopped run left `sending`),
`queue-audience` (the audience streamed into the outbox in bulk, one row per recipient keyed
`campaign:{slug}:{contact_id}`), and `send-batches-<n>` beside it (`flows/tasks/campaign_batches.py`: groups
of provider-sized batches, 1,000 emails or 10,000 SMS a request, each claimed and re-checked against
suppressions and consent just before posting, as many groups at a time as the provider allows in flight,
retried by Prefect while the provider is down); then the results artifact. A crashed or repeated run resumes
from the outbox: what was sent is not sent again. With several variants only the A/B test group is sent; a
`campaign-winner` run is scheduled for after the wait.

campaign-winner(campaign, winner=None): compares the variants (`campaigns/ab_stats.py`: minimum sample and a
two-proportion test); names a winner only when the difference is significant, otherwise marks the campaign
AWAITING_CHOICE and says how a person chooses. With a winner, the rest of the audience gets it.
"""

# No `from __future__ import annotations`: Prefect builds the parameter model (the Prefect UI's run form)
# from these annotations, and the runner hands flows to their process pickled (see flows/reminder_sweep.py).
import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run as current_run

from campaigns import bulk_outbox as campaign_outbox
from campaigns.ab_stats import Decision, VariantResult
from campaigns.audience import (
    REMAINDER,
    audience_account,
    empty_test_group,
)
from campaigns.campaign import (
    CampaignError,
    CampaignState,
    ab_test_refusal,
    check_ready,
    check_winner_request,
    choice_help,
    clinic_identity,
    decide_winner,
    in_flow_run,
    load_campaign,
    open_campaign,
    queue_audience,
    quiet_hours_end,
    set_campaign,
    variant_results,
)
from campaigns.content import (
    preview_markdown,
)
from campaigns.spec import CampaignSpec, slugify
from flows.tasks import campaign_batches as batches
from messaging.provider_slots import ProviderSlots, SlotTimeoutError
from models import CampaignStatus, Settings, get_settings
from models.run_logger import describe_counts, run_logger
from models.types import utcnow

SEND_DEPLOYMENT = "campaign-send/campaign-send"
WINNER_DEPLOYMENT = "campaign-winner/campaign-winner"


# --- the send's tasks ----------------------------------------------------------------------------------


@task(name="queue-audience", task_run_name="queue-audience", cache_policy=NO_CACHE)
async def queue_audience_task(state: CampaignState, settings: Settings, progress: batches.Progress) -> int:
    """The audience into the outbox, in a thread beside the batch groups, which start on the first rows."""
    return await asyncio.to_thread(queue_audience, state, settings, progress.grow)


async def send_phase(state: CampaignState, settings: Settings, headline: str) -> dict[str, Any]:
    """One send, as the Prefect UI shows it: settle what a stopped run left, queue the audience, and post
    batch groups (task runs with their retries) until nothing is pending; one run at a time per campaign."""
    logger = run_logger(__name__)
    poster = batches.Poster(state.spec, settings)
    try:
        async with _guard(state).hold(max_wait=5):
            with batches.lean_gc():
                settled = await batches.step(batches.settle_abandoned)(state.id, state.spec, poster)
                if settled:
                    logger.warning(
                        "settled messages a stopped run left sending: %s", describe_counts(settled)
                    )
                pending = await asyncio.to_thread(campaign_outbox.pending_count, state.id)
                progress = batches.Progress(state.slug, pending)
                await progress.start(headline)
                feeding = asyncio.ensure_future(batches.step(queue_audience_task)(state, settings, progress))
                sender = batches.Sender(state.id, state.spec, poster, progress, feeding)
                try:
                    await _send_until_done(state, sender)
                finally:
                    queued = await feeding  # never leave the queue thread writing behind us
            logger.info("campaign %s: %s newly queued", state.slug, queued)
    except SlotTimeoutError:
        raise CampaignError(
            f"another run is sending campaign {state.slug} right now; let it finish"
        ) from None
    counts = sender.counts
    logger.info("campaign %s: %s", state.slug, describe_counts(counts, "nothing sent"))
    return {"queued": queued, "counts": counts, "settled": settled}


async def _send_until_done(state: CampaignState, sender: batches.Sender) -> None:
    """Batch groups until the outbox holds nothing pending; a provider that stays down ends the run Failed
    with the campaign resumable."""
    while True:
        posted = sender.posted
        try:
            await batches.send_lanes(sender)
        except batches.ProviderDelayed as exc:
            remaining = await asyncio.to_thread(campaign_outbox.pending_count, state.id)
            raise CampaignError(
                f"campaign {state.slug}: {remaining} messages still pending, the provider could not take "
                f"them ({exc}); nothing was lost — run the campaign again to resume"
            ) from None
        if sender.feeding is not None and sender.feeding.done():
            sender.feeding.result()  # a failure while queueing ends the run here
        remaining = await asyncio.to_thread(campaign_outbox.pending_count, state.id)
        if remaining == 0:
            await sender.progress.advance(0, final=True)
            return
        if sender.posted == posted:  # a pass that posted nothing would not do better a second time
            raise CampaignError(f"campaign {state.slug}: {remaining} messages pending that no claim takes")
        sender.rewind()


# --- artifacts and scheduling --------------------------------------------------------------------------


async def _results_artifact(state: CampaignState, headline: str) -> list[dict[str, Any]]:
    table = await asyncio.to_thread(campaign_outbox.results_table, state.id)
    if in_flow_run():
        await acreate_table_artifact(
            table=table, key=f"campaign-{state.slug}-results"[:100], description=headline
        )
    return table


async def _markdown(key: str, text: str, description: str) -> None:
    if in_flow_run():
        await acreate_markdown_artifact(markdown=text, key=key[:100], description=description)


def send_run_arguments(spec: CampaignSpec) -> tuple[dict[str, Any], datetime | None]:
    """The parameters and start time of a `campaign-send` run for this spec (a dry run starts now)."""
    return {"spec": spec.model_dump(mode="json")}, None if spec.dry_run else spec.send_at


async def create_send_run(spec: CampaignSpec) -> str:
    """Launch: a run of the `campaign-send` deployment (at `send_at`, if set); its id. Check the spec with
    `campaigns.campaign.launch_refusal` first. Raises whatever Prefect raises when the deployment is not
    served."""
    from prefect.deployments import run_deployment

    parameters, when = send_run_arguments(spec)
    run = await run_deployment(SEND_DEPLOYMENT, parameters=parameters, scheduled_time=when, timeout=0)
    return str(run.id)


async def _schedule(deployment: str, parameters: dict[str, Any], at: datetime, key: str) -> str | None:
    """A flow run of `deployment` at `at` (idempotent on `key`); None when not running under Prefect."""
    if not in_flow_run():
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
    account = await asyncio.to_thread(audience_account, spec, now=now, timezone=settings.clinic_timezone)
    counts, total, excluded = account.groups, account.total, account.excluded
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
            preview_markdown(
                variant, spec.channel, clinic_identity(settings), with_unsubscribe=with_unsubscribe
            ),
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


async def _come_back_at_send_at(spec: CampaignSpec) -> dict[str, Any]:
    """Not yet: the campaign is recorded as scheduled and the same run is scheduled for `send_at`."""
    assert spec.send_at is not None
    await asyncio.to_thread(open_campaign, spec, CampaignStatus.SCHEDULED)
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
    run_logger(__name__).info(
        "campaign %s scheduled for %s (flow run %s)", spec.slug, spec.send_at.isoformat(), run
    )
    return {"status": CampaignStatus.SCHEDULED.value, "campaign": spec.slug, "flow_run": run}


async def _schedule_winner(state: CampaignState, sent_at: datetime) -> str | None:
    """The test group is out: the campaign is TESTING and a campaign-winner run waits `wait_hours`."""
    decide_at = sent_at + timedelta(hours=state.spec.ab_test.wait_hours)
    await asyncio.to_thread(set_campaign, state.id, status=CampaignStatus.TESTING, test_sent_at=utcnow())
    run = await _schedule(
        WINNER_DEPLOYMENT, {"campaign": state.slug}, decide_at, f"campaign-winner:{state.slug}:auto"
    )
    run_logger(__name__).info(
        "test group sent; the winner is picked at %s (%s)",
        decide_at.isoformat(),
        f"flow run {run}" if run else f"run `avatar-crm campaign evaluate {state.slug}` then",
    )
    return run


async def _await_choice(
    state: CampaignState, decision: Decision, results: list[VariantResult]
) -> dict[str, Any]:
    """No significant winner: the campaign waits for a person; the decision artifact says how to choose."""
    spec, names = state.spec, [v.name for v in state.spec.variants]
    await asyncio.to_thread(
        set_campaign, state.id, status=CampaignStatus.AWAITING_CHOICE, winner_reason=decision.reason
    )
    table = "\n".join(f"| {r.variant} | {r.sent} | {r.converted} |" for r in results)
    await _markdown(
        f"campaign-{state.slug}-decision",
        f"# {spec.name}: no automatic winner\n\n{decision.reason}\n\n| variant | sent | "
        f"{spec.ab_test.metric} |\n|---|---|---|\n{table}\n\n{choice_help(state.slug, names)}",
        f"{spec.name}: a person must choose the winner",
    )
    run_logger(__name__).warning(
        "no winner for %s: %s %s", state.slug, decision.reason, choice_help(state.slug, names)
    )
    return {"status": CampaignStatus.AWAITING_CHOICE.value, "campaign": state.slug, "reason": decision.reason}


@flow(name="campaign-send", flow_run_name=_send_run_name, log_prints=False)
async def campaign_send(spec: CampaignSpec) -> dict[str, Any]:
    """Send a marketing campaign (or, with `dry_run`, count and preview it). Safe to run again: it resumes."""
    logger = run_logger(__name__)
    settings = get_settings()
    check_ready(spec, settings)
    if spec.dry_run:
        return await preview(spec, settings)

    now = utcnow()
    if spec.send_at and spec.send_at > now + timedelta(minutes=1) and spec.sendgrid_send_at(now) is None:
        return await _come_back_at_send_at(spec)  # SendGrid cannot hold it (SMS, or more than 72 h ahead)

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
        outcome = await send_phase(state, settings, f"{spec.name}: {phase}")
    except Exception:
        await _results_artifact(state, f"{spec.name}: stopped before the end — run it again to resume")
        raise

    if spec.is_ab_test and state.winner is None:
        if state.status not in (CampaignStatus.TESTING, CampaignStatus.AWAITING_CHOICE):
            outcome["winner_run"] = await _schedule_winner(state, max(utcnow(), spec.send_at or now))
        status = CampaignStatus.TESTING.value if state.status == CampaignStatus.SENDING else state.status
    else:
        await asyncio.to_thread(set_campaign, state.id, status=CampaignStatus.SENT, finished_at=utcnow())
        status = CampaignStatus.SENT.value
    table = await _results_artifact(state, f"{spec.name}: {phase} sent")
    return {"status": status, "campaign": state.slug, **outcome, "results": table}


@flow(name="campaign-winner", flow_run_name=_winner_run_name)
async def campaign_winner(campaign: str, winner: str | None = None) -> dict[str, Any]:
    """Pick the A/B winner (or take a person's `winner`) and send it to the rest of the audience."""
    logger = run_logger(__name__)
    settings = get_settings()
    state = await asyncio.to_thread(load_campaign, campaign)
    spec = state.spec
    if state.status == CampaignStatus.SENT:
        return {"status": state.status, "campaign": state.slug, "winner": state.winner}
    check_winner_request(state, winner)

    chosen, reason = state.winner, state.winner_reason
    if winner is not None:
        reason = reason if chosen == winner else "chosen by a person"
        chosen = winner
    elif chosen is None:
        results = await asyncio.to_thread(variant_results, state)
        decision = decide_winner(spec, results)
        logger.info("A/B decision for %s: %s", campaign, decision.reason)
        if decision.winner is None:
            return await _await_choice(state, decision, results)
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
    outcome = await send_phase(state, settings, f"{spec.name}: variant {chosen} to the rest")
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
