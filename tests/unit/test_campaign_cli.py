"""What a marketer does from the command line before a campaign: tag patients, record consent changes, and
dry-run the campaign file; checked by who the campaign would then reach."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from campaigns.audience import stream_recipients
from campaigns.spec import CampaignSpec
from deployments.cli import app as cli
from models import Contact, ContactTag, session_scope
from models.crypto import get_cipher
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


def test_consent_by_phone_reads_local_formats_and_says_what_it_refuses(db: str) -> None:
    ids = seed(2, channel="sms", consent=False)
    granted = CliRunner().invoke(
        cli, ["consent", "grant", "--phone", "0410 000 001", "--note", "signed the form"]
    )
    assert granted.exit_code == 0, granted.output
    assert f"marketing sms consent granted for contact {ids['+61410000001']}" in granted.output
    assert consented_sms() == {ids["+61410000001"]}

    for args, says in (
        (["--phone", "12345"], "'12345' is not a valid phone"),
        (["--email", "not-an-email"], "'not-an-email' is not a valid email"),
        (["--phone", "0499 999 999"], "no patient with that phone"),
        (["--email", "patient0@example.com", "--phone", "0410 000 000"], "exactly one of --email or --phone"),
    ):
        refused = CliRunner().invoke(cli, ["consent", "grant", *args, "--note", "signed the form"])
        assert refused.exit_code == 2 and says in refused.output, refused.output
    assert consented_sms() == {ids["+61410000001"]}
    unnoted = CliRunner().invoke(cli, ["consent", "grant", "--phone", "0410 000 000"])
    assert unnoted.exit_code == 2 and "--note is required" in unnoted.output, unnoted.output
    assert consented_sms() == {ids["+61410000001"]}


def test_patients_sharing_an_address_are_all_tagged_and_consent_goes_to_the_oldest(db: str) -> None:
    cipher = get_cipher()
    with session_scope() as session:
        family = [
            Contact(
                first_name=name,
                email="family@example.com",
                email_hash=cipher.blind_index("email", "family@example.com"),
                phone=phone,
                phone_hash=cipher.blind_index("phone", phone),
            )
            for name, phone in (("Parent", "+61410000100"), ("Child", "+61410000200"))
        ]
        session.add_all(family)
    parent, child = (c.id for c in family)

    tagged = CliRunner().invoke(cli, ["tag", "add", "family", "Family@Example.com"])
    assert tagged.exit_code == 0 and "tagged 2 patient(s)" in tagged.output, tagged.output
    by_phone = CliRunner().invoke(cli, ["tag", "add", "kids", "0410 000 200"])
    assert by_phone.exit_code == 0 and "tagged 1 patient(s)" in by_phone.output, by_phone.output
    with session_scope() as session:
        tags = {(t.contact_id, t.tag) for t in session.exec(select(ContactTag)).all()}
    assert tags == {(parent, "family"), (child, "family"), (child, "kids")}

    granted = CliRunner().invoke(
        cli, ["consent", "grant", "--email", "family@example.com", "--note", "signed the form"]
    )
    assert granted.exit_code == 0 and f"for contact {parent}" in granted.output, granted.output


def consented_sms() -> set[int | None]:
    with session_scope() as session:
        return set(
            session.exec(
                select(Contact.id).where(Contact.sms_marketing_consent_at.is_not(None))  # type: ignore[union-attr]
            ).all()
        )


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
