"""Fixtures for tests that talk to the fake Google as the clinic's connected account (Gmail, Calendar).

OAuth itself is tested in test_google_oauth.py; here the connection row is inserted directly, with a refresh
token the fake issued and no access token, so the first API call also exercises the refresh path.
Import the fixtures into a test module: `from tests.google_env import fake_google_fixture, google_fixture`;
they are registered as `fake_google` and `google`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from models import GoogleConnection, get_settings, session_scope
from providers.google_api import SCOPES
from tests.fakes.google import FakeGoogle


@pytest.fixture(scope="module", name="fake_google")
def fake_google_fixture() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        yield fake


def connect(fake: FakeGoogle) -> None:
    """The clinic connected its Google account (what the OAuth callback stores)."""
    scope = " ".join(SCOPES)
    refresh_token, _ = fake.issue_tokens(scope)
    with session_scope() as session:
        session.add(
            GoogleConnection(account_email=fake.account_email, refresh_token=refresh_token, scopes=scope)
        )


def disconnect_all() -> None:
    with session_scope() as session:
        session.execute(delete(GoogleConnection))


@pytest.fixture(name="google")
def google_fixture(db: str, fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """Google configured, pointed at the fake, and connected; everything reset around the test."""
    fake_google.reset()
    for name, value in fake_google.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://crm.example.test")
    get_settings.cache_clear()
    disconnect_all()
    connect(fake_google)
    yield fake_google
    disconnect_all()
    get_settings.cache_clear()
