"""The clinic console through Litestar's TestClient, signing in through a fake Google OIDC on a real port:
who gets in (and every refusal audited), sessions (renewed id, idle timeout, cookie flags), CSRF, the route x
role matrix over every console route, and the reception task: reply read, phone revealed (one audit row
each), done with a note, the audit chain intact."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlmodel import select

from access.staff import remove
from console.roles import PUBLIC, ROUTES
from models import Booking, Settings, StaffRole, StaffTask, session_scope
from models.access_audit import verify
from providers.google_oidc import CACHE
from tests.console_env import (
    AT_SHELL,
    BASE,
    PHONE,
    REPLY,
    STAFF,
    add_patient_task,
    audit_count,
    audit_rows,
    console_settings,
    csrf,
    sign_in,
)
from tests.fakes.google_oidc import FakeGoogleOIDC
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def test_sign_in_renews_the_session_and_is_audited(
    client: TestClient[Litestar], fake: FakeGoogleOIDC
) -> None:
    before = audit_count()
    start = client.get("/console/auth/start", follow_redirects=False)
    pre_auth = client.cookies["avatar_crm_console"]
    query = fake.authorization_requests
    assert start.status_code == 302 and start.headers["location"].startswith(fake.url + "/o/oauth2/v2/auth?")
    cookie = start.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Path=/console" in cookie
    )
    assert "Secure" not in cookie  # plain http here; https PUBLIC_BASE_URL sets it (test below)
    fake.sign_in_as(STAFF[StaffRole.RECEPTION])
    back = urlsplit(httpx.get(start.headers["location"], follow_redirects=False).headers["location"])
    done = client.get(f"{back.path}?{back.query}", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/console"
    assert client.cookies["avatar_crm_console"] != pre_auth  # a new id at sign-in
    sent = query[-1]
    assert (
        sent["code_challenge_method"] == "S256"
        and sent["nonce"]
        and sent["state"]
        and sent["hd"] == "clinic.example"
    )
    assert fake.token_requests[-1]["code_verifier"]
    page = client.get("/console/tasks")
    assert page.status_code == 200 and "reception@clinic.example" in page.text
    rows = audit_rows("console.sign_in")[-1:]
    assert audit_count() == before + 1
    assert (rows[0].actor, rows[0].role, rows[0].outcome, rows[0].client_address) == (
        "reception@clinic.example",
        "reception",
        "allowed",
        "testclient",
    )
    # The pre-sign-in id is worthless now.
    stale = TestClient(client.app, base_url=BASE)
    stale.cookies.set("avatar_crm_console", pre_auth, path="/console")
    assert stale.get("/console/tasks", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("person", "spoil", "why"),
    [
        ({"hd": "gmail.example"}, None, "Workspace"),
        ({"hd": None}, None, "Workspace"),
        ({"email_verified": False}, None, "verified"),
        ({"email": "stranger@clinic.example"}, None, "staff list"),
        ({}, "expired", "expired"),
        ({}, "wrong-nonce", "nonce"),
        ({}, "wrong-audience", "not valid"),
        ({}, "foreign-key", "not valid"),
    ],
)
def test_sign_in_refused(
    client: TestClient[Litestar], fake: FakeGoogleOIDC, person: dict[str, Any], spoil: str | None, why: str
) -> None:
    email = person.pop("email", STAFF[StaffRole.RECEPTION])
    before = audit_count()
    fake.sign_in_as(email, **person)
    if spoil:
        fake.spoil(spoil)
    start = client.get("/console/auth/start", follow_redirects=False)
    back = urlsplit(httpx.get(start.headers["location"], follow_redirects=False).headers["location"])
    refused = client.get(f"{back.path}?{back.query}", follow_redirects=False)
    assert refused.status_code == 403 and why in refused.text
    assert (
        client.get("/console/tasks", follow_redirects=False).headers["location"].startswith("/console/login")
    )
    rows = audit_rows("console.sign_in")
    assert audit_count() == before + 1 and rows[-1].outcome == "denied" and why in (rows[-1].reason or "")


def test_removed_staff_cannot_sign_in_and_are_signed_out(
    client: TestClient[Litestar], fake: FakeGoogleOIDC
) -> None:
    assert sign_in(client, fake, STAFF[StaffRole.RECEPTION]).status_code == 303
    assert client.get("/console/tasks").status_code == 200
    with session_scope() as session:
        remove(session, STAFF[StaffRole.RECEPTION], actor=AT_SHELL)
    assert client.get("/console/tasks", follow_redirects=False).status_code == 303  # out at the next request
    assert sign_in(client, fake, STAFF[StaffRole.RECEPTION]).status_code == 403


def test_state_from_another_browser_is_refused(client: TestClient[Litestar], fake: FakeGoogleOIDC) -> None:
    fake.sign_in_as(STAFF[StaffRole.RECEPTION])
    start = client.get("/console/auth/start", follow_redirects=False)
    back = urlsplit(httpx.get(start.headers["location"], follow_redirects=False).headers["location"])
    forged = re.sub(r"state=[^&]+", "state=forged", back.query)
    refused = client.get(f"{back.path}?{forged}", follow_redirects=False)
    assert refused.status_code == 403 and "state" in refused.text
    # A callback arriving in a browser that never started a sign-in (login CSRF): refused too.
    other = TestClient(client.app, base_url=BASE)
    assert other.get(f"{back.path}?{back.query}", follow_redirects=False).status_code == 403


def test_forms_need_the_csrf_token(client: TestClient[Litestar], fake: FakeGoogleOIDC) -> None:
    sign_in(client, fake, STAFF[StaffRole.RECEPTION])
    assert client.post("/console/logout", follow_redirects=False).status_code == 403
    assert client.get("/console/tasks").status_code == 200  # still signed in
    out = client.post("/console/logout", headers=csrf(client), follow_redirects=False)
    assert out.status_code == 303
    assert audit_rows("console.sign_out")[-1].actor == STAFF[StaffRole.RECEPTION]
    assert client.get("/console/tasks", follow_redirects=False).status_code == 303


def test_webhooks_need_no_csrf_token(client: TestClient[Litestar]) -> None:
    """The provider routes are outside the console's middleware: their own verification answers."""
    answer = client.post(
        "/webhooks/wix/bookings", content=b"not a jwt", headers={"content-type": "text/plain"}
    )
    assert answer.status_code in {400, 401} and "csrf" not in answer.text.lower()


