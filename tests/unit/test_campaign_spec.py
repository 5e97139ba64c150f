"""The campaign launch model: what a marketer may write, and the errors that tell them what to change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from campaigns.audience import assign_variant
from campaigns.content import (
    ContentError,
    check_renders,
    email_content,
    personal_fields,
    sms_text,
)
from campaigns.spec import CampaignFileError, CampaignSpec, load_spec, slugify
from messaging.email_wording import ClinicIdentity

TEMPLATE = "d-0123456789abcdef0123456789abcdef"
EXAMPLE = Path(__file__).resolve().parents[2] / "deployments" / "campaign.example.yaml"


def email(**fields: object) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {"name": "Spring recall", "channel": "email", "variants": [{"template_id": TEMPLATE}], **fields}
    )


def errors_of(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        email(**fields)
    return str(caught.value)


def test_defaults_fill_slug_and_variant_names() -> None:
    spec = email(variants=[{"template_id": TEMPLATE}, {"subject": "Hi {{ first_name }}", "body": "Hello"}])
    assert spec.slug == "spring-recall"
    assert [v.name for v in spec.variants] == ["A", "B"]
    assert spec.is_ab_test and spec.ab_test.metric == "clicks" and spec.ab_test.test_fraction == 0.2


def test_slugify() -> None:
    assert slugify("  Spring MRI check-up! 2026 ") == "spring-mri-check-up-2026"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variants": [{"template_id": TEMPLATE}] * 7}, "at most 6 items"),
        ({"variants": []}, "at least 1 item"),
        ({"variants": [{"template_id": "12345"}]}, "dynamic template id"),
        ({"variants": [{"template_id": TEMPLATE, "subject": "x", "body": "y"}]}, "not both"),
        ({"variants": [{"subject": "only a subject"}]}, "both subject and body"),
        (
            {"variants": [{"name": "A", "template_id": TEMPLATE}, {"name": "A", "template_id": TEMPLATE}]},
            "unique",
        ),
        ({"ab_test": {"test_fraction": 0}}, "greater than 0"),
        ({"ab_test": {"test_fraction": 1}}, "less than 1"),
        ({"ab_test": {"metric": "bookings"}}, "'clicks' or 'opens'"),
        ({"send_at": "2026-03-02T09:00:00"}, "UTC offset"),
        ({"audience": {"last_visit_from": "2025-06-01", "last_visit_to": "2025-01-01"}}, "must not be after"),
        ({"audience": {"service": ["MRI"]}}, "Extra inputs are not permitted"),
        ({"categories": [f"c{i}" for i in range(9)]}, "at most 8 items"),
        ({"name": "!!!"}, "letters or digits"),
        (
            {"variants": [{"subject": "s", "body": "Hi {{ first_name }"}]},
            "variants.0.body\n  Value error, not a",
        ),
        (
            {"variants": [{"subject": "{{ offer }}", "body": "b"}]},
            "'offer' is undefined); it may use {{ first",
        ),
    ],
)
def test_refused_with_a_clear_reason(fields: dict[str, object], message: str) -> None:
    assert message in errors_of(**fields)


def test_sms_takes_a_body_only() -> None:
    with pytest.raises(ValidationError, match="SMS takes only a body"):
        CampaignSpec.model_validate(
            {"name": "x", "channel": "sms", "variants": [{"body": "Hi", "subject": "no"}]}
        )
    with pytest.raises(ValidationError, match="SMS needs a body"):
        CampaignSpec.model_validate({"name": "x", "channel": "sms", "variants": [{}]})
    with pytest.raises(ValidationError, match="email"):
        CampaignSpec.model_validate(
            {"name": "x", "channel": "sms", "variants": [{"body": "Hi"}], "categories": ["a"]}
        )


def test_send_at_is_utc_and_sendgrid_holds_it_only_within_72_hours() -> None:
    spec = email(send_at="2026-03-02T09:00:00+10:00")
    assert spec.send_at == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    now = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert spec.sendgrid_send_at(now) == spec.send_at
    assert spec.sendgrid_send_at(now - timedelta(days=3)) is None  # more than 72 h ahead: schedule the run
    assert spec.sendgrid_send_at(spec.send_at) is None  # due: send now
    text = CampaignSpec.model_validate(
        {"name": "x", "channel": "sms", "variants": [{"body": "Hi"}], "send_at": "2026-03-02T09:00:00+10:00"}
    )
    assert text.sendgrid_send_at(now) is None  # MobileMessage holds nothing: the run waits for send_at


def test_example_file_loads() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.channel == "email" and [v.name for v in spec.variants] == ["A"]
    assert spec.audience.tags == [
        "knee-follow-up"
    ]  # who it selects on the demo's data: tests/unit/test_cli.py


def test_bad_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nchannel: fax\nvariants: [{body: hi}]\n")
    with pytest.raises(CampaignFileError) as caught:
        load_spec(bad)
    assert "channel" in str(caught.value) and "'email' or 'sms'" in str(caught.value)
    bad.write_text("- just a list\n")
    with pytest.raises(CampaignFileError, match="mapping"):
        load_spec(bad)


def test_ab_assignment_is_deterministic_and_split_by_fraction() -> None:
    spec = email(
        variants=[{"template_id": TEMPLATE}, {"template_id": TEMPLATE}, {"template_id": TEMPLATE}],
        ab_test={"test_fraction": 0.3},
    )
    groups = [assign_variant(spec, contact_id) for contact_id in range(1, 30_001)]
    assert groups == [assign_variant(spec, contact_id) for contact_id in range(1, 30_001)]
    assert 0.28 < sum(g is not None for g in groups) / len(groups) < 0.32
    for name in "ABC":
        assert 0.09 < groups.count(name) / len(groups) < 0.11
    assert all(assign_variant(email(), contact_id) == "A" for contact_id in range(1, 100))  # no test: all A


def test_sms_identifies_the_clinic_and_the_opt_out() -> None:
    spec = CampaignSpec.model_validate(
        {"name": "x", "channel": "sms", "variants": [{"body": "Hi {{ first_name }}, we have moved."}]}
    )
    text = sms_text(spec.variants[0], ClinicIdentity("Avatar Imaging"), "Alex", None)
    assert text == "Hi Alex, we have moved.\nAvatar Imaging. Reply STOP to opt out"
    long = CampaignSpec.model_validate({"name": "x", "channel": "sms", "variants": [{"body": "x" * 760}]})
    with pytest.raises(ContentError, match="765"):
        check_renders(long.variants[0], "sms", ClinicIdentity("Avatar Imaging"))


def test_email_text_keeps_personal_fields_as_substitution_tags() -> None:
    spec = email(variants=[{"subject": "{{ first_name }}, hello", "body": "See https://example.com/b?x=1"}])
    content = email_content(
        spec.variants[0], ClinicIdentity("Avatar Imaging", address="1 Example St"), with_unsubscribe=True
    )
    assert content.subject == "-first_name-, hello"
    assert "<%asm_group_unsubscribe_raw_url%>" in (content.text or "") and "1 Example St" in (
        content.text or ""
    )
    assert '<a href="https://example.com/b?x=1">' in (content.html or "")
    assert "'frist_name' is undefined" in errors_of(variants=[{"subject": "{{ frist_name }}", "body": "x"}])


def test_names_are_escaped_in_the_html_part_and_plain_in_the_text() -> None:
    variant = email(
        variants=[{"subject": "Hi {{ first_name }}", "body": "Dear {{ first_name }} {{ last_name }},"}]
    )
    clinic = ClinicIdentity("Avatar Imaging")
    content = email_content(variant.variants[0], clinic, with_unsubscribe=False)
    _, substitutions = personal_fields(variant.variants[0], "<b>Bo</b>", "Smith & Co", clinic)
    html_part, text_part = content.html or "", content.text or ""
    for tag, value in substitutions.items():  # what SendGrid does: verbatim replacement
        html_part, text_part = html_part.replace(tag, value), text_part.replace(tag, value)
    assert "Dear &lt;b&gt;Bo&lt;/b&gt; Smith &amp; Co," in html_part and "<b>" not in html_part
    assert "Dear <b>Bo</b> Smith & Co," in text_part
