"""What a marketer fills in to launch a campaign: one typed model, used by the Prefect UI's run form, the
CLI's YAML file and `prefect deployment run` alike, so every way of launching is checked the same way.

Validation refuses, with a message that says what to change, anything SendGrid or MobileMessage would refuse
later (more than 6 variants, a template id that is not a dynamic template, a subject on an SMS, …): a bad
launch should fail before the first recipient is queued, not halfway through the audience.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_VARIANTS = 6
SENDGRID_MAX_SCHEDULE_AHEAD = timedelta(hours=72)
MAX_USER_CATEGORIES = 8  # SendGrid allows 10 categories; two are ours ("campaign", "campaign:<slug>")
TEMPLATE_ID = re.compile(r"^d-[0-9a-f]{32}$")
VARIANT_NAMES = "ABCDEF"
TEMPLATE_FIELDS = ("first_name", "last_name", "clinic_name")  # what a variant's subject and body may use
# Sandboxed, and an unknown name is an error: a typo fails the launch, not the send.
TEMPLATES = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def slugify(name: str) -> str:
    """`"Spring MRI check-up!"` → `"spring-mri-check-up"`: the campaign's key in outbox and SendGrid."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:80].rstrip("-")


class Audience(BaseModel):
    """Who is eligible. Every filter left empty means "no restriction"; filters combine with AND.

    Consent and suppression are not filters: they always apply (only contacts who opted in to marketing on
    the campaign's channel, and are not on the suppression list, ever receive a campaign).
    """

    model_config = ConfigDict(extra="forbid")

    services: list[str] = Field(
        default_factory=list,
        description="Only patients with a booking for one of these services (Wix service names, any case).",
        examples=[["MRI - Knee", "CT Scan"]],
    )
    locations: list[str] = Field(
        default_factory=list,
        description="Only patients with a booking at one of these locations (with services given, "
        "the same booking must match both).",
        examples=[["Bondi Junction"]],
    )
    last_visit_from: date | None = Field(
        default=None,
        description="Only patients whose latest past appointment was on or after this date (clinic time).",
        examples=["2025-01-01"],
    )
    last_visit_to: date | None = Field(
        default=None,
        description="Only patients whose latest past appointment was on or before this date (clinic time).",
        examples=["2025-06-30"],
    )
    tags: list[str] = Field(
        default_factory=list,
        description="Only contacts carrying at least one of these tags.",
        examples=[["newsletter"]],
    )

    @model_validator(mode="after")
    def _range_in_order(self) -> Audience:
        if self.last_visit_from and self.last_visit_to and self.last_visit_from > self.last_visit_to:
            raise ValueError("audience.last_visit_from must not be after audience.last_visit_to")
        return self


