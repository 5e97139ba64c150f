"""An ops user in a real browser (Debian's chromium, driven by selenium) on a tablet-sized window: signs in
through the fake Google, filters the inbox to failed Wix events, replays one (the row goes back to the
dispatcher, one audit row), looks up a patient who texted STOP and tries to lift it, then to record her
consent to marketing texts: both refused, said why, the suppression still there and each attempt a denied
audit row. The gateway is served by uvicorn on a loopback port, with no Prefect behind it (the runs page says
so). Screenshots go to tmp/artifacts/console (or CONSOLE_ARTIFACTS); they hold only this test's made-up
patient."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import select

from messaging import consent
from messaging.contacts import ContactInput, upsert_contact
from models import (
    ConsentOrigin,
    InboxStatus,
    StaffRole,
    Suppression,
    WebhookEvent,
    get_settings,
    session_scope,
)
from providers.google_oidc import CACHE
from tests.console_env import ARTIFACTS, STAFF, add_staff, audit_rows, console_settings, replaced
from tests.fakes.google_oidc import FakeGoogleOIDC
from tests.servers import ThreadedServer, free_port
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db
PHONE = "+61412000333"
TABLET = (820, 1180)  # a front-desk tablet, portrait


def _event(source: str, status: InboxStatus, error: str | None = None) -> int:
    with session_scope() as session:
        row = WebhookEvent(
            source=source,
            dedupe_key=f"browser-{uuid.uuid4().hex}",
            event_type="wix.bookings.v2.booking_created" if source == "wix" else "inbound",
            body=b'{"contact": {"name": {"first": "Zelda"}}}',
            status=status,
            last_error=error,
            next_dispatch_at=None,
        )
        session.add(row)
        session.flush()
        return row.id  # type: ignore[return-value]


def _patient_who_texted_stop() -> int:
    with session_scope() as session:
        contact = upsert_contact(session, ContactInput("Pat", "Example", "pat@example.com", PHONE)).contact
        why = consent.ConsentSource("sms_reply", "sms-triage", "STOP", origin=ConsentOrigin.PATIENT_SMS)
        consent.withdraw(session, phone=PHONE, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=why)
        return contact.id  # type: ignore[return-value]


def _suppressions() -> int:
    with session_scope() as session:
        return len(session.exec(select(Suppression)).all())


def test_ops_filters_the_inbox_replays_a_failed_event_and_cannot_lift_a_stop(
    db: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    driver.set_window_size(*TABLET)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    add_staff()
    ops = STAFF[StaffRole.OPS]
    failed = _event("wix", InboxStatus.FAILED, "ValueError: unknown service 'MRI - Hip'")
    _event("wix", InboxStatus.PROCESSED)
    other = _event("mobilemessage", InboxStatus.FAILED, "KeyError: 'to'")
    contact_id = _patient_who_texted_stop()
    stopped = _suppressions()
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    CACHE.clear()
    get_settings.cache_clear()
    with FakeGoogleOIDC() as fake:
        settings = console_settings(db, fake, gateway)
        fake.sign_in_as(ops)
        app = create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
        with ThreadedServer(app, port=port):
            wait = WebDriverWait(driver, 20)
            driver.get(f"{gateway}/console/ops/events")  # not signed in: to the sign-in page
            wait.until(until.presence_of_element_located((By.ID, "sign-in")))
            driver.find_element(By.ID, "sign-in").click()
            wait.until(until.url_to_be(f"{gateway}/console/ops/events"))  # ops' first page

            Select(driver.find_element(By.ID, "status")).select_by_value("failed")
            Select(driver.find_element(By.ID, "source")).select_by_value("wix")
            driver.find_element(By.ID, "filter").click()
            wait.until(until.url_contains("status=failed"))
            rows = driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")
            assert [r.get_attribute("id") for r in rows] == [f"event-{failed}"]
            body = driver.find_element(By.TAG_NAME, "body").text
            assert "unknown service 'MRI - Hip'" in body and "Zelda" not in body
            assert not driver.find_elements(By.ID, f"event-{other}")
            driver.save_screenshot(str(ARTIFACTS / "ops-1-failed-wix-events.png"))

            before = len(audit_rows())
            row = driver.find_element(By.ID, f"event-{failed}")
            row.find_element(By.NAME, "reason").send_keys("service added in Wix")
            row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait.until(until.presence_of_element_located((By.ID, "replayed")))
            assert f"Event {failed} is queued" in driver.find_element(By.ID, "replayed").text
            with session_scope() as session:
                replayed = session.get(WebhookEvent, failed)
                assert replayed is not None and replayed.status == InboxStatus.RECEIVED
                assert replayed.redispatches == 1
            assert [(r.action, r.actor, r.reason) for r in audit_rows()[before:]] == [
                ("inbox_event.replayed", ops, "service added in Wix")
            ]
            driver.save_screenshot(str(ARTIFACTS / "ops-2-replayed.png"))

            driver.find_element(By.LINK_TEXT, "Consent").click()
            wait.until(until.presence_of_element_located((By.ID, "address")))
            driver.find_element(By.ID, "address").send_keys("0412 000 333")
            driver.find_element(By.ID, "look-up").click()
            wait.until(until.presence_of_element_located((By.ID, "patient-stop")))
            assert "texting START" in driver.find_element(By.ID, "patient-stop").text
            driver.save_screenshot(str(ARTIFACTS / "ops-3-patient-stop.png"))

            before = len(audit_rows())
            driver.find_element(By.ID, "lift-note").send_keys("she asked at the desk for texts again")
            driver.find_element(By.ID, "lift").click()
            wait.until(until.presence_of_element_located((By.ID, "error")))
            error = driver.find_element(By.ID, "error").text
            assert "refused, nothing changed" in error and "only the patient can opt back in" in error
            assert _suppressions() == stopped
            assert [(r.action, r.outcome, r.subject) for r in audit_rows()[before:]] == [
                ("suppression.lifted", "denied", f"contact:{contact_id}")
            ]
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(ARTIFACTS / "ops-4-stop-refused.png"))
            history = driver.find_element(By.ID, "history")
            assert "refused" in history.text and ops in history.text  # the attempt, in the ledger
            driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, "lift-form"))
            driver.save_screenshot(str(ARTIFACTS / "ops-4b-forms-and-history.png"))

            before = len(audit_rows())  # nor may staff record her consent to marketing texts
            shown = driver.find_element(By.ID, "error")  # the lift's refusal, until the next page replaces it
            driver.find_element(By.ID, "marketing-note").send_keys("ticked the SMS offers box")
            driver.find_element(By.ID, "marketing-grant").click()
            wait.until(replaced(shown))
            wait.until(until.presence_of_element_located((By.ID, "error")))
            assert "refused, nothing changed" in driver.find_element(By.ID, "error").text
            assert _suppressions() == stopped
            assert [(r.action, r.outcome) for r in audit_rows()[before:]] == [("consent.granted", "denied")]
            driver.execute_script(
                "arguments[0].scrollIntoView()", driver.find_element(By.ID, "marketing-form")
            )
            driver.save_screenshot(str(ARTIFACTS / "ops-4c-marketing-consent-refused.png"))

            driver.find_element(By.LINK_TEXT, "Runs").click()
            wait.until(until.presence_of_element_located((By.ID, "prefect-unreachable")))
            driver.save_screenshot(str(ARTIFACTS / "ops-5-runs-prefect-down.png"))
            driver.find_element(By.LINK_TEXT, "KPIs").click()
            wait.until(until.presence_of_element_located((By.ID, "targets")))
            driver.save_screenshot(str(ARTIFACTS / "ops-6-kpis.png"))
