"""A campaign's own rules: its row (opened once per slug, resumed only as the same campaign), who is queued
with which variant, when an SMS campaign may go, and whether a winner may be sent. The `campaign-send` and
`campaign-winner` flows (`flows/campaign_send.py`) orchestrate these with the batch tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect.context import FlowRunContext
from prefect.runtime import flow_run as current_run
from sqlmodel import select

from campaigns import bulk_outbox as campaign_outbox
from campaigns.ab_stats import Decision, VariantResult, choose_winner
from campaigns.audience import assign_variant, audience_conditions, empty_test_group, stream_recipients
from campaigns.bulk_outbox import ACCEPTED, NewMessage
from campaigns.content import SMS_MAX_LENGTH, ContentError, check_content, sms_text, summary
from campaigns.spec import CampaignSpec
from messaging.email_wording import ClinicIdentity
from messaging.reminder_policy import ReminderPolicy
from models import Campaign, CampaignStatus, Channel, MessageStatus, Settings, session_scope
from models.types import utcnow

QUEUE_CHUNK = 2000


class CampaignError(RuntimeError):
    """The campaign cannot go on as asked; the message says what to do."""


def in_flow_run() -> bool:
    return FlowRunContext.get() is not None


def clinic_identity(settings: Settings) -> ClinicIdentity:
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
        run_id = str(current_run.id) if in_flow_run() else None
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


def launch_refusal(spec: CampaignSpec, settings: Settings) -> str | None:
    """Why this campaign may not be launched as it stands, or None: every variant renders (and an SMS fits),
    `send_at` is not in the past, and an A/B test has a test group. Asked before the run is created, by the
    CLI and the console alike, so a bad launch fails before anything is queued."""
    try:
        check_content(spec, clinic_identity(settings))
    except ContentError as exc:
        return str(exc)
    if spec.dry_run:
        return None
    if spec.send_at and spec.send_at < utcnow() - timedelta(minutes=5):
        return f"send_at {spec.send_at.isoformat()} is in the past; remove it to send now"
    return ab_test_refusal(spec, settings)


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


def single_variant(state: CampaignState) -> str | None:
    """The variant every recipient still to be queued gets, if there is one (no A/B test group to split)."""
    return state.winner or (None if state.spec.is_ab_test else state.spec.variants[0].name)


def queue_audience(
    state: CampaignState, settings: Settings, on_queued: Callable[[int], None] | None = None
) -> int:
    """Stream the audience into the outbox (new rows only); returns how many were queued now.

    Runs in a thread beside the senders, which start on the first rows while the rest are still queued.
    """
    spec, clinic, now = state.spec, clinic_identity(settings), utcnow()
    summaries = {v.name: summary(v) for v in spec.variants}
    queued = 0
    single = single_variant(state)
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


def quiet_hours_end(spec: CampaignSpec, settings: Settings, now: datetime) -> datetime | None:
    """For an SMS campaign during quiet hours (SMS_QUIET_HOURS, clinic time), when they end; else None.
    Marketing texts wait for the morning as reminders do: nobody is woken by a promotion."""
    if spec.channel != Channel.SMS:
        return None
    return ReminderPolicy.from_settings(settings).sendable_now(now, settings.clinic_timezone)


def check_ready(spec: CampaignSpec, settings: Settings) -> None:
    """Refuse content that cannot go (checked by launch too) and live email without an unsubscribe group."""
    check_content(spec, clinic_identity(settings))
    email_live = spec.channel == Channel.EMAIL and settings.email_campaign_provider == "sendgrid"
    if email_live and settings.sendgrid_unsubscribe_group_id is None:
        raise CampaignError(
            "SENDGRID_UNSUBSCRIBE_GROUP_ID must be set: marketing email needs a working unsubscribe link"
        )


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


def choice_help(slug: str, variants: list[str]) -> str:
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


def decide_winner(spec: CampaignSpec, results: list[VariantResult]) -> Decision:
    """The A/B decision: a winner only when the difference is significant on the spec's metric; an SMS test
    has nothing to measure (texts carry no tracking), so a person chooses."""
    if spec.channel == Channel.SMS:
        return Decision(
            None,
            "texts carry no open or click tracking, so an SMS test has no winner to measure; a "
            "person chooses",
            None,
        )
    return choose_winner(
        results,
        min_sample=spec.ab_test.min_sample,
        alpha=spec.ab_test.alpha,
        metric="click rate" if spec.ab_test.metric == "clicks" else "open rate",
    )
