"""An admin in a real browser (Debian's chromium, driven by selenium) on a tablet-sized window: signs in
through the fake Google, adds a receptionist, makes them a marketer, removes them (one audit row each, with
the reason typed), reads the keys page, which shows no secret, and the connected Google account. The
gateway is served by uvicorn on a loopback port. Screenshots go to tmp/artifacts/console (or
CONSOLE_ARTIFACTS); they hold no patient."""

from __future__ import annotations

import pytest
from sqlmodel import select

from models import StaffMember, StaffRole, get_settings, session_scope
from providers.google_oidc import CACHE
from tests.console_env import ARTIFACTS, STAFF, add_staff, audit_rows, console_settings, replaced
from tests.fakes.google import FakeGoogle
from tests.fakes.google_oidc import FakeGoogleOIDC
from tests.google_env import fake_google_fixture, google_fixture  # noqa: F401 (fixtures)
from tests.servers import ThreadedServer, free_port
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db
ADMIN = STAFF[StaffRole.ADMIN]
HIRE = "new.receptionist@clinic.example"
SENDGRID_KEY = "SG.browser-test-sendgrid-key-value"


def test_an_admin_adds_promotes_and_removes_a_member_and_reads_the_keys(
    db: str, browser: object, google: FakeGoogle
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    driver.set_window_size(820, 1180)  # a front-desk tablet, portrait
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    add_staff()
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    CACHE.clear()
    get_settings.cache_clear()

    def submit(button_id: str) -> str:
        """Click a form's button and wait for the page the redirect lands on; its one-time notice."""
        old = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.ID, button_id).click()
        wait.until(replaced(old))
        return str(wait.until(until.presence_of_element_located((By.ID, "flash"))).text)

    def hire() -> StaffMember:
        with session_scope() as session:
            found = session.exec(select(StaffMember).where(StaffMember.email == HIRE)).one()
            session.expunge(found)
            return found

    with FakeGoogleOIDC() as fake:
        settings = console_settings(
            db, fake, gateway, sendgrid_api_key=SENDGRID_KEY, sendgrid_from_email="news@clinic.example"
        )
        fake.sign_in_as(ADMIN)
        app = create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
        with ThreadedServer(app, port=port):
            wait = WebDriverWait(driver, 20)
            driver.get(f"{gateway}/console/admin/staff")  # not signed in: to the sign-in page
            wait.until(until.presence_of_element_located((By.ID, "sign-in"))).click()
            wait.until(until.url_to_be(f"{gateway}/console/tasks"))  # an admin's first page
            driver.find_element(By.LINK_TEXT, "Admin").click()
            wait.until(until.url_to_be(f"{gateway}/console/admin/staff"))
            assert ADMIN in driver.find_element(By.ID, "staff").text

            start = len(audit_rows())
            driver.find_element(By.ID, "add-email").send_keys(HIRE)
            Select(driver.find_element(By.ID, "add-role")).select_by_value("reception")
            driver.find_element(By.ID, "add-reason").send_keys("New front-desk hire")
            assert submit("add-submit") == f"{HIRE} added as reception."
            member = hire()
            row = driver.find_element(By.ID, f"member-{member.id}")
            assert "reception" in row.text and "active" in row.text
            driver.save_screenshot(str(ARTIFACTS / "admin-1-added.png"))

            row.find_element(By.TAG_NAME, "summary").click()  # "Change…" opens the row's form
            Select(driver.find_element(By.ID, f"role-{member.id}")).select_by_value("marketer")
            driver.find_element(By.ID, f"reason-{member.id}").send_keys("Moving to marketing")
            driver.save_screenshot(str(ARTIFACTS / "admin-2-changing.png"))
            assert submit(f"change-role-{member.id}") == f"{HIRE} is now marketer."
            assert hire().role == "marketer"

            driver.find_element(By.ID, f"member-{member.id}").find_element(By.TAG_NAME, "summary").click()
            driver.find_element(By.ID, f"reason-{member.id}").send_keys("Left the clinic")
            assert submit(f"remove-{member.id}").startswith(f"{HIRE} removed")
            assert hire().removed_at is not None
            assert "removed" in driver.find_element(By.ID, f"member-{member.id}").text
            driver.save_screenshot(str(ARTIFACTS / "admin-3-removed.png"))

            changes = [(r.action, r.actor, r.subject, r.reason) for r in audit_rows()[start:]]
            assert changes == [
                ("staff.added", ADMIN, f"staff:{member.id}", "New front-desk hire"),
                ("staff.role_changed", ADMIN, f"staff:{member.id}", "Moving to marketing"),
                ("staff.removed", ADMIN, f"staff:{member.id}", "Left the clinic"),
            ]

            driver.find_element(By.LINK_TEXT, "Keys and secrets").click()
            wait.until(until.presence_of_element_located((By.ID, "active-key")))
            body = driver.find_element(By.TAG_NAME, "body").text
            assert "SendGrid" in body and SENDGRID_KEY not in driver.page_source
            driver.save_screenshot(str(ARTIFACTS / "admin-4-keys.png"))
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            driver.save_screenshot(str(ARTIFACTS / "admin-4-keys-end.png"))

            driver.find_element(By.LINK_TEXT, "Google").click()  # connected (tests/google_env.py)
            state = wait.until(until.presence_of_element_located((By.ID, "google-state")))
            assert (
                state.text == "connected"
                and google.account_email in driver.find_element(By.ID, "google-account").text
            )
            driver.save_screenshot(str(ARTIFACTS / "admin-5-google.png"))
