"""A fake MobileMessage that the code under test really sends to, with the settings pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from flows.tasks import sms as sms_task
from models import get_settings
from tests.fakes.mobilemessage import FakeMobileMessage


@contextmanager
def mobilemessage(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Iterator[FakeMobileMessage]:
    """The fake, started, with SMS settings (and any `settings` given, by env name) pointing at it; the
    process's cached settings and SMS clients are dropped on the way in and out."""
    with FakeMobileMessage(username="clinic", password="secret") as fake:
        env = {
            "SMS_PROVIDER": "mobilemessage",
            "MOBILEMESSAGE_API_URL": fake.url,
            "MOBILEMESSAGE_API_USERNAME": "clinic",
            "MOBILEMESSAGE_API_PASSWORD": "secret",
            "MOBILEMESSAGE_FROM_NUMBER": "61400000010",
            **settings,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        sms_task._clients.clear()
        try:
            yield fake
        finally:
            sms_task._clients.clear()
            get_settings.cache_clear()
