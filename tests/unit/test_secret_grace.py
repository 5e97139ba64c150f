"""Rotating a webhook secret or SESSION_SECRET: during the grace period (SECRETS_PREVIOUS_UNTIL) requests
signed with the previous value are still accepted, after it they are refused; and the age of every key and
secret in use is recorded and checked (`avatar-crm keys status`, `models.keyring.key_ages`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient
from pydantic import ValidationError
from sqlalchemy import update
from typer.testing import CliRunner

from deployments.cli import app as cli
from models import CryptoKey, Settings, get_settings, session_scope
from models.crypto import key_id
from models.keyring import key_ages, secret_id
from providers.tracking_tokens import click_token
from providers.wix_simulator import sign_hmac, simple_event
from tests.fakes.mobilemessage import inbound_payload, sign_webhook
from tests.fakes.sendgrid_events import EventSigner, batch, event
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

OLD, NEW, FORGED = b"the-old-shared-secret", b"the-new-shared-secret", b"never-configured-secret"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
PREFECT = "http://127.0.0.1:9/api"


def _settings(db: str, until: datetime | None, **values: object) -> Settings:
    return Settings(
        crm_database_url=db,
        dispatch_poll_seconds=60.0,
        secrets_previous_until=until,
        **values,  # type: ignore[arg-type]
    )


IN_GRACE = datetime.now(UTC) + timedelta(hours=1)
EXPIRED = datetime.now(UTC) - timedelta(seconds=1)


@pytest.mark.parametrize(("until", "old_accepted"), [(IN_GRACE, True), (EXPIRED, False)])
async def test_wix_and_mobilemessage_accept_the_previous_secret_only_in_its_grace(
    db: str, until: datetime, old_accepted: bool
) -> None:
    settings = _settings(
        db,
        until,
        wix_webhook_secret=NEW.decode(),
        wix_webhook_secret_previous=OLD.decode(),
        mobilemessage_webhook_secret=NEW.decode(),
        mobilemessage_webhook_secret_previous=OLD.decode(),
    )
    async with AsyncTestClient(app=create_app(settings, prefect_api_url=PREFECT)) as client:

        async def wix(secret: bytes) -> int:
            body = simple_event("bookings/created", str(uuid.uuid4()), start=START)
            headers = {"X-Wix-Webhook-Signature": sign_hmac(body, secret)}
            return (await client.post("/webhooks/wix/bookings", content=body, headers=headers)).status_code

        async def sms(secret: bytes) -> int:
            body = json.dumps(inbound_payload(message=f"Yes {uuid.uuid4()}")).encode()
            headers = {"Content-Type": "application/json", **sign_webhook(body, secret)}
            return (
                await client.post("/webhooks/mobilemessage/incoming", content=body, headers=headers)
            ).status_code

        assert await wix(NEW) == 200 and await sms(NEW) == 200
        assert (await wix(OLD), await sms(OLD)) == ((200, 200) if old_accepted else (401, 401))
        assert await wix(FORGED) == 401 and await sms(FORGED) == 401


@pytest.mark.parametrize(("until", "old_accepted"), [(IN_GRACE, True), (EXPIRED, False)])
async def test_sendgrid_accepts_batches_signed_with_the_previous_key_only_in_its_grace(
    db: str, until: datetime, old_accepted: bool
) -> None:
    old, new, stranger = EventSigner(), EventSigner(), EventSigner()
    settings = _settings(
        db,
        until,
        sendgrid_webhook_public_key=new.public_key,
        sendgrid_webhook_public_key_previous=old.public_key,
    )
    async with AsyncTestClient(app=create_app(settings, prefect_api_url=PREFECT)) as client:

        async def post(signer: EventSigner) -> int:
            body = batch(event("open"))
            return (
                await client.post("/webhooks/sendgrid/events", content=body, headers=signer.headers(body))
            ).status_code

        assert await post(new) == 200
        assert await post(old) == (200 if old_accepted else 401)
        assert await post(stranger) == 401


@pytest.mark.parametrize(("until", "old_accepted"), [(IN_GRACE, True), (EXPIRED, False)])
async def test_tracked_links_signed_with_the_previous_session_secret_work_in_its_grace(
    db: str, until: datetime, old_accepted: bool
) -> None:
    """Links in emails already sent were signed with the old SESSION_SECRET."""
    settings = _settings(db, until, session_secret=NEW.decode(), session_secret_previous=OLD.decode())
    url = "https://avatarimaging.com.au/prep"
    async with AsyncTestClient(app=create_app(settings, prefect_api_url=PREFECT)) as client:
        fresh = await client.get(f"/t/c/{click_token(1, url, secret=NEW)}", follow_redirects=False)
        old = await client.get(f"/t/c/{click_token(1, url, secret=OLD)}", follow_redirects=False)
        forged = await client.get(f"/t/c/{click_token(1, url, secret=FORGED)}", follow_redirects=False)
    assert fresh.status_code == 302 and fresh.headers["location"] == url
    assert old.status_code == (302 if old_accepted else 404)
    assert forged.status_code == 404


def test_a_previous_secret_without_an_end_to_its_grace_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="SECRETS_PREVIOUS_UNTIL"):
        Settings(wix_webhook_secret="new", wix_webhook_secret_previous="old")
    with pytest.raises(ValidationError, match="timezone"):
        Settings(secrets_previous_until=datetime(2026, 12, 31))


def test_key_ages_are_recorded_and_a_key_past_the_limit_is_flagged(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_SECRET", "a-session-secret-value")
    monkeypatch.setenv("KEY_MAX_AGE_DAYS", "90")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        ages = {age.purpose: age for age in key_ages(settings)}
        encryption = key_id(settings.require_encryption_key())
        assert ages["encryption"].key_id == encryption and not ages["encryption"].too_old
        assert ages["SESSION_SECRET"].key_id == secret_id("a-session-secret-value")
        with session_scope() as session:  # the encryption key has been in use for 100 days
            session.execute(
                update(CryptoKey)
                .where(CryptoKey.purpose == "encryption")  # type: ignore[arg-type]
                .values(first_seen_at=datetime.now(UTC) - timedelta(days=100))
            )
        ages = {age.purpose: age for age in key_ages(settings)}
        assert ages["encryption"].too_old and ages["encryption"].age.days == 100
        assert not ages["SESSION_SECRET"].too_old

        status = CliRunner().invoke(cli, ["keys", "status"])
        assert status.exit_code == 1, status.output
        assert f"encryption                     {encryption}    100 days" in status.output
        assert "TOO OLD" in status.output
        assert "a-session-secret-value" not in status.output  # ids only, never a value
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(("until", "old_accepted"), [(IN_GRACE, True), (EXPIRED, False)])
def test_a_google_connect_ticket_signed_with_the_previous_session_secret_works_in_its_grace(
    monkeypatch: pytest.MonkeyPatch, until: datetime, old_accepted: bool
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from providers.google_oauth import connect_url, ticket_id

    try:
        monkeypatch.setenv("SESSION_SECRET", OLD.decode())
        get_settings.cache_clear()
        ticket = parse_qs(urlsplit(connect_url()).query)["ticket"][0]
        monkeypatch.setenv("SESSION_SECRET", NEW.decode())
        monkeypatch.setenv("SESSION_SECRET_PREVIOUS", OLD.decode())
        monkeypatch.setenv("SECRETS_PREVIOUS_UNTIL", until.isoformat())
        get_settings.cache_clear()
        assert (ticket_id(ticket) is not None) == old_accepted
        monkeypatch.setenv("SESSION_SECRET_PREVIOUS", FORGED.decode())
        get_settings.cache_clear()
        assert ticket_id(ticket) is None
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
