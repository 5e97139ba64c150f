"""Secrets kept in Prefect blocks: `avatar-crm secrets push` stores them, every process reads them before the
environment, `avatar-crm config` says where each setting came from, and a stack whose environment holds none
of them still takes a signed booking and texts the patient."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import select
from typer.testing import CliRunner

import models.settings
from deployments.cli import app
from models import Contact, get_settings, session_scope
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.integration.conftest import MM_WEBHOOK_SECRET, SMS_PASSWORD, WIX_SECRET, Rig
from tests.integration.helpers import booking, local_slot, new_booking_id, post_wix, signed_event, wait_until
from tests.integration.stack import AVATAR_CRM, Stack

# Secrets the rig puts in the environment; the stack below runs without any of them.
SECRET_VARIABLES = frozenset(
    {
        "CRM_ENCRYPTION_KEY",
        "WIX_PUBLIC_KEY",
        "WIX_WEBHOOK_SECRET",
        "MOBILEMESSAGE_API_USERNAME",
        "MOBILEMESSAGE_API_PASSWORD",
        "MOBILEMESSAGE_WEBHOOK_SECRET",
        "SENDGRID_API_KEY",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
    }
)
SECRET_VALUES = (SMS_PASSWORD, WIX_SECRET, MM_WEBHOOK_SECRET)


@pytest.fixture
def own_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's registered settings sources (the CLI callback registers the blocks' in this process)."""
    monkeypatch.setattr(models.settings, "_sources", {})
    get_settings.cache_clear()


def test_pushed_blocks_are_read_before_the_environment_and_config_never_shows_a_secret(
    rig: Rig, own_sources: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"  # not the rig runner's documents: its runs keep their settings
    monkeypatch.setenv("CRM_SECRETS_BLOCK", name)
    monkeypatch.setenv("SMS_LLM_API_KEY", "llm-key-from-env")
    pushed = CliRunner().invoke(app, ["secrets", "push"])
    assert pushed.exit_code == 0, pushed.output
    assert f"avatar-crm-mobilemessage/{name}: MOBILEMESSAGE_API_USERNAME" in pushed.output
    assert f"avatar-crm-keys/{name}: CRM_ENCRYPTION_KEY" in pushed.output

    key = os.environ["CRM_ENCRYPTION_KEY"]
    for variable in SECRET_VARIABLES | {"SMS_LLM_API_KEY"}:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("WIX_WEBHOOK_SECRET", "a-stale-value-in-the-environment")  # the block's wins
    get_settings.cache_clear()
    shown = CliRunner().invoke(app, ["config"])
    assert shown.exit_code == 0, shown.output
    settings = get_settings()

    assert settings.crm_encryption_key is not None and settings.crm_encryption_key.get_secret_value() == key
    assert settings.wix_webhook_secret is not None
    assert settings.wix_webhook_secret.get_secret_value() == WIX_SECRET
    assert settings.mobilemessage_api_password is not None
    assert settings.mobilemessage_api_password.get_secret_value() == SMS_PASSWORD
    assert settings.sms_llm_api_key is not None
    assert settings.sms_llm_api_key.get_secret_value() == "llm-key-from-env"
    origins = settings.origins()
    assert origins["wix_webhook_secret"] == f"block avatar-crm-wix/{name}"
    assert origins["sms_llm_api_key"] == f"block avatar-crm-llm/{name}"
    assert origins["mobilemessage_from_number"] == "env"
    assert origins["clinic_phone"] == "default"
    lines = {line.split()[0]: line for line in shown.output.splitlines()[1:]}
    assert f"block avatar-crm-keys/{name}" in lines["CRM_ENCRYPTION_KEY"]
    assert "(set)" in lines["MOBILEMESSAGE_API_PASSWORD"]
    assert shown.output.startswith(f"blocks: read from {rig.prefect_api_url}")
    for secret in (*SECRET_VALUES, key, "llm-key-from-env", "a-stale-value"):
        assert secret not in shown.output and secret not in pushed.output


def test_settings_come_from_the_environment_at_once_when_prefect_is_down(
    own_sources: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blocks.settings_source import install, last_read

    monkeypatch.setenv("SESSION_SECRET", "session-from-env")
    install()
    started = time.monotonic()
    # nothing listens on the discard port
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        settings = get_settings()
    elapsed = time.monotonic() - started

    assert settings.session_secret is not None
    assert settings.session_secret.get_secret_value() == "session-from-env"
    assert settings.origins()["session_secret"] == "env"
    assert last_read.state == "unreachable"
    assert elapsed < 2.0, f"settings took {elapsed:.1f}s without Prefect"


def test_stack_with_secrets_only_in_blocks_takes_a_signed_booking(
    rig: Rig, sms: FakeMobileMessage, tmp_path: Path
) -> None:
    """Done when: secrets pushed, the environment emptied of them, `make up` and a signed booking work."""
    first = Stack(tmp_path, {"DISPATCH_POLL_SECONDS": "0.5"})
    first.start()
    try:
        env = {
            **os.environ,
            "PREFECT_API_URL": first.prefect_api,
            "PREFECT_API_AUTH_STRING": first.prefect_login,
            "CRM_DATA_DIR": str(tmp_path),
        }
        push = subprocess.run(
            [str(AVATAR_CRM), "secrets", "push"], env=env, capture_output=True, text=True, timeout=120
        )
        assert push.returncode == 0, push.stdout + push.stderr
    finally:
        first.stop()

    stack = Stack(tmp_path, {"DISPATCH_POLL_SECONDS": "0.5"}, env_removed=SECRET_VARIABLES)
    stack.prefect_port, stack.gateway_port = first.prefect_port, first.gateway_port  # the same Prefect data
    stack.start()
    try:
        assert "secrets blocks:  read from Prefect" in stack.log_tail(None)
        assert not (tmp_path / "encryption.key").exists()  # the key came from the block, none was made
        booking_id, phone = new_booking_id(), "+61400777001"
        body = signed_event(
            rig.wix_keys,
            "wix.bookings.v2.booking_created",
            booking(booking_id, 1, local_slot(4, 10), phone=phone, email=None, contact_id=str(uuid.uuid4())),
        )
        response = post_wix(stack.gateway_url, body)  # accepted only with the Wix key from the block
        assert response.status_code == 200, response.text
        wait_until(lambda: any(m["to"].lstrip("+") == phone.lstrip("+") for m in sms.sent), timeout=120)
        with session_scope() as session:  # written with the block's key, which is the session's
            phones = [c.phone for c in session.exec(select(Contact)).all()]
        assert phone in phones

        env = {
            key: value
            for key, value in os.environ.items()
            if key not in SECRET_VARIABLES and key != "PREFECT_API_URL"
        }
        env.update(PREFECT_PORT=str(stack.prefect_port), CRM_DATA_DIR=str(tmp_path))
        shown = subprocess.run(
            [str(AVATAR_CRM), "config"], env=env, capture_output=True, text=True, timeout=60
        ).stdout
        assert "block avatar-crm-mobilemessage/avatar-crm" in shown
        assert "block avatar-crm-keys/avatar-crm" in shown.split("CRM_ENCRYPTION_KEY")[1].splitlines()[0]
        for secret in (*SECRET_VALUES, os.environ["CRM_ENCRYPTION_KEY"]):
            assert secret not in shown
    finally:
        stack.stop()
