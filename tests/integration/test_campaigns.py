"""Campaigns launched the ways a marketer launches them — `avatar-crm campaign launch FILE.yaml` and
`prefect deployment run` — run on the served `campaign-send` and `campaign-winner` deployments against the
spec-validating fake SendGrid: what SendGrid was sent, what the outbox holds, what the Prefect UI shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlmodel import select

from messaging.consent import ConsentSource, withdraw
from models import (
    Campaign,
    CampaignStatus,
    Channel,
    ConsentOrigin,
    Contact,
    MessageStatus,
    OutboundMessage,
    Purpose,
    session_scope,
)
from tests.campaign_data import seed
from tests.fakes.sendgrid import FakeSendGrid
from tests.integration.conftest import UNSUBSCRIBE_GROUP, Rig
from tests.integration.helpers import TERMINAL, flow_run_state, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.db]

BIN = Path(sys.executable).parent
TEMPLATE = "d-0123456789abcdef0123456789abcdef"
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def sendgrid(rig: Rig, sms: object) -> FakeSendGrid:
    """The rig's fake SendGrid, emptied for this test (the `sms` fixture empties the database and fakes)."""
    return rig.sendgrid


def command(rig: Rig, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a console script of this environment as a person would, against the rig's Prefect server."""
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        env=env or {**os.environ, "PREFECT_API_URL": rig.prefect_api_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_run(output: str) -> str:
    """The flow run the command printed, once it has ended; returns its final state type."""
    run_id = RUN_ID.search(output)
    assert run_id, output
    return wait_until(lambda: (state := flow_run_state(run_id.group())) in TERMINAL and state, timeout=120)


def campaign(slug: str) -> Campaign:
    with session_scope() as session:
        row = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
        session.expunge(row)
        return row


def campaign_rows(slug: str) -> list[OutboundMessage]:
    with session_scope() as session:
        query = (
            select(OutboundMessage)
            .join(Campaign, Campaign.id == OutboundMessage.campaign_id)
            .where(Campaign.slug == slug)
        )
        rows = list(session.exec(query).all())
        for row in rows:
            session.expunge(row)
        return rows


def artifacts(rig: Rig, flow_run_id: str) -> dict[str, dict[str, Any]]:
    response = httpx.post(
        f"{rig.prefect_api_url}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
        timeout=10,
    )
    response.raise_for_status()
    return {a["key"]: a for a in response.json()}


def test_a_campaign_launched_from_a_file_is_sent_once_to_consenting_patients(
    rig: Rig, sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    consenting = seed(1200)
    seed(5, consent=False, offset=5000)
    withdrawn = "patient7@example.com"
    with session_scope() as session:
        contact = session.get(Contact, consenting[withdrawn])
        source = ConsentSource("staff", actor="reception", origin=ConsentOrigin.STAFF)
        withdraw(
            session, phone=None, contact=contact, scopes=[(Channel.EMAIL, Purpose.MARKETING)], why=source
        )
    slug = f"recall-{uuid.uuid4().hex[:8]}"
    spec = {
        "name": "Spring recall",
        "slug": slug,
        "channel": "email",
        "variants": [{"name": "A", "template_id": TEMPLATE, "template_data": {"offer": "10% off"}}],
        "categories": ["spring"],
    }
    file = tmp_path / "campaign.yaml"
    file.write_text(json.dumps(spec))  # YAML is a superset of JSON

    output = command(rig, "avatar-crm", "campaign", "launch", str(file))
    assert wait_run(output) == "COMPLETED"

    assert sendgrid.invalid == []  # every request conformed to SendGrid's OpenAPI description
    assert [len(body["personalizations"]) for body in sendgrid.accepted] in ([1000, 199], [199, 1000])
    expected = set(consenting) - {withdrawn}
    assert sorted(sendgrid.recipients()) == sorted(expected)  # each once; nobody without consent
    for body in sendgrid.accepted:
        assert body["template_id"] == TEMPLATE
        assert body["asm"]["group_id"] == UNSUBSCRIBE_GROUP
        assert {"campaign", f"campaign-{slug}", "spring"} <= set(body["categories"])
        for personalization in body["personalizations"]:
            assert personalization["custom_args"]["campaign"] == slug
            assert personalization["dynamic_template_data"]["offer"] == "10% off"
    rows = campaign_rows(slug)
    assert len(rows) == 1199 and {r.status for r in rows} == {MessageStatus.SENT}
    assert all(r.provider_message_id for r in rows)  # SendGrid's X-Message-Id, for its events
    sent_ids = {int(p["custom_args"]["outbox_id"]) for b in sendgrid.accepted for p in b["personalizations"]}
    assert sent_ids == {r.id for r in rows}
    row = campaign(slug)
    assert row.status == CampaignStatus.SENT

    # Ops see progress and per-variant results on the run in the Prefect UI.
    shown = artifacts(rig, str(row.flow_run_id))
    assert shown[f"campaign-{slug}-progress"]["type"] == "progress"
    assert shown[f"campaign-{slug}-progress"]["data"] == 100.0
    [results] = json.loads(shown[f"campaign-{slug}-results"]["data"])
    assert results["variant"] == "A" and results["queued"] == 1199 and results["sent"] == 1199

    # Launching the same file again resumes the campaign: it was complete, so nobody gets a second copy.
    requests_before = len(sendgrid.accepted)
    assert wait_run(command(rig, "avatar-crm", "campaign", "launch", str(file))) == "COMPLETED"
    assert len(sendgrid.accepted) == requests_before


def test_an_ab_test_from_prefect_deployment_run_waits_for_a_person_then_sends_their_choice(
    rig: Rig, sendgrid: FakeSendGrid
) -> None:
    audience = seed(300)
    slug = f"ab-{uuid.uuid4().hex[:8]}"
    spec = {
        "name": "Follow-up subject test",
        "slug": slug,
        "channel": "email",
        "variants": [
            {
                "name": "A",
                "subject": "Time for your follow-up, {{ first_name }}?",
                "body": "Book at {{ clinic_name }}.",
            },
            {
                "name": "B",
                "subject": "{{ first_name }}, your follow-up scan",
                "body": "We can see you this week.",
            },
        ],
        "ab_test": {"test_fraction": 0.5, "metric": "clicks", "wait_hours": 0.001, "min_sample": 10},
    }

    output = command(
        rig,
        "prefect",
        "deployment",
        "run",
        "campaign-send/campaign-send",
        "--params",
        json.dumps({"spec": spec}),
    )
    assert wait_run(output) == "COMPLETED"
    assert sendgrid.invalid == []
    test_group = sendgrid.recipients()
    assert 100 < len(test_group) < 200 and len(set(test_group)) == len(test_group)
    subjects = {
        p.get("subject") or body.get("subject")
        for body in sendgrid.accepted
        for p in body["personalizations"]
    }
    assert len(subjects) == 2  # both variants went out

    # The follow-up run scheduled by campaign-send (3.6 s later) finds no clicks: no significant winner, so
    # it leaves the choice to a person instead of guessing.
    wait_until(lambda: campaign(slug).status == CampaignStatus.AWAITING_CHOICE, timeout=120)
    assert "no winner" in (campaign(slug).winner_reason or "")
    assert len(sendgrid.recipients()) == len(test_group)

    assert wait_run(command(rig, "avatar-crm", "campaign", "choose", slug, "B")) == "COMPLETED"
    assert sendgrid.invalid == []
    everyone = sendgrid.recipients()
    assert sorted(everyone) == sorted(audience)  # the rest got it, and nobody twice
    rest = set(everyone) - set(test_group)
    rows = {r.recipient: r for r in campaign_rows(slug)}
    assert {rows[address].variant for address in rest} == {"B"}
    row = campaign(slug)
    assert row.status == CampaignStatus.SENT and row.winner_variant == "B"


def test_without_prefect_api_url_the_cli_uses_the_running_stacks_prefect(
    rig: Rig, sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    """A shell beside `make up` has no PREFECT_API_URL: the command finds the stack's Prefect on PREFECT_PORT
    (it used to start a temporary server of its own for ~27 s and fail with `ObjectNotFound`)."""
    seed(3)
    file = tmp_path / "campaign.yaml"
    file.write_text(
        json.dumps({"name": "Stack check", "channel": "email", "variants": [{"subject": "s", "body": "b"}]})
    )
    port = str(urlsplit(rig.prefect_api_url).port)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_PORT": port}

    output = command(rig, "avatar-crm", "campaign", "launch", str(file), "--dry-run", env=env)
    assert f"http://127.0.0.1:{port}/runs/flow-run/" in output
    assert wait_run(output) == "COMPLETED"
    assert campaign("stack-check").status == CampaignStatus.PREVIEWED
    assert sendgrid.requests == []
