"""What a marketer does from the command line before a campaign: tag patients, record consent changes, and
dry-run the campaign file; checked by who the campaign would then reach."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deployments.cli import app as cli
from flows.campaign_audience import stream_recipients
from flows.campaign_spec import CampaignSpec
from tests.campaign_data import seed

pytestmark = pytest.mark.db


def audience(**filters: object) -> set[str]:
    spec = CampaignSpec.model_validate(
        {"name": "x", "channel": "email", "audience": filters, "variants": [{"subject": "s", "body": "b"}]}
    )
    pages = stream_recipients(spec, now=datetime.now(UTC), timezone="Australia/Brisbane")
    return {r.address for page in pages for r in page}


def test_tags_are_added_from_arguments_or_a_file_and_removed(db: str, tmp_path: Path) -> None:
    seed(6)
    added = CliRunner().invoke(
        cli,
        ["tag", "add", "newsletter", "patient1@example.com", "PATIENT2@Example.com", "nobody@example.com"],
    )
    assert added.exit_code == 0, added.output
    assert "tagged 2 patient(s) 'newsletter'; 1 address(es) unknown" in added.output
    assert "patient1@example.com" not in added.output  # counts, not patient details
    listed = tmp_path / "list.txt"
    listed.write_text("patient3@example.com\n\npatient1@example.com\n")
    assert CliRunner().invoke(cli, ["tag", "add", "newsletter", "--file", str(listed)]).exit_code == 0
    assert audience(tags=["newsletter"]) == {f"patient{i}@example.com" for i in (1, 2, 3)}

    removed = CliRunner().invoke(cli, ["tag", "remove", "newsletter", "patient2@example.com"])
    assert removed.exit_code == 0 and "untagged 1" in removed.output
    assert audience(tags=["newsletter"]) == {"patient1@example.com", "patient3@example.com"}

    refused = CliRunner().invoke(cli, ["tag", "add", "newsletter", "patient4@example.com", "not an address"])
    assert refused.exit_code == 1 and "entries 2" in refused.output
    assert "patient4@example.com" in audience(tags=["newsletter"])  # the good entries still count


def test_consent_changes_decide_who_a_campaign_reaches(db: str) -> None:
    seed(2, consent=False)
    assert audience() == set()
    granted = CliRunner().invoke(
        cli, ["consent", "grant", "--email", "patient0@example.com", "--note", "ticked the box at reception"]
    )
    assert granted.exit_code == 0, granted.output
    assert audience() == {"patient0@example.com"}
    withdrawn = CliRunner().invoke(cli, ["consent", "withdraw", "--email", "patient0@example.com"])
    assert withdrawn.exit_code == 0
    assert audience() == set()
    assert CliRunner().invoke(cli, ["consent", "grant", "--email", "who@example.com"]).exit_code != 0


def test_a_local_dry_run_of_a_file_counts_and_previews(db: str, tmp_path: Path) -> None:
    seed(3)
    file = tmp_path / "campaign.yaml"
    file.write_text(
        json.dumps(
            {
                "name": "Winter hours",
                "channel": "email",
                "variants": [
                    {"subject": "Winter hours at {{ clinic_name }}", "body": "Hi {{ first_name }}."}
                ],
            }
        )
    )
    result = CliRunner().invoke(cli, ["campaign", "launch", str(file), "--dry-run", "--local"])
    assert result.exit_code == 0, result.output
    assert '"recipients": 3' in result.output and "Nothing was sent" in result.output

    file.write_text(json.dumps({"name": "Broken", "channel": "fax", "variants": []}))
    refused = CliRunner().invoke(cli, ["campaign", "launch", str(file), "--local"])
    assert refused.exit_code == 2 and "channel" in refused.output
