"""The rig's provider settings belong to the tests that use the rig: a test after them, in any order, sees the
environment the session started with (the order of tests must not change what a test sees)."""

from __future__ import annotations

import os

from models import get_settings
from tests.integration.conftest import Rig


def test_a_test_using_the_rig_sees_its_providers(rig: Rig) -> None:
    assert os.environ["MOBILEMESSAGE_API_URL"] == rig.sms.url
    assert get_settings().mobilemessage_api_url == rig.sms.url
    assert get_settings().sendgrid_api_url == rig.sendgrid.url


def test_the_next_test_does_not_inherit_them() -> None:
    for name in ("MOBILEMESSAGE_API_URL", "SENDGRID_API_URL", "SMS_PROVIDER", "WIX_WEBHOOK_SECRET"):
        assert name not in os.environ, name
    settings = get_settings()
    assert settings.mobilemessage_api_url == "https://api.mobilemessage.com.au"
    assert settings.sendgrid_api_url == "https://api.sendgrid.com"
