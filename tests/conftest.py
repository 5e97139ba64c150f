"""Test session setup: the environment is fixed before any settings are read.

`make test` runs everything on a fresh SQLite file; `.ci/run` runs the `db`-marked tests again with
`CRM_TEST_DATABASE_URL` pointing at PostgreSQL, where each session gets a database of its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.servers import drop_databases

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="avatar-crm-tests-"))

os.environ.update(
    {
        "CRM_DATA_DIR": str(_SESSION_DIR),
        "CRM_ENCRYPTION_KEY": "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=",
        "CLINIC_NAME": "Avatar Imaging",
        "CLINIC_TIMEZONE": "Australia/Brisbane",
        "DEFAULT_PHONE_REGION": "AU",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        # `--local` CLI runs start a temporary Prefect server; on a loaded 2-core machine 20 s was too short.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DISPATCH_POLL_SECONDS": "0.5",
        # Tests send refused requests by the hundred from one address; the rate limit's tests turn it on.
        "RATE_LIMIT_PER_SECOND": "0",
    }
)


_FIGURES: list[str] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a measured figure (events, acks, messages, drain time); printed at the end of the run."""

    def record(line: str) -> None:
        database = os.environ.get("CRM_TEST_DATABASE_URL", "sqlite").partition(":")[0] or "sqlite"
        _FIGURES.append(f"[{database}] {request.node.name}: {line}")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The CLI looks for `make up`'s Prefect on PREFECT_PORT: never a stack someone runs on this machine's 4200.
os.environ["PREFECT_PORT"] = str(_unused_port())
for _name in ("CRM_DATABASE_URL", "WIX_PUBLIC_KEY", "WIX_WEBHOOK_SECRET", "SMS_PROVIDER", "PREFECT_API_URL"):
    os.environ.pop(_name, None)


def _create_database() -> tuple[str, str | None]:
    """The session's database URL, and the PostgreSQL database to drop afterwards (if any)."""
    requested = os.environ.get("CRM_TEST_DATABASE_URL", "")
    if not requested.startswith("postgres"):
        return f"sqlite:///{_SESSION_DIR / 'crm.db'}", None
    from models.db import normalize_url

    server_url = make_url(normalize_url(requested))
    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.set(database=name).render_as_string(hide_password=False), name


_DATABASE_URL, _PG_DATABASE = _create_database()
os.environ["CRM_DATABASE_URL"] = _DATABASE_URL


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The migrated session database (migrations are part of what is tested)."""
    from models.migrate import upgrade

    upgrade(_DATABASE_URL)
    yield _DATABASE_URL
    from models.db import get_engine

    get_engine(_DATABASE_URL).dispose()
    if _PG_DATABASE:
        drop_databases(make_url(_DATABASE_URL).set(database="postgres"), [_PG_DATABASE])


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    """An empty CRM (tables truncated) for one test."""
    from models.db import get_engine

    engine = get_engine(database_url)
    with engine.begin() as connection:
        for table in (
            "stafftask",
            "deliveryreceipt",
            "consentevent",
            "suppression",
            "outboundmessageevent",
            "outboundmessage",
            "campaign",
            "contacttag",
            "auditlog",
            "booking",
            "contact",
            "webhookevent",
            "googleconnection",
            "oauthstate",
            "synccursor",
            "wixreconciliation",
            "opsalert",
            "webhookoutcome",
            "cryptokey",
            "staffmember",  # (the access audit is append-only: tests count its new rows)
        ):
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (fixed table names)
    yield database_url


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of the session's kind (SQLite file, or a new PostgreSQL database)."""
    if not _PG_DATABASE:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"crm_fresh_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(_DATABASE_URL).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from models.db import get_engine

        get_engine(url).dispose()
        drop_databases(admin_url, [name])


def is_postgres() -> bool:
    return _PG_DATABASE is not None


@pytest.fixture
def google_default_urls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Google's real endpoints, whatever another test pointed the process at (offline mocks check URLs)."""
    from models import get_settings

    for name in ("GOOGLE_API_URL", "GOOGLE_AUTH_URI", "GOOGLE_TOKEN_URI", "GOOGLE_REVOKE_URI"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def gateway_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """`caplog` for what the gateway writes. Starting a Litestar app applies its logging config, which
    replaces the root logger's handlers (caplog's among them), so capture at the gateway's own loggers."""
    loggers = [logging.getLogger(name) for name in ("webhook_gateway", "models.data_dir")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
        logger.propagate = False  # counted once, whether or not an app was started inside the test
    try:
        yield caplog
    finally:
        for logger in loggers:
            logger.removeHandler(caplog.handler)
            logger.propagate = True


CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Debian chromium driven by selenium, for the console's real-browser tests."""
    if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):
        reason = "chromium/chromium-driver are not installed (.ci/run installs them with apt-get)"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