def test_sign_in_is_rate_limited(db: str, fake: FakeGoogleOIDC) -> None:
    CACHE.clear()
    settings = console_settings(db, fake, BASE)
    settings.console_signin_per_minute = 2
    with TestClient(create_app(settings, prefect_api_url="http://127.0.0.1:9/api"), base_url=BASE) as client:
        answers = [client.get("/console/auth/start", follow_redirects=False).status_code for _ in range(3)]
        assert answers == [302, 302, 429]
        assert client.get("/console/login").status_code == 200  # the page itself is not counted


def test_absolute_timeout_signs_out_however_active(
    client: TestClient[Litestar], fake: FakeGoogleOIDC, settings: Settings
) -> None:
    sign_in(client, fake, STAFF[StaffRole.RECEPTION])
    settings.console_session_absolute_seconds = 2
    for _ in range(3):
        assert client.get("/console/tasks").status_code == 200
        time.sleep(0.5)
    time.sleep(1.0)
    assert (
        client.get("/console/tasks", follow_redirects=False).headers["location"].startswith("/console/login")
    )


def test_idle_timeout_signs_out(
    client: TestClient[Litestar], fake: FakeGoogleOIDC, settings: Settings
) -> None:
    sign_in(client, fake, STAFF[StaffRole.RECEPTION])
    assert client.get("/console/tasks").status_code == 200
    settings.console_session_idle_seconds = 1
    time.sleep(1.2)
    assert (
        client.get("/console/tasks", follow_redirects=False).headers["location"].startswith("/console/login")
    )


def test_secure_cookie_over_https(db: str, fake: FakeGoogleOIDC) -> None:
    CACHE.clear()
    app = create_app(
        console_settings(db, fake, "https://clinic.example"), prefect_api_url="http://127.0.0.1:9/api"
    )
    with TestClient(app, base_url="https://testserver.local") as client:
        start = client.get("/console/auth/start", follow_redirects=False)
        assert "Secure" in start.headers["set-cookie"]


def _console_routes(app: Litestar) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if not route.path.startswith("/console"):
            continue
        for handler in route.route_handlers:  # type: ignore[attr-defined]
            for method in handler.http_methods:
                if method in {"OPTIONS"}:
                    continue
                found.append((method, route.path))
    return sorted(set(found), key=lambda r: (r[1] == "/console/logout", r))


def test_every_console_route_has_a_role_entry(app: Litestar) -> None:
    routes = set(_console_routes(app))
    assert routes == set(ROUTES), (
        f"routes without a role entry: {routes - set(ROUTES)}; stale entries: {set(ROUTES) - routes}"
    )