class Variant(BaseModel):
    """One version of the message. Email: a SendGrid dynamic template (`template_id` + `template_data`) or
    `subject` + `body`; SMS: `body`. Texts are Jinja2 templates with `first_name`, `last_name` and
    `clinic_name` available."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="",
        max_length=8,
        description="A, B, C… (filled in by position when left empty).",
        examples=["A"],
    )
    template_id: str | None = Field(
        default=None,
        description="SendGrid dynamic template id (d- followed by 32 hex digits). Email only.",
        examples=["d-0123456789abcdef0123456789abcdef"],
    )
    template_data: dict[str, Any] = Field(
        default_factory=dict,
        description="Data for the dynamic template; first_name/last_name are added per recipient.",
        examples=[{"offer": "10% off a follow-up scan"}],
    )
    subject: str | None = Field(
        default=None,
        max_length=200,
        description="Email subject (Jinja2).",
        examples=["{{ first_name }}, it's time"],
    )
    body: str | None = Field(
        default=None,
        max_length=20_000,
        description="Email text or SMS text (Jinja2). SMS gets the clinic's name and 'Reply STOP to opt out' "
        "appended.",
        examples=["Hi {{ first_name }}, our new Bondi Junction clinic is open."],
    )

    @field_validator("subject", "body")
    @classmethod
    def _renders(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                TEMPLATES.from_string(value).render(dict.fromkeys(TEMPLATE_FIELDS, "Sample"))
            except TemplateError as exc:
                fields = ", ".join(f"{{{{ {name} }}}}" for name in TEMPLATE_FIELDS)
                raise ValueError(f"not a valid template ({exc}); it may use {fields}") from None
        return value

    @field_validator("template_id")
    @classmethod
    def _dynamic_template(cls, value: str | None) -> str | None:
        if value is not None and not TEMPLATE_ID.match(value):
            raise ValueError(
                "template_id must be a SendGrid dynamic template id: d- followed by 32 hex digits"
            )
        return value


class ABTest(BaseModel):
    """How an A/B test runs: a test group gets the variants, the rest later gets the winner."""

    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of the audience in the test group, split evenly across the variants (0 < x < 1).",
        examples=[0.2],
    )
    metric: Literal["clicks", "opens"] = Field(
        default="clicks",
        description="What decides the winner: click rate (default) or open rate. Email only: an SMS test's "
        "winner is chosen by a person (texts carry no open or click tracking).",
    )
    wait_hours: float = Field(
        default=24, gt=0, le=24 * 14, description="How long after the test send the winner is picked."
    )
    min_sample: int = Field(
        default=100,
        ge=1,
        description="Each variant needs at least this many sent before a winner may be picked automatically.",
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="Significance level of the two-proportion test."
    )


class CampaignSpec(BaseModel):
    """A marketing campaign: who gets it, what they get, when, and (with several variants) how the A/B test
    picks the winner. Launching the same name again resumes that campaign; nobody gets it twice."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, description="A name people recognise.", examples=["Spring recall"]
    )
    slug: str = Field(
        default="",
        max_length=80,
        pattern=r"^[a-z0-9-]*$",
        description="Key of the campaign (lowercase, digits, dashes); derived from the name when empty.",
    )
    channel: Literal["email", "sms"] = Field(description="email (SendGrid) or sms (MobileMessage).")
    audience: Audience = Field(default_factory=Audience, description="Who is eligible.")
    variants: list[Variant] = Field(
        min_length=1,
        max_length=MAX_VARIANTS,
        description="The content: one variant, or 2 to 6 for an A/B test.",
    )
    ab_test: ABTest = Field(default_factory=ABTest, description="Used when there are two or more variants.")
    categories: list[str] = Field(
        default_factory=list,
        max_length=MAX_USER_CATEGORIES,
        description="Extra SendGrid categories for reporting (email only; at most 8).",
    )
    send_at: datetime | None = Field(
        default=None,
        description="When to send (with a UTC offset, e.g. 2026-03-02T09:00:00+10:00); empty = now.",
    )
    dry_run: bool = Field(
        default=False,
        description="Only count the audience per variant and preview the messages; send nothing.",
    )

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("send_at needs a UTC offset, e.g. 2026-03-02T09:00:00+10:00")
        return value.astimezone(UTC) if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        if not self.slug:
            self.slug = slugify(self.name)
            if not self.slug:
                raise ValueError("name must contain letters or digits (it becomes the campaign's slug)")
        for index, variant in enumerate(self.variants):
            if not variant.name:
                variant.name = VARIANT_NAMES[index]
            where = f"variant {variant.name}"
            if self.channel == "email":
                if variant.template_id and (variant.subject or variant.body):
                    raise ValueError(f"{where}: give either template_id or subject + body, not both")
                if not variant.template_id and not (variant.subject and variant.body):
                    raise ValueError(f"{where}: email needs template_id, or both subject and body")
            else:
                if variant.template_id or variant.subject or variant.template_data:
                    raise ValueError(
                        f"{where}: SMS takes only a body (no template_id, template_data or subject)"
                    )
                if not variant.body:
                    raise ValueError(f"{where}: SMS needs a body")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if self.channel == "sms" and self.categories:
            raise ValueError("categories are for email (SendGrid) only")
        return self

    @property
    def is_ab_test(self) -> bool:
        return len(self.variants) > 1

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(
            f"campaign {self.slug} has no variant {name!r} (has {[v.name for v in self.variants]})"
        )

    def sendgrid_send_at(self, now: datetime) -> datetime | None:
        """The send time to hand SendGrid, if SendGrid can hold it (email, at most 72 h ahead); None = the
        run must not post until `send_at` itself (MobileMessage holds nothing: an SMS waits for its run)."""
        if self.channel != "email" or self.send_at is None or self.send_at <= now + timedelta(minutes=1):
            return None
        if self.send_at > now + SENDGRID_MAX_SCHEDULE_AHEAD:
            return None
        return self.send_at

    def comparable(self) -> dict[str, Any]:
        """What must not change between a launch and its resumption (everything but `dry_run`)."""
        return self.model_dump(mode="json", exclude={"dry_run"})


class CampaignFileError(ValueError):
    """A campaign file that cannot be read or does not describe a valid campaign."""


def load_spec(path: Path) -> CampaignSpec:
    """Read a campaign YAML file (see deployments/campaign.example.yaml), with errors naming the field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CampaignFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise CampaignFileError(f"{path}: expected a mapping of campaign fields at the top level")
    try:
        return CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in error['loc']) or '(campaign)'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise CampaignFileError(f"{path} is not a valid campaign:\n" + "\n".join(lines)) from None
