"""What a campaign message says: variant texts rendered for a recipient, with the footer the law asks for.

Email is sent a thousand recipients per request, so one request carries one text: per-recipient fields
(`first_name`, `last_name`) are rendered as SendGrid substitution tags (`-first_name-`) and each
personalization carries its own values; dynamic templates get the same fields in `dynamic_template_data`.
SMS is rendered per recipient. Either way the message identifies the clinic and tells the patient how to opt
out (Spam Act 2003: a functional unsubscribe in every commercial message) — for email through SendGrid's
unsubscribe group (`asm.group_id`), for SMS by "Reply STOP to opt out", which two-way SMS already honours.

Templates are Jinja2 in a sandbox with undefined names refused, so a typo fails the launch, not the send.
"""

from __future__ import annotations

import html
import re
from typing import Any

from jinja2 import TemplateError

from campaigns.spec import TEMPLATES, CampaignSpec, Variant
from messaging.email_wording import ClinicIdentity
from providers.sendgrid import EmailContent

SMS_MAX_LENGTH = 765  # MobileMessage's limit (5 concatenated GSM-7 parts)
SUBSTITUTION_TAGS = {"first_name": "-first_name-", "last_name": "-last_name-"}
# SendGrid substitutes verbatim, so the HTML part has tags of its own, filled with HTML-escaped values: a
# patient whose name holds `<` or `&` is printed, never rendered as markup.
HTML_SUBSTITUTION_TAGS = {"first_name": "-first_name_html-", "last_name": "-last_name_html-"}
UNSUBSCRIBE_TAG = "<%asm_group_unsubscribe_raw_url%>"  # SendGrid fills in the group's unsubscribe link
SAMPLE_RECIPIENT = {"first_name": "Alex", "last_name": "Sample"}  # previews never show a real patient
_URL = re.compile(r"https?://[^\s<>\"']+")


class ContentError(ValueError):
    """A variant's text cannot be rendered (a Jinja2 syntax error or an unknown name)."""


def render(template: str, **context: Any) -> str:
    try:
        return TEMPLATES.from_string(template).render(**context)
    except TemplateError as exc:
        raise ContentError(f"cannot render {template[:40]!r}…: {exc}") from exc


def sms_text(variant: Variant, clinic: ClinicIdentity, first_name: str | None, last_name: str | None) -> str:
    """The SMS one patient gets: the variant's text, then who we are and how to stop."""
    body = render(
        variant.body or "",
        first_name=first_name or "there",
        last_name=last_name or "",
        clinic_name=clinic.name,
    ).strip()
    return f"{body}\n{clinic.name}. Reply STOP to opt out"


def email_content(variant: Variant, clinic: ClinicIdentity, *, with_unsubscribe: bool) -> EmailContent:
    """One variant's email for a whole request; personal fields stay as substitution tags."""
    if variant.template_id:
        return EmailContent(template_id=variant.template_id)
    context = {**SUBSTITUTION_TAGS, "clinic_name": clinic.name}
    subject = render(variant.subject or "", **context).strip()
    text = render(variant.body or "", **context).strip()
    sender = ", ".join(part for part in (clinic.name, clinic.address) if part)
    text_footer = f"\n\n--\n{sender}"
    html_footer = f"<hr><p>{html.escape(sender)}"
    if with_unsubscribe:
        text_footer += f"\nUnsubscribe: {UNSUBSCRIBE_TAG}"
        html_footer += f'<br><a href="{UNSUBSCRIBE_TAG}">Unsubscribe</a>'
    html_footer += "</p>"
    body_html = _to_html(text)
    for field, tag in SUBSTITUTION_TAGS.items():
        body_html = body_html.replace(tag, HTML_SUBSTITUTION_TAGS[field])
    return EmailContent(subject=subject, text=text + text_footer, html=body_html + html_footer)


def _to_html(text: str) -> str:
    """Plain text as simple HTML (paragraphs, line breaks, links), so click tracking sees the links."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        escaped = html.escape(block)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        paragraphs.append("<p>" + linked.replace("\n", "<br>") + "</p>")
    return "\n".join(paragraphs)


def personal_fields(
    variant: Variant, first_name: str | None, last_name: str | None, clinic: ClinicIdentity
) -> tuple[dict[str, Any], dict[str, str]]:
    """(dynamic_template_data, substitutions) for one recipient of this variant."""
    first, last = first_name or "there", last_name or ""
    if variant.template_id:
        data = {**variant.template_data, "first_name": first, "last_name": last, "clinic_name": clinic.name}
        return data, {}
    values = {"first_name": first, "last_name": last}
    return {}, {
        **{SUBSTITUTION_TAGS[field]: value for field, value in values.items()},
        **{HTML_SUBSTITUTION_TAGS[field]: html.escape(value) for field, value in values.items()},
    }


def summary(variant: Variant) -> str:
    """What the outbox row of an email records as its body: which content went out (not the whole text)."""
    if variant.template_id:
        return f"variant {variant.name}: SendGrid template {variant.template_id}"
    return f"variant {variant.name}: {variant.subject}"


def preview_text(
    variant: Variant, channel: str, clinic: ClinicIdentity, *, with_unsubscribe: bool
) -> tuple[str | None, str]:
    """(subject, text) of a variant as the sample patient (never a real one) would get it; a dynamic
    template's text is the data SendGrid would fill it with."""
    sample_first, sample_last = SAMPLE_RECIPIENT["first_name"], SAMPLE_RECIPIENT["last_name"]
    if channel == "sms":
        return None, sms_text(variant, clinic, sample_first, sample_last)
    content = email_content(variant, clinic, with_unsubscribe=with_unsubscribe)
    if content.template_id:
        data = personal_fields(variant, sample_first, sample_last, clinic)[0]
        return None, f"SendGrid dynamic template {content.template_id} with data:\n{data}"
    subject, text = content.subject or "", content.text or ""
    for field, tag in SUBSTITUTION_TAGS.items():
        subject = subject.replace(tag, SAMPLE_RECIPIENT[field])
        text = text.replace(tag, SAMPLE_RECIPIENT[field])
    return subject, text


def preview_markdown(
    variant: Variant, channel: str, clinic: ClinicIdentity, *, with_unsubscribe: bool
) -> str:
    """A variant as a sample patient would see it, for the dry-run artifact."""
    subject, text = preview_text(variant, channel, clinic, with_unsubscribe=with_unsubscribe)
    if channel == "sms":
        return f"```\n{text}\n```\n\n{len(text)} characters"
    if variant.template_id:
        _, _, data = text.partition(" with data:\n")
        return f"SendGrid dynamic template `{variant.template_id}` with data:\n\n```\n{data}\n```"
    return f"**Subject:** {subject}\n\n```\n{text}\n```"


def check_content(spec: CampaignSpec, clinic: ClinicIdentity) -> None:
    """Every variant renders (ContentError if not): asked by `campaign launch` and by the run itself."""
    for variant in spec.variants:
        check_renders(variant, spec.channel, clinic)


def check_renders(variant: Variant, channel: str, clinic: ClinicIdentity) -> None:
    """Render a variant once with a long sample name, so a broken template or an SMS over the provider's
    limit stops the launch before anything is queued."""
    if channel == "sms":
        text = sms_text(variant, clinic, "Maximiliana-Josephine", "Vandenberghe-Fitzgerald")
        if len(text) > SMS_MAX_LENGTH:
            raise ContentError(
                f"variant {variant.name}: the SMS is {len(text)} characters with a long name; "
                f"MobileMessage allows {SMS_MAX_LENGTH}"
            )
    else:
        email_content(variant, clinic, with_unsubscribe=True)
