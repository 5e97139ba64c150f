"""The marketer's campaign pages: the list, a form built for the job (channel first, then only that channel's
fields), a preview with the live audience count before launch, the launch, and a campaign's progress.

One way a campaign is validated and started, whoever starts it: the form is read into the same `CampaignSpec`
the CLI and the Prefect run form use, checked by the same `launch_refusal`, launched by `create_send_run`.
Counts only: no page here shows a patient (the preview's sample is "Alex Sample").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Request, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from pydantic import ValidationError
from sqlalchemy import func, select

from campaigns.audience import AudienceAccount, audience_account, min_sample_warning
from campaigns.bulk_outbox import results_table
from campaigns.campaign import clinic_identity, launch_refusal
from campaigns.content import ContentError, preview_text
from campaigns.spec import VARIANT_NAMES, CampaignSpec
from console import security
from console.pages import page
from flows.campaign_send import create_send_run
from models import Campaign, MessageStatus, OutboundMessage, Settings, session_scope
from models.access_audit import record
from models.types import utcnow

CHANNELS = ("sms", "email")
FORM_VARIANTS = 2  # A, and B for an A/B test (the spec allows up to 6; the YAML file gives the rest)
AUDIENCE_LISTS = ("services", "locations", "tags")
AUDIENCE_DATES = ("last_visit_from", "last_visit_to")
AB_FIELDS = ("test_fraction", "metric", "wait_hours", "min_sample")
Query = Annotated[str | None, QueryParameter(required=False)]


@dataclass
class CampaignForm:
    """What the marketer typed (kept as typed, to show again), and what is wrong with it, per field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # not about one field
    spec: CampaignSpec | None = None

    @property
    def channel(self) -> str:
        channel = self.values.get("channel", "")
        return channel if channel in CHANNELS else "sms"


def _items(text: str) -> list[str]:
    """A comma- or line-separated list as typed."""
    return [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]


def _raw_spec(form: CampaignForm, timezone: str) -> dict[str, Any]:
    """The form as CampaignSpec input. Only the chosen channel's fields are read, so an email subject left
    in the browser does not make an SMS campaign invalid."""
    values, channel = form.values, form.channel
    raw: dict[str, Any] = {"name": values.get("name", "").strip(), "channel": values.get("channel", "")}
    audience: dict[str, Any] = {name: _items(values.get(name, "")) for name in AUDIENCE_LISTS}
    audience.update({name: values[name] for name in AUDIENCE_DATES if values.get(name)})
    raw["audience"] = audience
    variants = []
    for index in range(FORM_VARIANTS):
        wanted = ("body",) if channel == "sms" else ("subject", "body", "template_id")
        variant = {name: values[f"v{index}_{name}"] for name in wanted if values.get(f"v{index}_{name}", "")}
        if variant or index == 0:
            variants.append(variant)
    raw["variants"] = variants
    if len(variants) > 1:
        ab_fields = AB_FIELDS if channel == "email" else tuple(f for f in AB_FIELDS if f != "metric")
        raw["ab_test"] = {name: values[f"ab_{name}"] for name in ab_fields if values.get(f"ab_{name}")}
    if channel == "email":
        raw["categories"] = _items(values.get("categories", ""))
    if values.get("send_at"):
        try:
            local = datetime.fromisoformat(values["send_at"])
        except ValueError:
            form.errors["send_at"] = "not a date and time"
        else:  # the form's time is the clinic's unless it says otherwise
            raw["send_at"] = (local if local.tzinfo else local.replace(tzinfo=ZoneInfo(timezone))).isoformat()
    return raw


def _field_of(loc: tuple[Any, ...]) -> str | None:
    """The form field a validation error belongs next to (None: about the campaign as a whole)."""
    match loc:
        case ("name" | "slug", *_):
            return "name"
        case ("channel", *_) | ("send_at", *_) | ("categories", *_):
            return str(loc[0])
        case ("audience", str(name), *_):
            return name
        case ("audience",):
            return "last_visit_to"
        case ("variants", int(index), str(name), *_):
            return f"v{index}_{name}"
        case ("ab_test", str(name), *_):
            return f"ab_{name}"
    return None


def read_form(values: dict[str, str], settings: Settings) -> CampaignForm:
    """Validate the form into a CampaignSpec, then as a launch would (templates render, SMS length, A/B)."""
    form = CampaignForm(values={k: v for k, v in values.items() if k != "_csrf_token"})
    raw = _raw_spec(form, settings.clinic_timezone)
    try:
        spec = CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            where = _field_of(tuple(error["loc"]))
            if where is None:
                form.problems.append(message)
            else:
                form.errors.setdefault(where, message)
        return form
    if form.errors:
        return form
    form.spec = spec
    return form


@dataclass(frozen=True)
class Preview:
    account: AudienceAccount
    samples: list[tuple[str, str | None, str]]  # variant, subject, text
    warning: str | None
    refusal: str | None


def _preview(spec: CampaignSpec, settings: Settings) -> Preview:
    """The live count, who each filter left out, and each variant for the sample patient."""
    account = audience_account(spec, now=utcnow(), timezone=settings.clinic_timezone)
    refusal = launch_refusal(spec, settings)
    samples = []
    clinic = clinic_identity(settings)
    unsubscribe = settings.sendgrid_unsubscribe_group_id is not None
    for variant in spec.variants:
        try:
            subject, text = preview_text(variant, spec.channel, clinic, with_unsubscribe=unsubscribe)
        except ContentError as exc:  # also in `refusal`; shown where the sample would be
            subject, text = None, str(exc)
        samples.append((variant.name, subject, text))
    return Preview(account, samples, min_sample_warning(spec, account.groups), refusal)


