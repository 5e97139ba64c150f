"""The console's unit tests share one set-up: a fake Google OIDC for the module, the staff of every role, and
the gateway app on those settings (its Prefect address leads nowhere: these pages must not need Prefect)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar

from models import Settings
from providers.google_oidc import CACHE
from tests.console_env import BASE, add_staff, console_settings
from tests.fakes.google_oidc import FakeGoogleOIDC
from webhook_gateway.app import create_app


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogleOIDC]:
    with FakeGoogleOIDC() as server:
        yield server


@pytest.fixture
def settings(db: str, fake: FakeGoogleOIDC) -> Settings:
    CACHE.clear()
    add_staff()
    return console_settings(db, fake, BASE)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, prefect_api_url="http://127.0.0.1:9/api")  # nothing listens there
