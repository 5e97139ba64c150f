"""The integration rig: a real Prefect server, a real flow runner process, a real gateway on a loopback port,
fakes speaking the providers' real APIs (MobileMessage; SendGrid checking every request against its OpenAPI
description; Google's OAuth, Gmail and Calendar), and the session database. Started once per session.

Google is configured for the runner but connected only by the tests that insert a connection
(`tests.google_env.connect`): without one, booking emails wait in the outbox as they would in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from models import get_settings
from providers.wix_simulator import WixKeys
from tests.fakes.google import FakeGoogle
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.fakes.sendgrid import FakeSendGrid
from tests.servers import ThreadedServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SMS_USERNAME, SMS_PASSWORD = "avatar-clinic", "mm-test-password"
WIX_SECRET = "wix-hmac-test-secret"
MM_WEBHOOK_SECRET = "mm-webhook-test-secret"
SENDER = "61400000010"
SENDGRID_KEY = "SG.integration-key"
UNSUBSCRIBE_GROUP = 4321
OPS_ALERT_PHONE = "0491 570 156"  # ACMA's range for fiction: nobody's, and no patient's in the tests
OPS_ALERT_EMAIL = "on-call@avatar-imaging.example"
SWEEP_ALERT_MINUTES = 3  # ALERT_REMINDER_SWEEP_MINUTES in the rig

pytestmark = pytest.mark.integration


@dataclass
class Rig:
    prefect_api_url: str
    sms: FakeMobileMessage
    wix_keys: WixKeys
    sendgrid: FakeSendGrid
    google: FakeGoogle
    environment: dict[str, str]
    """The provider settings the runner was started with; each test using the rig sees them too."""


@pytest.fixture(scope="session")
def sms_fake() -> Iterator[FakeMobileMessage]:
    fake = FakeMobileMessage(username=SMS_USERNAME, password=SMS_PASSWORD)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def wix_keys() -> WixKeys:
    return WixKeys()


@pytest.fixture(scope="session")
def sendgrid_fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(SENDGRID_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def google_fake() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        yield fake


@pytest.fixture(scope="session")
def rig(
    database_url: str,
    sms_fake: FakeMobileMessage,
    wix_keys: WixKeys,
    sendgrid_fake: FakeSendGrid,
    google_fake: FakeGoogle,
) -> Iterator[Rig]:
    environment = {
        **google_fake.env(),
        "PUBLIC_BASE_URL": "https://crm.example.test",
        "EMAIL_CAMPAIGN_PROVIDER": "sendgrid",
        "SENDGRID_API_KEY": SENDGRID_KEY,
        "SENDGRID_API_URL": sendgrid_fake.url,
        "SENDGRID_FROM_EMAIL": "news@avatar-imaging.example",
        "SENDGRID_UNSUBSCRIBE_GROUP_ID": str(UNSUBSCRIBE_GROUP),
        "CLINIC_ADDRESS": "1 Example St, Brisbane QLD 4000",
        "SMS_PROVIDER": "mobilemessage",
        "MOBILEMESSAGE_API_URL": sms_fake.url,
        "MOBILEMESSAGE_API_USERNAME": SMS_USERNAME,
        "MOBILEMESSAGE_API_PASSWORD": SMS_PASSWORD,
        "MOBILEMESSAGE_FROM_NUMBER": SENDER,
        "WIX_PUBLIC_KEY": wix_keys.public_pem,
        "WIX_WEBHOOK_SECRET": WIX_SECRET,
        "MOBILEMESSAGE_WEBHOOK_SECRET": MM_WEBHOOK_SECRET,
        "OPS_ALERT_PHONE": OPS_ALERT_PHONE,
        "OPS_ALERT_EMAIL": OPS_ALERT_EMAIL,
        # Short enough for a test to wait out (test_ops_alerts.py), long enough that the rig's every-minute
        # sweep never seems stale on a loaded machine.
        "ALERT_REMINDER_SWEEP_MINUTES": str(SWEEP_ALERT_MINUTES),
        # Whatever the hour the suite runs at: an SMS campaign launched at 05:00 clinic time would otherwise
        # wait for 08:00 (quiet hours are tested in tests/unit/test_campaign_send.py and test_reminders.py).
        "SMS_QUIET_HOURS": "",
    }

    with prefect_test_harness(server_startup_timeout=120):
        api_url = PREFECT_API_URL.value()
        env = {
            **os.environ,
            **environment,
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(Path(os.environ["CRM_DATA_DIR"]) / "runner"),
        }
        runner = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"], env=env, cwd=REPO_ROOT, start_new_session=True
        )
        try:
            _wait_for_deployments(
                api_url,
                runner,
                [
                    "booking-intake/booking-intake",
                    "wix-reconcile/wix-reconcile",
                    "reminder-sweep/reminder-sweep",
                    "sms-triage/sms-triage",
                    "delivery-receipts/delivery-receipts",
                    "email-events/email-events",
                    "google-contacts-import/google-contacts-import",
                    "campaign-send/campaign-send",
                    "campaign-winner/campaign-winner",
                    "retention/retention",
                    "ops-alerts/ops-alerts",
                ],
            )
            alerts_off(api_url)
            yield Rig(api_url, sms_fake, wix_keys, sendgrid_fake, google_fake, environment)
        finally:
            os.killpg(runner.pid, signal.SIGTERM)
            try:
                runner.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)


def alerts_off(api_url: str) -> None:
    """Ops alerts stay quiet in the rig unless a test turns them on (`tests/integration/test_ops_alerts.py`):
    other tests fail runs and disconnect Google on purpose, and must not find alert notices in their outbox.
    The runner installs the alert automations just after registering the deployments: wait for them, pause
    them, and stop the minute schedule of `ops-alerts` (its runs already scheduled are deleted)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL as API_URL
    from prefect.settings import temporary_settings

    from deployments.automations import AUTOMATIONS

    with temporary_settings({API_URL: api_url}), get_client(sync_client=True) as client:
        deadline = time.monotonic() + 60
        for name in AUTOMATIONS:
            while not (found := client.read_automations_by_name(name)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the runner never installed the automation {name!r}")
                time.sleep(0.5)
            for automation in found:
                client.pause_automation(automation.id)
        deployment = client.read_deployment_by_name("ops-alerts/ops-alerts")
        for schedule in deployment.schedules:
            client.update_deployment_schedule(deployment.id, schedule.id, active=False)
        scheduled = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )
        for run in scheduled:
            client.delete_flow_run(run.id)


