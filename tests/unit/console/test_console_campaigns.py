"""The marketer's campaign pages through Litestar's TestClient, signed in through the fake Google OIDC: the
form shows only the chosen channel's fields, the preview counts the audience and says what each filter left
out (matching the patients seeded), a template error is reported and the launch refused, a launch creates
one `campaign-send` run (Prefect's `run_deployment`, recorded) and one audit row, and reception is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import insert

from models import ContactTag, StaffRole, session_scope
from models.access_audit import verify
from tests.campaign_data import seed
from tests.console_env import STAFF, audit_count, audit_rows, csrf, signed_in
from tests.fakes.google_oidc import FakeGoogleOIDC

pytestmark = pytest.mark.db
HX = {"HX-Request": "true"}


@pytest.fixture
def marketer(app: Litestar, fake: FakeGoogleOIDC) -> Iterator[TestClient[Litestar]]:
    client = signed_in(app, fake, STAFF[StaffRole.MARKETER])
    yield client
    client.__exit__(None, None, None)


class RecordingRunDeployment:
    """Prefect's `run_deployment` as the launch calls it: records each call, answers with a run id."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, name: str, **kwargs: Any) -> Any:
        self.calls.append({"name": name, **kwargs})
        return type("FlowRun", (), {"id": uuid4()})()


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> RecordingRunDeployment:
    recorder = RecordingRunDeployment()
    monkeypatch.setattr("prefect.deployments.run_deployment", recorder)
    return recorder


def sms_form(**fields: str) -> dict[str, str]:
    return {
        "channel": "sms",
        "name": "Winter hours",
        "v0_body": "Hi {{ first_name }}, we open late.",
        **fields,
    }


def seed_patients() -> dict[str, int]:
    """Five with SMS marketing consent (three tagged newsletter), two without consent."""
    ids = seed(5, channel="sms")
    seed(2, channel="sms", consent=False, offset=5)
    tagged = [ids[f"+6141{i:07d}"] for i in range(3)]
    with session_scope() as session:
        session.execute(insert(ContactTag), [{"contact_id": i, "tag": "newsletter"} for i in tagged])
    return ids


def test_the_form_shows_only_the_chosen_channels_fields(marketer: TestClient[Litestar]) -> None:
    sms = marketer.get("/console/campaigns/new?channel=sms")
    assert sms.status_code == 200 and 'name="v0_body"' in sms.text
    for email_only in ('name="v0_subject"', 'name="v0_template_id"', 'name="categories"', 'name="ab_metric"'):
        assert email_only not in sms.text
    fragment = marketer.get("/console/campaigns/new?channel=email", headers=HX)  # the select's HTMX swap
    assert "<html" not in fragment.text and 'data-channel="email"' in fragment.text
    assert 'name="v0_subject"' in fragment.text and 'name="categories"' in fragment.text


def test_preview_counts_the_audience_and_what_each_filter_left_out(marketer: TestClient[Litestar]) -> None:
    seed_patients()
    before = audit_count()
    preview = marketer.post(
        "/console/campaigns/preview",
        headers={**csrf(marketer), **HX},
        data=sms_form(tags="newsletter", v1_body="{{ first_name }}: late opening!", ab_min_sample="100"),
    )
    assert preview.status_code == 200, preview.text
    page = preview.text
    assert 'id="recipients">3<' in page
    assert "all patients</td><td>7<" in page
    assert "left out: no sms marketing consent</td><td>−2<" in page
    assert "left out: no tag newsletter</td><td>−2<" in page
    assert "left out: no mobile number</td><td>−0<" in page
    assert 'id="min-sample-warning"' in page and "at least 100 sent" in page  # two of 3 cannot reach 100
    assert "Hi Alex, we open late." in page and "Reply STOP to opt out" in page  # the sample, not a patient
    assert "Pat0" not in page and "+61410000000" not in page
    assert audit_count() == before  # a preview shows counts only: nothing to audit


def test_a_template_error_is_shown_before_launch_and_the_launch_refused(
    marketer: TestClient[Litestar], runs: RecordingRunDeployment
) -> None:
    broken = sms_form(v0_body="Hi {{ first_name")
    preview = marketer.post("/console/campaigns/preview", headers={**csrf(marketer), **HX}, data=broken)
    assert preview.status_code == 200
    assert 'id="error-v0_body"' in preview.text and "not a valid template" in preview.text
    assert 'id="recipients"' not in preview.text

    before = audit_count()
    launch = marketer.post(
        "/console/campaigns/launch", headers=csrf(marketer), data=broken, follow_redirects=False
    )
    assert launch.status_code == 400 and "not a valid template" in launch.text
    assert runs.calls == [] and audit_count() == before


