"""A marketer in a real browser (Debian's chromium, driven by selenium) against the whole rig: signs in
through the fake Google, builds an SMS campaign on the form, sees the live count and the preview, launches
it, and watches the `campaign-send` run (the real Prefect server and runner) finish at the fake
MobileMessage; opening the audit log is refused. Screenshots go to tmp/artifacts/console (or
CONSOLE_ARTIFACTS); they hold only this test's made-up patients."""

from __future__ import annotations

import re
import time

import pytest
from sqlmodel import select

from models import AccessAudit, StaffRole, get_settings, session_scope
from providers.google_oidc import CACHE
from tests.campaign_data import seed
from tests.console_env import ARTIFACTS, STAFF, add_staff, console_settings
from tests.fakes.google_oidc import FakeGoogleOIDC
from tests.fakes.mobilemessage import FakeMobileMessage
from tests.integration.conftest import Rig
from tests.servers import ThreadedServer, free_port
from webhook_gateway.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.db]


def test_a_marketer_builds_previews_and_launches_an_sms_campaign_and_watches_it_finish(
    rig: Rig, sms: FakeMobileMessage, db: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    add_staff()
    with session_scope() as session:  # the rig's database is shared: count only this test's audit rows
        before = max(session.exec(select(AccessAudit.id)).all(), default=0) or 0
    patients = seed(4, channel="sms")
    seed(2, channel="sms", consent=False, offset=10)  # no SMS marketing consent: left out, and said so
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    CACHE.clear()
    get_settings.cache_clear()
    with FakeGoogleOIDC() as fake:
        settings = console_settings(db, fake, gateway)
        fake.sign_in_as(STAFF[StaffRole.MARKETER])
        app = create_app(settings, prefect_api_url=rig.prefect_api_url)
        with ThreadedServer(app, port=port):
            wait = WebDriverWait(driver, 30)
            driver.get(f"{gateway}/console/campaigns/new")
            wait.until(until.presence_of_element_located((By.ID, "sign-in")))
            driver.find_element(By.ID, "sign-in").click()
            wait.until(until.url_contains("/console/campaigns"))
            driver.get(f"{gateway}/console/campaigns/new?channel=sms")
            wait.until(until.presence_of_element_located((By.ID, "v0_body")))
            assert not driver.find_elements(By.ID, "v0_subject")  # an SMS has no subject
            driver.find_element(By.ID, "name").send_keys("Saturday MRI")
            driver.find_element(By.ID, "v0_body").send_keys(
                "Hi {{ first_name }}, MRI is now open on Saturdays."
            )
            driver.find_element(By.ID, "preview-button").click()  # HTMX: count and preview, nothing sent
            wait.until(until.presence_of_element_located((By.ID, "recipients")))
            assert driver.find_element(By.ID, "recipients").text == "4"
            page = driver.find_element(By.TAG_NAME, "body").text
            assert "Hi Alex, MRI is now open on Saturdays." in page
            assert re.search(r"left out: no sms marketing consent\s+−2", page, re.IGNORECASE), page
            assert "Pat0" not in page and "+6141" not in page  # counts only: no patient details
            driver.save_screenshot(str(ARTIFACTS / "6-campaign-preview.png"))
            assert sms.sent == []

            driver.find_element(By.ID, "launch").click()
            # the campaign's own page: not the form's ("/console/campaigns/new?channel=sms" matched, and a
            # proving CI on PostgreSQL read its slug as "new" before the launch had landed)
            campaign_page = r"/console/campaigns/(?!new(?:[/?]|$))([a-z0-9-]+)"
            wait.until(until.url_matches(campaign_page))
            slug = re.search(campaign_page, driver.current_url).group(1)  # type: ignore[union-attr]
            deadline = time.monotonic() + 120
            while driver.find_element(By.ID, "status").text != "sent":
                assert time.monotonic() < deadline, driver.find_element(By.TAG_NAME, "body").text
                time.sleep(1)
                driver.refresh()
            results = driver.find_element(By.ID, "results").text
            driver.save_screenshot(str(ARTIFACTS / "7-campaign-sent.png"))

            driver.get(f"{gateway}/console/audit")
            refused = driver.find_element(By.TAG_NAME, "body").text
            driver.save_screenshot(str(ARTIFACTS / "8-marketer-audit-refused.png"))

    texted = sorted(m["to"] for m in sms.sent)
    assert len(texted) == 4 and {re.sub(r"\D", "", t)[-7:] for t in texted} == {a[-7:] for a in patients}
    assert all("MRI is now open on Saturdays" in m["message"] for m in sms.sent)
    assert re.search(r"\bA 4\b", results), results  # variant A: 4 queued
    assert "403" in refused or "not allowed" in refused.lower(), refused
    with session_scope() as session:
        rows = session.exec(
            select(AccessAudit).where(AccessAudit.actor == STAFF[StaffRole.MARKETER], AccessAudit.id > before)
        ).all()
        actions = [(r.action, r.outcome, r.subject or r.detail.get("path")) for r in rows]
    assert ("campaign.launched", "allowed", f"campaign:{slug}") in actions
    assert [a for a in actions if a[1] == "denied"] == [("console.denied", "denied", "/console/audit")]
