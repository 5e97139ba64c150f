"""A receptionist in a real browser (Debian's chromium, driven by selenium): signs in through the fake Google,
finds the patient's "can we move it to Thursday" task, reads it, reveals the phone (one audit row), marks the
task done. The gateway is served by uvicorn on a loopback port. Screenshots go to tmp/artifacts/console (or
CONSOLE_ARTIFACTS); they hold only this test's made-up patient."""

from __future__ import annotations

import pytest

from models import StaffRole, get_settings
from providers.google_oidc import CACHE
from tests.console_env import (
    ARTIFACTS,
    PHONE,
    REPLY,
    STAFF,
    add_patient_task,
    add_staff,
    audit_rows,
    console_settings,
)
from tests.fakes.google_oidc import FakeGoogleOIDC
from tests.servers import ThreadedServer, free_port
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db


def test_a_receptionist_works_a_move_request_in_the_browser(db: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    add_staff()
    task_id = add_patient_task()
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    CACHE.clear()
    get_settings.cache_clear()
    with FakeGoogleOIDC() as fake:
        settings = console_settings(db, fake, gateway)
        fake.sign_in_as(STAFF[StaffRole.RECEPTION])
        app = create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
        with ThreadedServer(app, port=port):
            wait = WebDriverWait(driver, 20)
            driver.get(f"{gateway}/console/tasks")  # not signed in: to the sign-in page
            wait.until(until.presence_of_element_located((By.ID, "sign-in")))
            driver.save_screenshot(str(ARTIFACTS / "1-sign-in.png"))
            driver.find_element(By.ID, "sign-in").click()  # through the fake Google and back

            wait.until(until.url_to_be(f"{gateway}/console/tasks"))
            body = driver.find_element(By.TAG_NAME, "body").text
            assert "Jane Citizen" in body and "reschedule requested" in body and PHONE not in body
            driver.save_screenshot(str(ARTIFACTS / "2-task-queue.png"))

            driver.find_element(By.LINK_TEXT, "Open").click()
            wait.until(until.presence_of_element_located((By.ID, "reply")))
            assert driver.find_element(By.ID, "reply").text == REPLY
            driver.save_screenshot(str(ARTIFACTS / "3-task.png"))

            before = len(audit_rows())
            driver.find_element(By.ID, "reveal-phone").click()  # HTMX POST with the CSRF header
            wait.until(until.presence_of_element_located((By.ID, "patient-phone")))
            assert driver.find_element(By.ID, "patient-phone").text == PHONE
            new = audit_rows()[before:]
            assert [(r.action, r.actor) for r in new] == [
                ("patient.phone_revealed", STAFF[StaffRole.RECEPTION])
            ]
            driver.save_screenshot(str(ARTIFACTS / "4-phone-revealed.png"))

            before = len(audit_rows())
            driver.find_element(By.ID, "note").send_keys("Called; moved to Thursday 10:30")
            driver.find_element(By.ID, "done").click()
            wait.until(until.url_to_be(f"{gateway}/console/tasks"))
            assert "Nothing waiting" in driver.find_element(By.TAG_NAME, "body").text
            driver.save_screenshot(str(ARTIFACTS / "5-done.png"))
            done = audit_rows()[before:]
            assert [(r.action, r.detail.get("task")) for r in done] == [("staff_task.done", task_id)]
