"""The settings object: embedded defaults, and refusing a configuration that would fail every patient SMS."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.settings import Settings


def test_without_credentials_sms_is_sandboxed_and_data_lives_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        crm_data_dir=tmp_path,
        sms_provider=None,
        mobilemessage_api_username=None,
        mobilemessage_api_password=None,
        crm_database_url="",
    )
    assert settings.sms_provider == "sandbox"
    assert settings.crm_database_url == f"sqlite:///{tmp_path / 'crm.db'}"


def test_credentials_switch_on_mobilemessage() -> None:
    settings = Settings(
        _env_file=None,
        sms_provider=None,
        mobilemessage_api_username="clinic",
        mobilemessage_api_password="pw",
        mobilemessage_from_number="61400000010",
    )
    assert settings.sms_provider == "mobilemessage"


def test_mobilemessage_without_a_sender_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="needs MOBILEMESSAGE_FROM_NUMBER"):
        Settings(
            _env_file=None,
            sms_provider="mobilemessage",
            mobilemessage_api_username="clinic",
            mobilemessage_api_password="pw",
            mobilemessage_from_number=" ",
        )


def test_mobilemessage_without_credentials_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="MOBILEMESSAGE_API_USERNAME, MOBILEMESSAGE_API_PASSWORD"):
        Settings(
            _env_file=None,
            sms_provider="mobilemessage",
            mobilemessage_api_username=None,
            mobilemessage_api_password=None,
            mobilemessage_from_number="61400000010",
        )
