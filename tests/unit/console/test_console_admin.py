"""The admin pages through Litestar's TestClient, signed in through the fake Google OIDC: staff added, given
another role and removed (the database changes, one access-audit row each with the admin, their address and
why), the last admin kept, a removed member's session refused at once; the Google connection disconnected
through the CLI's own function at the fake Google (audited) and the connect button starting the gateway's
own flow; the keys page saying what is set and from where without any value; everyone else refused."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlmodel import select

from access import staff as staff_list
from models import (
    AuditLog,
    GoogleConnection,
    GoogleConnectionStatus,
    Settings,
    StaffMember,
    StaffRole,
    session_scope,
)
from models.access_audit import Actor, verify
from models.crypto import cipher_for_settings
from providers.google_oauth import ticket_id
from providers.google_oidc import CACHE
from tests.console_env import (
    AT_SHELL,
    BASE,
    STAFF,
    add_staff,
    audit_rows,
    console_settings,
    csrf,
    sign_in,
    signed_in,
)
from tests.fakes.google import FakeGoogle
from tests.fakes.google_oidc import FakeGoogleOIDC
from tests.google_env import fake_google_fixture, google_fixture  # noqa: F401 (fixtures)
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db
ADMIN = STAFF[StaffRole.ADMIN]
NEWCOMER = "newcomer@clinic.example"
ADMIN_ROUTES = [
    ("GET", "/console/admin"),
    ("GET", "/console/admin/staff"),
    ("POST", "/console/admin/staff/add"),
    ("POST", "/console/admin/staff/role"),
    ("POST", "/console/admin/staff/remove"),
    ("GET", "/console/admin/google"),
    ("POST", "/console/admin/google/connect"),
    ("POST", "/console/admin/google/disconnect"),
    ("GET", "/console/admin/keys"),
]
# Values the keys page must never show (each one set below, so the page has them to hand).
SECRETS = {
    "sendgrid_api_key": "SG.known-sendgrid-api-key-value",
    "mobilemessage_api_password": "known-mobilemessage-password",
    "mobilemessage_webhook_secret": "known-mobilemessage-webhook-secret",
    "wix_webhook_secret": "known-wix-webhook-secret",
    "session_secret": "known-console-session-secret-0123456789",
    "metrics_token": "known-metrics-token-value",
}
# An access-audit row as these tests compare it: action, actor, role, client address, subject, reason.
AuditedRow = tuple[str, str, str, str | None, str | None, str | None]


@pytest.fixture
def admin(app: Litestar, fake: FakeGoogleOIDC) -> Iterator[TestClient[Litestar]]:
    client = signed_in(app, fake, ADMIN)
    yield client
    client.__exit__(None, None, None)


def member(email: str) -> StaffMember | None:
    with session_scope() as session:
        return session.exec(select(StaffMember).where(StaffMember.email == email)).first()


def new_rows(since: int) -> list[AuditedRow]:
    return [
        (r.action, r.actor, r.role, r.client_address, r.subject, r.reason)
        for r in audit_rows()
        if r.id > since
    ]


def last_id() -> int:
    rows = audit_rows()
    return rows[-1].id if rows else 0  # type: ignore[return-value]


def change_staff(
    admin: TestClient[Litestar], change: str, form: dict[str, str]
) -> tuple[httpx.Response, list[AuditedRow]]:
    """One staff change posted from the staff page (`add`, `role` or `remove`): its answer, a redirect (303),
    and the access-audit rows it wrote."""
    mark = last_id()
    answer = admin.post(
        f"/console/admin/staff/{change}", headers=csrf(admin), data=form, follow_redirects=False
    )
    assert answer.status_code == 303
    return answer, new_rows(mark)


def test_add_change_role_and_remove_each_change_the_list_and_write_one_audit_row(
    admin: TestClient[Litestar],
) -> None:
    page = admin.get("/console/admin/staff")
    assert page.status_code == 200
    for email in STAFF.values():
        assert f"<td>{email.replace('@', '@<wbr>')}" in page.text
    assert 'id="add-staff"' in page.text and 'name="_csrf_token"' in page.text

    added, audited = change_staff(
        admin,
        "add",
        {"email": " NewComer@Clinic.Example ", "role": "reception", "reason": "new front-desk hire"},
    )
    assert added.headers["location"] == "/console/admin/staff"
    row = member(NEWCOMER)
    assert row is not None and (row.role, row.added_by, row.removed_at) == ("reception", ADMIN, None)
    subject = f"staff:{row.id}"
    assert audited == [("staff.added", ADMIN, "admin", "testclient", subject, "new front-desk hire")]
    assert audit_rows("staff.added")[-1].detail == {"new_role": "reception"}
    shown = admin.get("/console/admin/staff")
    assert f"{NEWCOMER} added as reception." in shown.text
    assert f"{NEWCOMER} added as" not in admin.get("/console/admin/staff").text  # shown once

    _, audited = change_staff(
        admin, "role", {"email": NEWCOMER, "role": "marketer", "reason": "moved to marketing"}
    )
    after = member(NEWCOMER)
    assert after is not None and after.role == "marketer" and after.added_at == row.added_at
    assert audited == [("staff.role_changed", ADMIN, "admin", "testclient", subject, "moved to marketing")]
    assert audit_rows("staff.role_changed")[-1].detail == {"new_role": "marketer", "old_role": "reception"}

    _, audited = change_staff(
        admin, "remove", {"email": NEWCOMER, "role": "marketer", "reason": "left the clinic"}
    )
    gone = member(NEWCOMER)
    assert gone is not None and gone.removed_at is not None
    assert audited == [("staff.removed", ADMIN, "admin", "testclient", subject, "left the clinic")]
    listed = admin.get("/console/admin/staff").text.replace("<wbr>", "")  # (addresses may break after @)
    member_row = re.search(rf'<tr id="member-{gone.id}" class="removed">.*?</tr>', listed, re.S)
    assert member_row and "removed" in member_row.group(0) and NEWCOMER in member_row.group(0)
    with session_scope() as session:
        assert verify(session).intact


@pytest.mark.parametrize(
    ("path", "form", "says"),
    [
        ("add", {"email": NEWCOMER, "role": "reception", "reason": " "}, "Say why"),
        ("add", {"email": "not-an-address", "role": "reception", "reason": "hire"}, "not an email address"),
        ("add", {"email": NEWCOMER, "role": "boss", "reason": "hire"}, "Choose a role"),
        ("role", {"email": NEWCOMER, "role": "ops", "reason": "why not"}, "not on the staff list"),
        ("remove", {"email": STAFF[StaffRole.OPS], "reason": ""}, "Say why"),
        ("remove", {}, "Say why"),
    ],
)
def test_a_refused_change_changes_nothing_and_says_why(
    admin: TestClient[Litestar], path: str, form: dict[str, str], says: str
) -> None:
    mark = last_id()
    answer = admin.post(f"/console/admin/staff/{path}", headers=csrf(admin), data=form)
    assert answer.status_code == 400
    assert says in answer.text and 'role="alert"' in answer.text
    if path == "add" and form["email"] != NEWCOMER:
        assert f'value="{form["email"]}"' in answer.text  # what was typed, to correct
    assert member(NEWCOMER) is None
    ops = member(STAFF[StaffRole.OPS])
    assert ops is not None and ops.removed_at is None
    assert new_rows(mark) == []


def test_the_last_admin_can_neither_remove_nor_demote_themselves(
    admin: TestClient[Litestar], app: Litestar, fake: FakeGoogleOIDC
) -> None:
    mark = last_id()
    for path, form in (
        ("remove", {"email": ADMIN, "reason": "leaving"}),
        ("role", {"email": ADMIN, "role": "reception", "reason": "less power"}),
    ):
        refused = admin.post(f"/console/admin/staff/{path}", headers=csrf(admin), data=form)
        assert refused.status_code == 400, path
        assert f"{ADMIN} is the last admin: add another admin" in refused.text
        me = member(ADMIN)
        assert me is not None and (me.role, me.removed_at) == ("admin", None)
    assert new_rows(mark) == []

    # With a second admin, the first may step down; the new role applies at their next request.
    second = "second-admin@clinic.example"
    form = {"email": second, "role": "admin", "reason": "deputy manager"}
    assert admin.post("/console/admin/staff/add", headers=csrf(admin), data=form).status_code == 200
    stepped = admin.post(
        "/console/admin/staff/role",
        headers=csrf(admin),
        data={"email": ADMIN, "role": "reception", "reason": "handing over"},
        follow_redirects=False,
    )
    assert stepped.status_code == 303
    assert admin.get("/console/admin/staff").status_code == 403
    assert admin.get("/console/tasks").status_code == 200
    # ... and now the second admin is the last one.
    deputy = signed_in(app, fake, second)
    try:
        last = deputy.post(
            "/console/admin/staff/remove", headers=csrf(deputy), data={"email": second, "reason": "x"}
        )
        assert last.status_code == 400 and "is the last admin" in last.text
    finally:
        deputy.__exit__(None, None, None)


def test_staff_add_cannot_demote_the_last_admin_either(settings: Settings) -> None:
    """`avatar-crm staff add EMAIL --role …` on a current member is a role change, with the same guard."""
    with pytest.raises(staff_list.StaffError, match="is the last admin"), session_scope() as session:
        staff_list.add(session, ADMIN, StaffRole.RECEPTION, actor=AT_SHELL)
    assert member(ADMIN).role == "admin"  # type: ignore[union-attr]


def test_two_admins_stepping_down_at_the_same_moment_leave_one_admin(settings: Settings) -> None:
    """The second change waits for the first (a row lock on PostgreSQL, the write lock on SQLite), then sees
    that its admin is now the last one: without the lock both would read two admins and both step down."""
    second = "second-admin@clinic.example"
    with session_scope() as session:
        staff_list.add(session, second, StaffRole.ADMIN, actor=AT_SHELL)
    outcome: list[object] = []

    def step_down(email: str) -> None:
        try:
            with session_scope() as session:
                changed = staff_list.change_role(session, email, StaffRole.OPS, actor=Actor(email, "admin"))
                outcome.append(changed)
        except staff_list.StaffError as exc:
            outcome.append(exc)

    with session_scope() as first:
        staff_list.change_role(first, ADMIN, StaffRole.OPS, actor=Actor(ADMIN, "admin"))
        other = threading.Thread(target=step_down, args=(second,))
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive()  # waiting for the first change to commit
    other.join(timeout=30)
    [refused] = outcome
    assert isinstance(refused, staff_list.StaffError) and "is the last admin" in str(refused)
    assert (member(ADMIN).role, member(second).role) == ("ops", "admin")  # type: ignore[union-attr]


def test_a_removed_member_is_signed_out_at_their_next_request(
    admin: TestClient[Litestar], app: Litestar, fake: FakeGoogleOIDC
) -> None:
    reception = signed_in(app, fake, STAFF[StaffRole.RECEPTION])
    try:
        assert reception.get("/console/tasks").status_code == 200
        removed = admin.post(
            "/console/admin/staff/remove",
            headers=csrf(admin),
            data={"email": STAFF[StaffRole.RECEPTION], "reason": "left"},
            follow_redirects=False,
        )
        assert removed.status_code == 303
        refused = reception.get("/console/tasks", follow_redirects=False)
        assert refused.status_code == 303 and refused.headers["location"].startswith("/console/login")
        assert reception.post("/console/logout", headers=csrf(reception)).status_code == 401  # session gone
    finally:
        reception.__exit__(None, None, None)


def test_non_admins_are_refused_every_admin_page_and_each_refusal_is_audited(
    app: Litestar, fake: FakeGoogleOIDC
) -> None:
    for role in (StaffRole.RECEPTION, StaffRole.MARKETER, StaffRole.OPS):
        client = signed_in(app, fake, STAFF[role])
        try:
            mark = last_id()
            for method, path in ADMIN_ROUTES:
                data = {"email": STAFF[role], "role": "admin", "reason": "promote me"}
                answer = client.request(
                    method, path, headers=csrf(client), data=data if method == "POST" else None
                )
                assert answer.status_code == 403, (role, method, path)
            denied = [r for r in audit_rows("console.denied") if r.id > mark]
            assert [(r.actor, r.detail["path"]) for r in denied] == [
                (STAFF[role], p) for _, p in ADMIN_ROUTES
            ]
            assert member(STAFF[role]).role == role.value  # type: ignore[union-attr]
        finally:
            client.__exit__(None, None, None)


def test_the_google_page_shows_the_connection_and_disconnect_revokes_it_audited(
    admin: TestClient[Litestar], google: FakeGoogle
) -> None:
    with session_scope() as session:
        connection = session.exec(select(GoogleConnection)).one()
        token, connection_id = connection.refresh_token, connection.id
    page = admin.get("/console/admin/google")
    assert page.status_code == 200
    assert re.search(r'id="google-state">connected<', page.text)
    assert google.account_email in page.text and "gmail.send" in page.text
    assert token not in page.text

    unexplained = admin.post("/console/admin/google/disconnect", headers=csrf(admin), data={"reason": ""})
    assert unexplained.status_code == 400 and "Say why" in unexplained.text
    assert google.revoked_tokens == []

    mark = last_id()
    done = admin.post(
        "/console/admin/google/disconnect",
        headers=csrf(admin),
        data={"reason": "switching to the new clinic account"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/admin/google"
    assert google.revoked_tokens == [token]
    with session_scope() as session:
        after = session.exec(select(GoogleConnection)).one()
        assert (after.status, after.refresh_token) == (GoogleConnectionStatus.REVOKED, "")
        system = session.exec(select(AuditLog).where(AuditLog.action == "google.disconnected")).all()
        assert len(system) == 1  # the CLI's record of the change, as from `avatar-crm google disconnect`
    rows = [r for r in audit_rows() if r.id > mark]
    assert [(r.action, r.actor, r.role, r.subject, r.reason, r.detail) for r in rows] == [
        (
            "google.disconnected",
            ADMIN,
            "admin",
            f"google_connection:{connection_id}",
            "switching to the new clinic account",
            {"revoked_at_google": True},
        )
    ]
    shown = admin.get("/console/admin/google").text
    assert re.search(r'id="google-state">revoked<', shown)
    assert f"{google.account_email} disconnected (revoked at Google)." in shown

    mark = last_id()
    again = admin.post(
        "/console/admin/google/disconnect",
        headers=csrf(admin),
        data={"reason": "again"},
        follow_redirects=True,
    )
    assert "nothing to disconnect" in again.text and new_rows(mark) == []


def test_connect_starts_the_gateways_own_connect_flow_and_is_audited(
    admin: TestClient[Litestar], google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake Google is plain http
    mark = last_id()
    started = admin.post(
        "/console/admin/google/connect",
        headers=csrf(admin),
        data={"reason": "first connection"},
        follow_redirects=False,
    )
    assert started.status_code == 303
    link = urlsplit(started.headers["location"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == "https://crm.example.test/auth/google/start"
    ticket = parse_qs(link.query)["ticket"][0]
    assert ticket_id(ticket) is not None  # the same signed one-time ticket `avatar-crm google connect` prints
    assert new_rows(mark) == [
        ("google.connect_started", ADMIN, "admin", "testclient", None, "first connection")
    ]
    # The gateway's start route accepts it and sends the browser to Google's consent screen.
    consent = admin.get(f"/auth/google/start?{link.query}", follow_redirects=False)
    assert consent.status_code == 302 and consent.headers["location"].startswith(google.url)
    assert parse_qs(urlsplit(consent.headers["location"]).query)["code_challenge_method"] == ["S256"]


def test_connect_without_a_google_client_says_so_and_starts_nothing(admin: TestClient[Litestar]) -> None:
    mark = last_id()
    page = admin.get("/console/admin/google")
    assert "not configured" in page.text and 'id="connect"' not in page.text
    refused = admin.post("/console/admin/google/connect", headers=csrf(admin), data={})
    assert refused.status_code == 409 and "GOOGLE_CLIENT_ID" in refused.text
    assert new_rows(mark) == []


def _secret_rows(html: str) -> dict[str, tuple[str, str]]:
    """{variable: (state, source)} from the keys page's table."""
    found = {}
    for variable, row in re.findall(r'<tr data-variable="([^"]+)">(.*?)</tr>', html, re.S):
        state = re.search(r'<span class="badge[^"]*">([^<]+)</span>', row)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert state is not None
        found[variable] = (state.group(1), cells[2].strip())
    return found