def test_launch_creates_the_campaign_send_run_and_one_audit_row(
    marketer: TestClient[Litestar], runs: RecordingRunDeployment
) -> None:
    seed_patients()
    before = audit_count()
    launch = marketer.post(
        "/console/campaigns/launch",
        headers=csrf(marketer),
        data=sms_form(tags="newsletter"),
        follow_redirects=False,
    )
    assert launch.status_code == 303, launch.text
    assert len(runs.calls) == 1
    call = runs.calls[0]
    assert call["name"] == "campaign-send/campaign-send" and call["timeout"] == 0
    spec = call["parameters"]["spec"]
    assert spec["slug"] == "winter-hours" and spec["channel"] == "sms"
    assert spec["audience"]["tags"] == ["newsletter"] and spec["dry_run"] is False
    assert spec["variants"] == [
        {
            "name": "A",
            "template_id": None,
            "template_data": {},
            "subject": None,
            "body": sms_form()["v0_body"],
        }
    ]
    new = audit_rows()[before:]
    assert [(r.action, r.actor, r.role, r.subject) for r in new] == [
        ("campaign.launched", STAFF[StaffRole.MARKETER], "marketer", "campaign:winter-hours")
    ]
    assert new[0].detail["channel"] == "sms" and new[0].detail["flow_run_id"] in launch.headers["location"]
    with session_scope() as session:
        assert verify(session).intact

    status = marketer.get(launch.headers["location"])
    assert status.status_code == 200 and "winter-hours" in status.text and "Nothing queued yet" in status.text
    assert marketer.get("/console/campaigns/nobody-launched-this").status_code == 404


def test_reception_is_refused_the_campaign_pages(app: Litestar, fake: FakeGoogleOIDC) -> None:
    reception = signed_in(app, fake, STAFF[StaffRole.RECEPTION])
    try:
        headers = csrf(reception)
        assert reception.get("/console/campaigns").status_code == 403
        assert reception.get("/console/campaigns/new?channel=sms").status_code == 403
        assert reception.get("/console/campaigns/winter-hours").status_code == 403
        assert (
            reception.post("/console/campaigns/preview", headers=headers, data=sms_form()).status_code == 403
        )
        assert (
            reception.post("/console/campaigns/launch", headers=headers, data=sms_form()).status_code == 403
        )
    finally:
        reception.__exit__(None, None, None)


def test_email_preview_renders_the_subject_and_puts_errors_next_to_their_fields(
    marketer: TestClient[Litestar],
) -> None:
    seed(2)
    form = {
        "channel": "email",
        "name": "Spring recall",
        "v0_subject": "{{ first_name }}, time for a check-up",
        "v0_body": "Hi {{ first_name }}, book at {{ clinic_name }}.",
        "v0_template_id": "",
        "categories": "recall, spring",
    }
    ok = marketer.post("/console/campaigns/preview", headers={**csrf(marketer), **HX}, data=form)
    assert 'id="recipients">2<' in ok.text
    assert "<strong>Subject:</strong> Alex, time for a check-up" in ok.text and "Hi Alex, book at" in ok.text
    assert "patient0@example.com" not in ok.text

    bad = {
        **form,
        "v1_body": "B without a subject",
        "ab_test_fraction": "1.5",
        "last_visit_from": "2026-06-01",
        "last_visit_to": "2026-01-01",
    }
    refused = marketer.post("/console/campaigns/preview", headers={**csrf(marketer), **HX}, data=bad)
    assert 'id="error-ab_test_fraction"' in refused.text and "less than 1" in refused.text
    assert 'id="error-last_visit_to"' in refused.text and "must not be after" in refused.text
    assert 'id="recipients"' not in refused.text


def test_the_list_and_a_campaigns_page_show_status_and_counts(marketer: TestClient[Litestar]) -> None:
    from campaigns.campaign import open_campaign
    from campaigns.spec import CampaignSpec
    from models import CampaignStatus

    spec = CampaignSpec.model_validate(
        {"name": "Autumn news", "channel": "sms", "variants": [{"body": "Hi {{ first_name }}"}]}
    )
    open_campaign(spec, CampaignStatus.SENDING)
    listed = marketer.get("/console/campaigns")
    assert listed.status_code == 200
    assert 'href="/console/campaigns/autumn-news">Autumn news<' in listed.text and "sending" in listed.text
    page = marketer.get("/console/campaigns/autumn-news")
    assert page.status_code == 200 and 'id="status">sending<' in page.text


def test_a_send_time_in_the_past_is_refused_at_launch(
    marketer: TestClient[Litestar], runs: RecordingRunDeployment
) -> None:
    seed(1, channel="sms")
    past = sms_form(send_at="2020-01-06T09:00")  # clinic time, from the datetime-local input
    preview = marketer.post("/console/campaigns/preview", headers={**csrf(marketer), **HX}, data=past)
    assert (
        'id="refusal"' in preview.text and "send_at 2020-01-05T23:00:00+00:00 is in the past" in preview.text
    )
    before = audit_count()
    launch = marketer.post("/console/campaigns/launch", headers=csrf(marketer), data=past)
    assert launch.status_code == 400 and "not launched: send_at" in launch.text
    assert runs.calls == [] and audit_count() == before
