"""What the console tests share: the gateway app configured for the fake Google OIDC, staff, a patient
with a task, and signing a browser in through the fake."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlmodel import func, select

from access.staff import add
from models import (
    AccessAudit,
    Booking,
    BookingStatus,
    Contact,
    Settings,
    StaffAttention,
    StaffRole,
    StaffTask,
    StaffTaskKind,
    get_settings,
    session_scope,
)
from models.access_audit import Actor
from models.crm import name_index
from models.types import utcnow
from tests.fakes.google_oidc import FakeGoogleOIDC

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("CONSOLE_ARTIFACTS", ROOT / "tmp" / "artifacts" / "console"))
BASE = "http://testserver.local"  # the test client's origin (cookies are set for it)
DOMAIN = "clinic.example"
STAFF = {role: f"{role.value}@{DOMAIN}" for role in StaffRole}
AT_SHELL = Actor(email="os:test", role="cli")  # who changes the staff list for a test, as the CLI would
PHONE = "+61412345678"
REPLY = "Hi, can we move it to Thursday? Thanks, Jane"


def console_settings(database_url: str, fake: FakeGoogleOIDC, public_base_url: str, **extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        crm_database_url=database_url,
        dispatch_poll_seconds=60.0,
        google_client_id=fake.client_id,
        google_client_secret=fake.client_secret,
        google_oidc_issuer=fake.url,
        console_workspace_domains=DOMAIN,
        public_base_url=public_base_url,
        console_signin_per_minute=0,
        **extra,
    )


def add_staff() -> None:
    with session_scope() as session:
        for role, email in STAFF.items():
            add(session, email, role, actor=AT_SHELL)


def add_patient_task() -> int:
    """Jane, booked for tomorrow, texted asking to move it: the task SMS triage opens."""
    get_settings.cache_clear()
    with session_scope() as session:
        contact = Contact(first_name="Jane", last_name="Citizen", phone=PHONE)
        session.add(contact)
        session.flush()
        booking = Booking(
            wix_booking_id=f"wix-{contact.id}",
            contact_id=contact.id,
            status=BookingStatus.CONFIRMED,
            service_name="MRI - Knee",
            timezone="Australia/Brisbane",
            start_at=utcnow() + timedelta(days=1),
            staff_attention=StaffAttention.RESCHEDULE_REQUESTED,
        )
        booking.service_key = name_index("service", booking.service_name)
        session.add(booking)
        session.flush()
        task = StaffTask(  # as SMS triage opens it (tests/unit/console/test_console.py covers that path too)
            key=f"reply:test-{contact.id}",
            kind=StaffTaskKind.RESCHEDULE_REQUESTED,
            reply_text=REPLY,
            summary="read as reschedule (confidence 0.97)",
            contact_id=contact.id,
            booking_id=booking.id,
        )
        session.add(task)
        session.flush()
        return task.id  # type: ignore[return-value]


def audit_rows(action: str | None = None, after: int = 0) -> list[AccessAudit]:
    """Access-audit rows, oldest first; `after`: only those after that id (the audit is append-only and
    shared by the whole pytest session, and ids of emptied tables come back: count this test's rows)."""
    with session_scope() as session:
        query = select(AccessAudit).where(AccessAudit.id > after).order_by(AccessAudit.id)  # type: ignore[arg-type,operator]
        if action:
            query = query.where(AccessAudit.action == action)
        return list(session.exec(query).all())


def last_audit_id() -> int:
    with session_scope() as session:
        return int(session.exec(select(func.max(AccessAudit.id))).one() or 0)


def audit_count() -> int:
    with session_scope() as session:
        return int(session.exec(select(func.count()).select_from(AccessAudit)).one())


def sign_in(client: Any, fake: FakeGoogleOIDC, email: str, **person: Any) -> Any:
    """Walk the browser's part: start, Google's account chooser (the fake redirects back), the callback."""
    fake.sign_in_as(email, **person)
    start = client.get("/console/auth/start", follow_redirects=False)
    assert start.status_code == 302, start.text
    chooser = httpx.get(start.headers["location"], follow_redirects=False)
    assert chooser.status_code == 302, chooser.text
    back = urlsplit(chooser.headers["location"])
    return client.get(f"{back.path}?{back.query}", follow_redirects=False)


def signed_in(app: Any, fake: FakeGoogleOIDC, email: str) -> Any:
    """A test client of the app with `email` signed in; the caller closes it (`client.__exit__`)."""
    from litestar.testing import TestClient

    client = TestClient(app, base_url=BASE)
    client.__enter__()
    assert sign_in(client, fake, email).status_code == 303
    return client


def csrf(client: Any) -> dict[str, str]:
    """The CSRF header for the client's next form post (a login page visit sets the cookie if needed)."""
    if "avatar_crm_console_csrf" not in client.cookies:
        client.get("/console/login")
    return {"x-csrftoken": client.cookies["avatar_crm_console_csrf"]}


def replaced(element: Any) -> Any:
    """A wait condition: the page holding `element` has been replaced (a form posted, a link followed).
    Selenium's `staleness_of` knows only StaleElementReferenceException; Chromium at times answers a look at
    a node of the document being replaced with "Node with given id does not belong to the document" (a proving
    CI failed on it), which says the same."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def check(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return check
