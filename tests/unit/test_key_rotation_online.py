"""Rotation is online: a gateway running with the new ring keeps accepting webhooks while `avatar-crm keys
rotate` re-seals the database underneath it, and every body it stored reads after the old key is removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import insert, select

from models import Contact, Settings, WebhookEvent, session_scope
from models.crypto import get_cipher, key_id
from models.db import get_engine
from models.keyring import count_by_key
from models.migrate import upgrade
from models.settings import get_settings
from providers.wix_simulator import sign_hmac, simple_event
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

KEY_A = os.environ["CRM_ENCRYPTION_KEY"]
KEY_B = "Zm9yIHRlc3RzIG9ubHk6IGEgc2Vjb25kIGtleSEhISE="
CLI = Path(sys.executable).parent / "avatar-crm"
SECRET = b"rotation-gateway-secret"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def _fill(url: str, n: int) -> None:
    cipher, now = get_cipher(), datetime.now(UTC)
    rows = [
        {
            "id": i,
            "first_name": f"Pat{i}",
            "last_name": f"Nguyen{i}",
            "phone": f"+614{i:08d}",
            "created_at": now,
        }
        for i in range(1, n + 1)
    ]
    for row in rows:
        row["phone_hash"] = cipher.blind_index("phone", str(row["phone"]))
        row["updated_at"] = now
    with session_scope(get_engine(url)) as session:
        session.execute(insert(Contact), rows)


async def test_the_gateway_keeps_accepting_webhooks_while_a_rotation_runs(
    fresh_database_url: str, keys: pytest.MonkeyPatch
) -> None:
    url = fresh_database_url
    upgrade(url)
    _fill(url, 20_000)
    keys.setenv("CRM_ENCRYPTION_KEYS", KEY_B)  # the gateway runs with the new ring [B, A]
    get_settings.cache_clear()
    settings = Settings(crm_database_url=url, wix_webhook_secret=SECRET.decode(), dispatch_poll_seconds=60.0)
    env = {**os.environ, "CRM_DATABASE_URL": url, "CRM_ENCRYPTION_KEY": KEY_A, "CRM_ENCRYPTION_KEYS": KEY_B}
    rotation = await asyncio.create_subprocess_exec(
        str(CLI), "keys", "rotate", "--batch-size", "200", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    answers: list[int] = []
    bodies: list[bytes] = []
    try:
        async with AsyncTestClient(
            app=create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
        ) as client:
            while rotation.returncode is None:
                body = simple_event("bookings/created", str(uuid.uuid4()), start=START)
                headers = {"X-Wix-Webhook-Signature": sign_hmac(body, SECRET)}
                answer = await client.post("/webhooks/wix/bookings", content=body, headers=headers)
                answers.append(answer.status_code)
                bodies.append(body)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rotation.wait(), 0.02)
    finally:
        if rotation.returncode is None:
            rotation.kill()
    assert await rotation.wait() == 0
    assert len(answers) > 5 and set(answers) == {200}  # accepted throughout the rotation
    sealed = {key for column in count_by_key(get_engine(url)) for key in column.by_key}
    assert sealed == {key_id(KEY_B.encode())}

    keys.delenv("CRM_ENCRYPTION_KEY")  # A removed from the ring, pinned as the blind-index key
    keys.setenv("CRM_BLIND_INDEX_KEY", KEY_A)
    get_settings.cache_clear()
    with session_scope(get_engine(url)) as session:
        stored = session.execute(select(WebhookEvent.body).order_by(WebhookEvent.id)).scalars().all()
        names = session.execute(select(Contact.first_name).where(Contact.id == 20_000)).scalar_one()
    assert stored == bodies and names == "Pat20000"
