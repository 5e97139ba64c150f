"""Connecting Google end to end: a browser (httpx with a cookie jar) walks through the real gateway on a
loopback port, the fake Google plays consent screen and token server, and the database shows what was kept.

Also the token's life afterwards: an expired access token is refreshed (and remembered) through
`providers.google_api`, `invalid_grant` disconnects the account visibly, and `google disconnect` revokes it
at Google.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import select
from typer.testing import CliRunner

from deployments.cli import app as cli
from models import (
    AuditLog,
    Channel,
    GoogleConnection,
    GoogleConnectionStatus,
    MessageKind,
    OAuthState,
    OutboundMessage,
    Settings,
    get_settings,
    session_scope,
)
from models.types import utcnow
from providers import google_api
from providers.google_oauth import connect_url, connection_status, revoke
from tests.fakes.google import FakeGoogle
from tests.servers import ThreadedServer, free_port
from webhook_gateway.app import create_app

pytestmark = pytest.mark.db

GATEWAY_PORT = free_port()
GATEWAY = f"http://127.0.0.1:{GATEWAY_PORT}"
CALLBACK = f"{GATEWAY}/auth/google/callback"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogle]:
    with FakeGoogle(account_email="Clinic@Example.com") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(database_url: str) -> Iterator[str]:
    """The real gateway app; Prefect is a closed port (connecting Google must not need it)."""
    settings = Settings(crm_database_url=database_url, dispatch_poll_seconds=60.0)  # type: ignore[call-arg]
    with ThreadedServer(create_app(settings, prefect_api_url="http://127.0.0.1:9/api"), port=GATEWAY_PORT):
        yield GATEWAY


@pytest.fixture
def google(db: str, fake: FakeGoogle, gateway: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """Google configured and pointed at the fake; no connection and no OAuth state yet."""
    fake.reset()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PUBLIC_BASE_URL", gateway)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake token endpoint is plain http
    get_settings.cache_clear()
    with session_scope() as session:
        for table in (
            "googleconnection",
            "oauthstate",
            "outboundmessageevent",
            "outboundmessage",
            "auditlog",
        ):
            session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (fixed table names)
    yield fake
    get_settings.cache_clear()


def start(browser: httpx.Client) -> httpx.Response:
    return browser.get(connect_url())


def connect(browser: httpx.Client, fake: FakeGoogle, **approve: str) -> httpx.Response:
    """Start, approve on the consent screen, follow Google's redirect back: the callback's answer."""
    response = start(browser)
    assert response.status_code == 302, response.text
    return browser.get(fake.approve(response.headers["location"], **approve))


def connections() -> list[GoogleConnection]:
    with session_scope() as session:
        return list(session.exec(select(GoogleConnection)).all())


def token_exchanges(fake: FakeGoogle) -> list[dict]:
    return [r for r in fake.requests_to("/token") if r["form"].get("grant_type") == "authorization_code"]


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# --- start -------------------------------------------------------------------------------------------------


def test_a_plain_http_consent_page_is_refused_with_the_setting_to_fix_not_a_server_error(
    google: FakeGoogle, browser: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")  # the fake is http://, as a typo would make it
    response = start(browser)
    assert response.status_code == 503
    assert "GOOGLE_AUTH_URI must be an https:// URL" in response.text
    assert "set-cookie" not in response.headers  # no session was started
    with session_scope() as session:
        assert session.exec(select(OAuthState)).all() == []  # nor a state kept for it


def test_start_redirects_to_google_with_pkce_offline_access_and_least_privilege(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    response = start(browser)

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == google.url + "/o/oauth2/v2/auth"
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == google.client_id
    assert params["redirect_uri"] == CALLBACK
    assert set(params["scope"].split()) == {
        "https://www.googleapis.com/auth/gmail.send",
        "https://www.googleapis.com/auth/calendar.events",
        "https://www.googleapis.com/auth/contacts.readonly",
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
    }
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 40

    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/auth/google" in cookie
    assert "secure" not in cookie  # the gateway here is plain http

    with session_scope() as session:
        stored = session.exec(select(OAuthState)).one()
        raw = session.execute(text("SELECT state_hash, code_verifier FROM oauthstate")).one()
    assert stored.state_hash != params["state"] and params["state"] not in stored.state_hash
    # The verifier stays on the server, encrypted, and is the one the challenge was made from.
    challenge = base64.urlsafe_b64encode(hashlib.sha256(stored.code_verifier.encode()).digest())
    assert challenge.rstrip(b"=").decode() == params["code_challenge"]
    assert stored.code_verifier.encode() not in bytes(raw.code_verifier)
    assert stored.code_verifier not in response.headers["location"]


def test_start_needs_a_fresh_signed_ticket(google: FakeGoogle, browser: httpx.Client) -> None:
    assert browser.get(f"{GATEWAY}/auth/google/start").status_code == 403
    stale = connect_url(now=time.time() - 3600)
    assert browser.get(stale).status_code == 403
    forged = connect_url().rsplit(".", 1)[0] + ".0123456789abcdef0123456789abcdef"
    response = browser.get(forged)
    assert response.status_code == 403 and "avatar-crm google connect" in response.text
    with session_scope() as session:
        assert session.exec(select(OAuthState)).all() == []


def test_a_connect_link_works_once(google: FakeGoogle, browser: httpx.Client) -> None:
    """A link seen on a shared screen or in an access log cannot start a second sign-in."""
    link = connect_url()
    assert browser.get(link).status_code == 302
    with httpx.Client(timeout=10) as eavesdropper:
        again = eavesdropper.get(link)
    assert again.status_code == 403 and "already used" in again.text
    with session_scope() as session:
        assert len(session.exec(select(OAuthState)).all()) == 1
    # The first browser still completes; two links minted in the same second are two tickets.
    assert browser.get(google.approve(start(browser).headers["location"])).status_code == 200


def test_a_session_cookie_the_browser_brings_is_never_adopted(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    planted = "A" * 43  # e.g. set by someone on a sibling subdomain, so they know it
    browser.cookies.set("avatar_crm_google_session", planted, domain="127.0.0.1", path="/auth/google")
    response = start(browser)
    assert response.status_code == 302
    issued = response.cookies["avatar_crm_google_session"]
    assert issued != planted and len(issued) >= 43
    # ... and the state is bound to the issued session, not the planted one: a callback with it is refused.
    redirect = google.approve(response.headers["location"])
    with httpx.Client(timeout=10) as attacker:
        attacker.cookies.set("avatar_crm_google_session", planted, domain="127.0.0.1", path="/auth/google")
        refused = attacker.get(redirect)
    assert refused.status_code == 400 and connections() == []


@pytest.mark.parametrize(
    "ticket", ["9999999999.%C3%A9", "%C2%B2.x", "9999999999.%C3%A9.%C3%A9", "%00", "..", "1." * 40]
)
def test_odd_tickets_are_a_403_not_a_500(google: FakeGoogle, browser: httpx.Client, ticket: str) -> None:
    response = browser.get(f"{GATEWAY}/auth/google/start?ticket={ticket}")
    assert response.status_code == 403, response.text
    assert "avatar-crm google connect" in response.text


@settings(max_examples=60, deadline=None)
@given(ticket=st.text(max_size=80) | st.from_regex(r"[0-9²³¹٣]{1,12}\.[A-Za-z0-9_é-]{0,20}\.[0-9a-fé]{0,40}"))
def test_no_ticket_yields_a_500(gateway: str, ticket: str) -> None:
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{gateway}/auth/google/start?ticket={quote(ticket, safe='')}")
    assert response.status_code in {403, 503}, (ticket, response.status_code, response.text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/auth/google/callback", "/t/o/", "/t/c/"]),
    value=st.text(max_size=120),
    extra=st.dictionaries(
        st.sampled_from(["state", "code", "error", "scope"]), st.text(max_size=60), max_size=4
    ),
)
def test_no_input_to_the_public_get_routes_yields_a_500(
    google: FakeGoogle, gateway: str, path: str, value: str, extra: dict
) -> None:
    """Whatever a browser or a prober sends (Google configured): a typed 4xx (or the pixel), never a 500."""
    with httpx.Client(timeout=10) as client:
        if path.startswith("/t/"):
            response = client.get(f"{gateway}{path}{quote(value, safe='') or 'x'}")
        else:
            response = client.get(f"{gateway}{path}", params={"state": value, **extra})
    assert response.status_code < 500, (path, value, extra, response.text)


def test_without_google_configured_start_and_callback_explain_with_503(
    google: FakeGoogle, browser: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET")
    get_settings.cache_clear()
    response = start(browser)
    assert response.status_code == 503
    assert "GOOGLE_CLIENT_ID" in response.text and response.headers["content-type"].startswith("text/html")
    assert browser.get(f"{CALLBACK}?state=x&code=y").status_code == 503
    assert connection_status().state == "not-configured"


# --- callback ----------------------------------------------------------------------------------------------


def test_callback_stores_the_account_with_its_refresh_token_encrypted(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    response = connect(browser, google)

    assert response.status_code == 200, response.text
    assert "clinic@example.com is connected" in response.text
    [connection] = connections()
    assert connection.account_email == "clinic@example.com"
    assert connection.status == GoogleConnectionStatus.CONNECTED
    assert set(connection.scopes.split()) == set(google_api.SCOPES)
    assert google.refresh_tokens == {connection.refresh_token: True}  # the very token Google issued
    with session_scope() as session:
        raw = session.execute(text("SELECT refresh_token, access_token FROM googleconnection")).one()
        used = session.exec(select(OAuthState)).one().used_at
        audit = session.exec(select(AuditLog).where(AuditLog.action == "google.connected")).one()
    assert connection.refresh_token.encode() not in bytes(raw.refresh_token)
    assert connection.access_token and connection.access_token.encode() not in bytes(raw.access_token)
    assert used is not None
    assert audit.entity_id == connection.id
    # The code was exchanged with the PKCE verifier (the fake checks it against the challenge).
    [exchange] = token_exchanges(google)
    assert exchange["form"]["code_verifier"] and exchange["status"] == 200
    status = connection_status()
    assert (status.state, status.account_email, status.missing_scopes) == (
        "connected",
        "clinic@example.com",
        (),
    )


def test_a_tampered_state_is_refused_and_nothing_is_stored(google: FakeGoogle, browser: httpx.Client) -> None:
    location = start(browser).headers["location"]
    redirect = google.approve(location)
    state = parse_qs(urlsplit(redirect).query)["state"][0]

    response = browser.get(redirect.replace(state, state[:-2] + ("AA" if state[-2:] != "AA" else "BB")))

    assert response.status_code == 400
    assert "state mismatch" in response.text
    assert connections() == [] and token_exchanges(google) == []


def test_a_state_is_single_use(google: FakeGoogle, browser: httpx.Client) -> None:
    location = start(browser).headers["location"]
    redirect = google.approve(location)
    assert browser.get(redirect).status_code == 200
    replay = browser.get(redirect)
    assert replay.status_code == 400 and "already used" in replay.text
    assert len(token_exchanges(google)) == 1


def test_an_expired_state_is_refused(google: FakeGoogle, browser: httpx.Client) -> None:
    redirect = google.approve(start(browser).headers["location"])
    with session_scope() as session:
        row = session.exec(select(OAuthState)).one()
        row.created_at = utcnow() - timedelta(minutes=11)
        session.add(row)

    response = browser.get(redirect)

    assert response.status_code == 400 and "expired" in response.text
    assert connections() == [] and token_exchanges(google) == []


def test_a_callback_carried_into_another_browser_is_refused(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    redirect = google.approve(start(browser).headers["location"])
    with httpx.Client(timeout=10) as other:
        start(other)  # the other browser has a session of its own
        response = other.get(redirect)
    assert response.status_code == 400 and "another browser" in response.text
    assert connections() == [] and token_exchanges(google) == []
    # Without any cookie at all, the same.
    with httpx.Client(timeout=10) as bare:
        assert bare.get(google.approve(start(browser).headers["location"])).status_code == 400
    assert connections() == []


def test_without_its_code_verifier_the_exchange_cannot_happen(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    redirect = google.approve(start(browser).headers["location"])
    with session_scope() as session:
        row = session.exec(select(OAuthState)).one()
        row.code_verifier = ""
        session.add(row)

    response = browser.get(redirect)

    assert response.status_code == 400 and "verifier" in response.text
    assert connections() == [] and token_exchanges(google) == []


def test_google_refuses_a_code_exchanged_with_the_wrong_verifier(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    redirect = google.approve(start(browser).headers["location"])
    with session_scope() as session:
        row = session.exec(select(OAuthState)).one()
        row.code_verifier = "x" * 64
        session.add(row)

    response = browser.get(redirect)

    assert response.status_code == 400 and "invalid_grant" in response.text
    assert [r["status"] for r in token_exchanges(google)] == [400]
    assert connections() == []


def test_the_fake_token_server_insists_on_the_verifier(google: FakeGoogle) -> None:
    """What a client that dropped PKCE would meet at Google: no verifier, no tokens."""
    redirect = google.approve(
        f"{google.url}/o/oauth2/v2/auth?client_id={google.client_id}&redirect_uri={CALLBACK}"
        "&response_type=code&state=s&code_challenge=abc&code_challenge_method=S256"
    )
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    answer = httpx.post(
        google.url + "/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
        auth=(google.client_id, google.client_secret),
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant", "error_description": "Missing code verifier."}


def test_access_denied_and_a_missing_code_answer_400(google: FakeGoogle, browser: httpx.Client) -> None:
    denied = browser.get(google.deny(start(browser).headers["location"]))
    assert denied.status_code == 400 and "access_denied" in denied.text

    redirect = google.approve(start(browser).headers["location"])
    no_code = browser.get(redirect.split("?")[0] + "?state=" + parse_qs(urlsplit(redirect).query)["state"][0])
    assert no_code.status_code == 400 and "no authorization code" in no_code.text

    assert browser.get(CALLBACK).status_code == 400  # nothing at all
    assert connections() == [] and token_exchanges(google) == []


def test_fewer_scopes_granted_are_stored_as_granted_and_shown(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    granted = (
        "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/gmail.send"
    )
    response = connect(browser, google, scope=granted)

    assert response.status_code == 200
    assert "contacts.readonly" in response.text and "calendar.events" in response.text
    [connection] = connections()
    assert set(connection.scopes.split()) == set(granted.split())
    assert "https://www.googleapis.com/auth/contacts.readonly" in connection_status().missing_scopes


def test_connecting_another_account_retires_the_first(google: FakeGoogle, browser: httpx.Client) -> None:
    assert connect(browser, google).status_code == 200
    assert connect(browser, google, email="frontdesk@example.com").status_code == 200
    states = {c.account_email: c.status for c in connections()}
    assert states == {"clinic@example.com": "revoked", "frontdesk@example.com": "connected"}
    assert google_api.active_connection().account_email == "frontdesk@example.com"  # type: ignore[union-attr]


def test_replacing_the_connected_account_is_announced_to_staff(
    google: FakeGoogle, browser: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAFF_NOTIFICATION_EMAIL", "manager@example.com")
    get_settings.cache_clear()
    assert connect(browser, google).status_code == 200
    with session_scope() as session:  # a first connection replaces nothing: no notice
        assert session.exec(select(OutboundMessage)).all() == []
    assert connect(browser, google, email="intruder@example.com").status_code == 200

    with session_scope() as session:
        [audit] = session.exec(select(AuditLog).where(AuditLog.action == "google.replaced")).all()
        assert audit.detail == {"previous": "clinic@example.com", "account": "intruder@example.com"}
        notices = session.exec(select(OutboundMessage).order_by(OutboundMessage.id)).all()  # type: ignore[arg-type]
        assert [(n.channel, n.kind, n.status, n.recipient) for n in notices] == [
            (Channel.OPS, MessageKind.STAFF_NOTIFICATION, "pending", "staff"),
            (Channel.EMAIL, MessageKind.STAFF_NOTIFICATION, "pending", "manager@example.com"),
        ]
        ids = {c.account_email: c.id for c in session.exec(select(GoogleConnection)).all()}
        assert f"#{ids['intruder@example.com']} instead of #{ids['clinic@example.com']}" in notices[0].body
        assert "google disconnect" in notices[0].body and "example.com" not in notices[0].body


# --- afterwards: refresh, invalid_grant, disconnect ---------------------------------------------------------


def _list_people() -> dict:
    people = google_api.build_service("people")
    request = people.people().connections().list(resourceName="people/me", personFields="names", pageSize=10)
    return google_api.execute(request)


def _expire_stored_access_token() -> None:
    with session_scope() as session:
        row = session.exec(select(GoogleConnection)).one()
        row.access_token_expires_at = utcnow() - timedelta(minutes=1)
        session.add(row)


def test_an_expired_access_token_is_refreshed_and_remembered(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    connect(browser, google)
    google.add_person("Ada", emails=["ada@example.com"])
    [before] = connections()
    google.expire_access_tokens()
    _expire_stored_access_token()

    assert [p["names"][0]["givenName"] for p in _list_people()["connections"]] == ["Ada"]

    refreshes = [r for r in google.requests_to("/token") if r["form"].get("grant_type") == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["status"] == 200
    [after] = connections()
    assert after.access_token != before.access_token
    assert after.access_token_expires_at is not None and after.access_token_expires_at > utcnow()
    # The next call (another process, as it were) uses the remembered token: no second refresh.
    _list_people()
    assert (
        len([r for r in google.requests_to("/token") if r["form"].get("grant_type") == "refresh_token"]) == 1
    )


def test_a_token_google_stopped_accepting_early_is_refreshed_on_401(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    connect(browser, google)
    google.expire_access_tokens()  # still valid by our clock

    assert "totalPeople" in _list_people()
    people_calls = [r["status"] for r in google.requests_to("/v1/people")]
    assert people_calls == [401, 200]


def test_invalid_grant_disconnects_the_account_visibly(google: FakeGoogle, browser: httpx.Client) -> None:
    connect(browser, google)
    google.revoke_all_refresh_tokens()  # e.g. someone removed the app in their Google account
    _expire_stored_access_token()

    with pytest.raises(google_api.GoogleNotConnected):
        _list_people()

    [connection] = connections()
    assert connection.status == GoogleConnectionStatus.DISCONNECTED
    assert connection.status_reason and "invalid_grant" in connection.status_reason
    assert connection.access_token is None
    status = connection_status()
    assert status.state == "disconnected" and "invalid_grant" in (status.reason or "")
    with pytest.raises(google_api.GoogleNotConnected):
        google_api.load_credentials()
    result = CliRunner().invoke(cli, ["google", "status"])
    assert result.exit_code == 1
    assert "state: disconnected" in result.output and "invalid_grant" in result.output


def test_a_refused_token_the_crm_has_since_replaced_leaves_the_new_connection_alone(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    """A sweep loaded the credentials; meanwhile staff saw the account was broken and reconnected. The old
    token's refusal must not disconnect the connection staff just made: the call is retried, not abandoned."""
    connect(browser, google)
    _expire_stored_access_token()
    people = google_api.build_service("people")  # credentials loaded now: the first token, access expired
    [first] = connections()
    google.revoke_all_refresh_tokens()
    connect(browser, google)  # the same account again: a new refresh token on the same row
    [reconnected] = connections()
    assert reconnected.refresh_token != first.refresh_token

    request = people.people().connections().list(resourceName="people/me", personFields="names", pageSize=10)
    with pytest.raises(google_api.GoogleTemporaryError, match="reconnect has since replaced"):
        google_api.execute(request)

    [after] = connections()
    assert after.status == GoogleConnectionStatus.CONNECTED and after.status_reason is None
    assert after.refresh_token == reconnected.refresh_token and after.access_token is not None
    assert "totalPeople" in _list_people()  # the retry, with what is stored now