def test_route_role_matrix(app: Litestar, fake: FakeGoogleOIDC) -> None:
    task_id = add_patient_task()
    routes = _console_routes(app)
    assert routes and ("GET", "/console/audit") in routes
    for who in [None, *StaffRole]:
        with TestClient(app, base_url=BASE) as client:
            if who is not None:
                assert sign_in(client, fake, STAFF[who]).status_code == 303
            for method, template in routes:
                path = template.replace("{task_id:int}", str(task_id)).replace(
                    "{file_path:path}", "console.css"
                )
                kwargs: dict[str, Any] = {"headers": csrf(client), "follow_redirects": False}
                if template.endswith("/done"):
                    kwargs["data"] = {"note": "called"}
                answer = client.request(method, path, **kwargs)
                roles = ROUTES[(method, template)]
                label = f"{who} {method} {template} -> {answer.status_code} {answer.text[:300]}"
                if roles == PUBLIC:
                    assert (
                        answer.status_code != 401
                        and "/console/login?reason=sign-in" not in answer.headers.get("location", "")
                    ), label
                elif who is None:
                    if method == "GET":
                        assert answer.status_code == 303, label
                        assert answer.headers["location"].startswith("/console/login"), label
                    else:
                        assert answer.status_code == 401, label
                elif who in roles:
                    assert answer.status_code not in {401, 403} and answer.status_code < 500, label
                else:
                    assert answer.status_code == 403, label
    denied = [r for r in audit_rows("console.denied")]
    assert any(r.role == "marketer" and r.detail.get("path") == "/console/audit" for r in denied)


def test_reception_reads_the_reply_reveals_the_phone_and_closes_the_task(
    client: TestClient[Litestar], fake: FakeGoogleOIDC
) -> None:
    task_id = add_patient_task()
    sign_in(client, fake, STAFF[StaffRole.RECEPTION])
    queue = client.get("/console/tasks")
    assert "Jane Citizen" in queue.text and "reschedule requested" in queue.text
    assert PHONE not in queue.text and REPLY not in queue.text  # the queue shows neither
    bookings = client.get("/console/bookings")
    assert (
        "Tomorrow" in bookings.text
        and "Jane Citizen" in bookings.text
        and "reschedule requested" in bookings.text
    )
    assert PHONE not in bookings.text

    before = audit_count()
    page = client.get(f"/console/tasks/{task_id}")
    assert REPLY in page.text and PHONE not in page.text
    assert [r.action for r in audit_rows()[before:]] == ["patient.reply_read"]

    before = audit_count()
    revealed = client.post(
        f"/console/tasks/{task_id}/reveal-phone", headers={**csrf(client), "HX-Request": "true"}
    )
    assert revealed.status_code == 200 and PHONE in revealed.text and "<html" not in revealed.text
    new = audit_rows()[before:]
    assert [(r.action, r.actor, r.role) for r in new] == [
        ("patient.phone_revealed", STAFF[StaffRole.RECEPTION], "reception")
    ]
    with session_scope() as session:
        task = session.get(StaffTask, task_id)
        assert task is not None
        assert new[0].subject == f"contact:{task.contact_id}" and PHONE not in str(new[0].detail)

    assert (
        client.post(f"/console/tasks/{task_id}/done", headers=csrf(client), data={"note": " "}).status_code
        == 400
    )
    before = audit_count()
    done = client.post(
        f"/console/tasks/{task_id}/done",
        headers=csrf(client),
        data={"note": "Moved to Thu 10:30"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert [r.action for r in audit_rows()[before:]] == ["staff_task.done"]
    with session_scope() as session:
        task = session.get(StaffTask, task_id)
        assert task is not None and task.status == "done" and task.done_note == "Moved to Thu 10:30"
        booking = session.exec(select(Booking).where(Booking.id == task.booking_id)).one()
        assert booking.staff_attention is None
        assert verify(session).intact
    assert "Jane Citizen" not in client.get("/console/tasks").text


def test_task_queue_pages_oldest_first_without_repeats(
    client: TestClient[Litestar], fake: FakeGoogleOIDC
) -> None:
    """A tablet cannot show 10,000 tasks: 50 a page, by keyset, every open task exactly once."""
    with session_scope() as session:
        made = []
        for n in range(120):
            task = StaffTask(key=f"message:page-{n}", kind="message_failed", summary=f"failed {n}")
            session.add(task)
            session.flush()
            made.append(task.id)
    sign_in(client, fake, STAFF[StaffRole.RECEPTION])
    seen: list[int] = []
    url = "/console/tasks"
    while url:
        page = client.get(url)
        assert page.status_code == 200 and "120 open" in page.text
        ids = [int(i) for i in re.findall(r'href="/console/tasks/(\d+)"', page.text)]
        assert len(ids) <= 50
        seen += ids
        more = re.search(r'href="(/console/tasks\?after=\d+)">More', page.text)
        url = more.group(1) if more else ""
    assert seen == made