def _form_values(request_form: Any) -> dict[str, str]:
    return {key: str(value) for key, value in request_form.items()}


def _form_context(form: CampaignForm) -> dict[str, Any]:
    return {
        "form": form,
        "channel": form.channel,
        "channels": CHANNELS,
        "variant_names": VARIANT_NAMES[:FORM_VARIANTS],
    }


@get("/campaigns", sync_to_thread=True)
def campaign_list(request: Request) -> Template:
    """Every campaign, newest first, with how many messages are queued, accepted and still pending."""
    om = OutboundMessage.__table__  # type: ignore[attr-defined]
    with session_scope() as session:
        campaigns = session.execute(select(Campaign).order_by(Campaign.created_at.desc())).scalars().all()  # type: ignore[attr-defined]
        progress = {
            campaign_id: (total, pending)
            for campaign_id, total, pending in session.execute(
                select(
                    om.c.campaign_id,
                    func.count(),
                    func.count().filter(om.c.status.in_((MessageStatus.PENDING, MessageStatus.SENDING))),
                )
                .where(om.c.campaign_id.is_not(None))
                .group_by(om.c.campaign_id)
            ).all()
        }
        rows = [
            {
                "slug": c.slug,
                "name": c.name,
                "channel": c.channel,
                "status": c.status,
                "created_at": c.created_at,
                "queued": progress.get(c.id, (0, 0))[0],
                "pending": progress.get(c.id, (0, 0))[1],
            }
            for c in campaigns
        ]
    zone = request.app.state.console_settings.clinic_timezone
    return page(request, "campaigns.html", campaigns=rows, zone=zone)


@get("/campaigns/new")
async def campaign_new(request: Request, channel: Query = None) -> Template:
    """The form. With `?channel=` (a plain link, or HTMX when the channel changes) only that channel's
    fields; an HTMX request gets just the fields fragment."""
    form = CampaignForm(values={"channel": channel if channel in CHANNELS else "sms"})
    if request.headers.get("hx-request"):
        return page(request, "_campaign_fields.html", **_form_context(form))
    return page(request, "campaign_new.html", **_form_context(form))


@post("/campaigns/preview")
async def campaign_preview(request: Request) -> Template:
    """The fields again (with errors next to them) and, when the campaign is valid, the live count, the
    filters' exclusions and the sample preview; a full page without HTMX."""
    settings: Settings = request.app.state.console_settings
    form = read_form(_form_values(await request.form()), settings)
    preview = None
    if form.spec is not None:
        preview = await asyncio.to_thread(_preview, form.spec, settings)
    name = "_campaign_fields.html" if request.headers.get("hx-request") else "campaign_new.html"
    return page(request, name, status_code=200, preview=preview, **_form_context(form))


@post("/campaigns/launch", status_code=303)
async def campaign_launch(request: Request) -> Redirect | Template:
    """Validate again (the form may have changed since the preview), create the `campaign-send` run, and
    record who launched it."""
    settings: Settings = request.app.state.console_settings
    actor = security.current_actor(request)
    form = read_form(_form_values(await request.form()), settings)
    if form.spec is not None:
        refusal = await asyncio.to_thread(launch_refusal, form.spec, settings)
        if refusal is not None:
            form.problems.append(f"not launched: {refusal}")
    if form.spec is None or form.problems:
        return page(request, "campaign_new.html", status_code=400, **_form_context(form))
    spec = form.spec
    try:
        run_id = await create_send_run(spec)
    except Exception as exc:  # the deployment is not served: say so, launch nothing
        form.problems.append(
            f"could not start the campaign-send run ({type(exc).__name__}); is the flow runner running?"
        )
        return page(request, "campaign_new.html", status_code=503, **_form_context(form))

    def audit() -> None:
        with session_scope() as session:
            record(
                session,
                actor,
                action="campaign.launched",
                subject=f"campaign:{spec.slug}",
                flow_run_id=run_id,
                channel=spec.channel,
                variants=len(spec.variants),
                send_at=spec.send_at.isoformat() if spec.send_at else None,
            )

    await asyncio.to_thread(audit)
    return Redirect(f"/console/campaigns/{spec.slug}?run={run_id}", status_code=303)


@get("/campaigns/{slug:str}", sync_to_thread=True)
def campaign_detail(request: Request, slug: FromPath[str], run: Query = None) -> Template:
    """Status, progress and per-variant results (counts only). Right after a launch the run may not have
    opened the campaign yet: the page says so."""
    with session_scope() as session:
        row = session.execute(select(Campaign).where(Campaign.slug == slug)).scalars().first()  # type: ignore[arg-type]
        campaign = None if row is None else {k: getattr(row, k) for k in Campaign.model_fields}
    if campaign is None and run is None:
        raise HTTPException(status_code=404, detail=f"no campaign {slug!r}")
    results = results_table(campaign["id"]) if campaign else []
    zone = request.app.state.console_settings.clinic_timezone
    return page(request, "campaign.html", campaign=campaign, slug=slug, run=run, results=results, zone=zone)