def test_a_token_refreshed_with_a_replaced_refresh_token_is_not_stored(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    """Credentials loaded before a reconnect may still refresh (Google had not revoked the old grant); the
    access token they get belongs to the old grant and must not overwrite the new connection's."""
    connect(browser, google)
    _expire_stored_access_token()
    people = google_api.build_service("people")  # the first token, its access token expired
    connect(browser, google)  # reconnected; the first grant still works at Google
    [reconnected] = connections()

    request = people.people().connections().list(resourceName="people/me", personFields="names", pageSize=10)
    assert "totalPeople" in google_api.execute(request)  # the old credentials refreshed and were used

    [after] = connections()
    assert after.access_token == reconnected.access_token
    assert after.access_token_expires_at == reconnected.access_token_expires_at


def test_disconnect_revokes_at_google_and_stops_using_the_account(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    connect(browser, google)
    [connection] = connections()
    status = CliRunner().invoke(cli, ["google", "status"])
    assert status.exit_code == 0 and "account: clinic@example.com" in status.output

    result = CliRunner().invoke(cli, ["google", "disconnect"])

    assert result.exit_code == 0, result.output
    assert "clinic@example.com: disconnected (revoked at Google)" in result.output
    assert google.revoked_tokens == [connection.refresh_token]
    assert google.refresh_tokens == {connection.refresh_token: False}
    [after] = connections()
    assert after.status == GoogleConnectionStatus.REVOKED and after.refresh_token == ""
    with pytest.raises(google_api.GoogleNotConnected):
        google_api.load_credentials()
    assert revoke() is None  # nothing left to revoke
    assert CliRunner().invoke(cli, ["google", "status"]).exit_code == 1


def test_disconnect_keeps_the_token_to_retry_when_google_is_unreachable(
    google: FakeGoogle, browser: httpx.Client
) -> None:
    connect(browser, google)
    google.fail("/revoke", 1, 503)

    first = revoke()

    assert first is not None and not first.revoked_at_google
    [connection] = connections()
    assert connection.status == GoogleConnectionStatus.REVOKED and connection.refresh_token
    second = revoke()
    assert second is not None and second.revoked_at_google
    assert google.refresh_tokens == {connection.refresh_token: False}


def test_connect_command_prints_a_working_link(google: FakeGoogle, browser: httpx.Client) -> None:
    result = CliRunner().invoke(cli, ["google", "connect"])
    assert result.exit_code == 0
    link = next(line for line in result.output.splitlines() if line.startswith(GATEWAY))
    assert browser.get(link).status_code == 302