def _wait_for_deployments(api_url: str, runner: subprocess.Popen[bytes], names: list[str]) -> None:
    deadline = time.monotonic() + 90
    pending = set(names)
    while pending:
        if runner.poll() is not None:
            raise RuntimeError(f"flow runner exited with {runner.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"deployments never appeared: {pending}")
        for name in list(pending):
            flow_name, deployment_name = name.split("/")
            response = httpx.get(f"{api_url}/deployments/name/{flow_name}/{deployment_name}", timeout=5)
            if response.status_code == 200:
                pending.discard(name)
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def rig_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The rig's provider settings for one test that uses the rig, restored after it, so that no test (unit
    or integration, in any order) inherits another's environment or cached settings."""
    if "rig" not in request.fixturenames:
        yield
        return
    rig: Rig = request.getfixturevalue("rig")
    for name, value in rig.environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def sms(rig: Rig, db: str) -> FakeMobileMessage:
    """The fake provider, emptied for this test (and the CRM database emptied too, and the other fakes)."""
    rig.sms.reset()
    rig.sendgrid.reset()
    rig.google.reset()
    return rig.sms


@pytest.fixture
def gateway_url(rig: Rig, sms: FakeMobileMessage) -> Iterator[str]:
    """A gateway for this test only, so no other test's dispatcher touches its inbox rows."""
    from webhook_gateway.app import create_app

    with ThreadedServer(create_app(prefect_api_url=rig.prefect_api_url)) as gateway:
        yield gateway.url