def test_the_keys_page_says_what_is_set_and_from_where_and_never_a_value(
    db: str, fake: FakeGoogleOIDC, monkeypatch: pytest.MonkeyPatch
) -> None:
    CACHE.clear()
    add_staff()
    monkeypatch.setenv("SENDGRID_API_KEY", SECRETS["sendgrid_api_key"])  # one from the environment
    settings = console_settings(
        db,
        fake,
        BASE,
        sms_provider="mobilemessage",
        mobilemessage_api_username="clinic-api-user",
        mobilemessage_from_number="+61400000000",
        sendgrid_from_email="news@clinic.example",
        **{name: value for name, value in SECRETS.items() if name != "sendgrid_api_key"},
    )
    app = create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
    with TestClient(app, base_url=BASE) as client:
        assert sign_in(client, fake, ADMIN).status_code == 303
        page = client.get("/console/admin/keys")
        counted = client.get("/console/admin/keys?count=true")
    assert page.status_code == 200 and counted.status_code == 200
    for html in (page.text, counted.text):
        for name, value in {**SECRETS, "google_client_secret": fake.client_secret}.items():
            assert value not in html, name
        assert settings.crm_encryption_key is not None
        assert settings.crm_encryption_key.get_secret_value() not in html

    rows = _secret_rows(page.text)
    assert rows["MOBILEMESSAGE_API_USERNAME + MOBILEMESSAGE_API_PASSWORD"][0] == "set"
    assert rows["SENDGRID_API_KEY"] == ("set", "env SENDGRID_API_KEY")
    assert rows["MOBILEMESSAGE_WEBHOOK_SECRET"][0] == "set"
    assert rows["WIX_WEBHOOK_SECRET"][0] == "set"
    assert rows["WIX_PUBLIC_KEY"][0] == "not set"  # the secret verifies Wix's webhooks
    assert rows["WIX_API_KEY"][0] == "not set"
    assert rows["SENDGRID_WEBHOOK_PUBLIC_KEY"] == ("missing", "—")
    assert rows["GOOGLE_CLIENT_ID + GOOGLE_CLIENT_SECRET"][0] == "set"
    assert rows["SESSION_SECRET"][0] == "set"
    assert rows["METRICS_TOKEN"][0] == "set"
    assert rows["PREFECT_API_AUTH_STRING"] == ("missing", "—")

    active = cipher_for_settings(settings).current_key_id
    assert f'<code id="active-key">{active}</code>' in page.text
    assert re.search(r'id="ring-source">env CRM_ENCRYPTION_KEY<', page.text)
    assert "?count=true" in page.text  # counting is on request
    assert re.search(r'id="older-values">0<', counted.text)


def test_the_keys_page_says_sandbox_and_derived_when_providers_are_not_configured(
    admin: TestClient[Litestar],
) -> None:
    rows = _secret_rows(admin.get("/console/admin/keys").text)
    assert rows["MOBILEMESSAGE_API_USERNAME + MOBILEMESSAGE_API_PASSWORD"] == ("sandbox", "—")
    assert rows["SENDGRID_API_KEY"] == ("sandbox", "—")
    assert rows["SESSION_SECRET"] == ("derived", "—")
    assert rows["WIX_WEBHOOK_SECRET"] == ("missing", "—")
