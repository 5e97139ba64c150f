"""Connecting the clinic's Google Workspace account: the OAuth 2.0 web-server flow with PKCE, and undoing it.

`begin_authorization` builds Google's consent URL with `google_auth_oauthlib.flow.Flow` (offline access, so
Google issues a refresh token; `prompt=consent`, so it issues one again on a reconnect; an S256 PKCE
challenge) and remembers the request server-side in `OAuthState`: a keyed hash of the `state`, a keyed hash
of the browser session it belongs to, and the encrypted code verifier. The verifier never travels through
the browser. `complete_authorization` accepts a callback only for a known, fresh (10 minutes), unused state
from the same browser session, burns the state before anything else, exchanges the code with the stored
verifier, learns the account's address from the userinfo endpoint and stores the refresh token encrypted.

Anyone who can reach the gateway can reach `/auth/google/start`, and whoever completes the flow decides
whose mailbox patients' email comes from. So a flow can only be started with a short-lived, one-time
signed ticket (`connect_url()`, printed by `avatar-crm google connect` or followed by an admin's "Connect" in
the console), which only someone holding the server's secrets, or signed in to the console as admin, can
mint; and replacing a connected account is announced (audit, log, staff notice).

Access-token refresh, and `invalid_grant` marking the connection disconnected, live in
`providers/google_api.py`, next to the API calls that trigger them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import InsecureTransportError, OAuth2Error
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import (
    AuditLog,
    GoogleConnection,
    GoogleConnectionStatus,
    OAuthState,
    Settings,
    get_settings,
    session_scope,
)
from models.types import utcnow
from providers.google_api import SCOPES

logger = logging.getLogger(__name__)

STATE_TTL = timedelta(minutes=10)
TICKET_TTL_SECONDS = 15 * 60
_DEFAULT_API_URL = "https://www.googleapis.com"
USERINFO_PATH = "/oauth2/v3/userinfo"


class OAuthError(Exception):
    """The callback cannot complete; the message is safe to show the person in the browser."""


class TicketUsed(Exception):
    """The connect ticket already started a sign-in: each link works once."""


class GoogleNotConfigured(Exception):
    """GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET are not set: there is nothing to connect with."""


@dataclass(frozen=True)
class Connected:
    account_email: str
    scopes: tuple[str, ...]
    missing_scopes: tuple[str, ...]  # asked for but not granted (the user may untick scopes)


@dataclass(frozen=True)
class ConnectionStatus:
    """What ops need to know about the Google connection, without any secret in it."""

    configured: bool
    state: str  # not-configured | not-connected | connected | disconnected | revoked
    account_email: str | None = None
    scopes: tuple[str, ...] = ()
    missing_scopes: tuple[str, ...] = ()
    reason: str | None = None
    connected_at: datetime | None = None
    updated_at: datetime | None = None
    access_token_expires_at: datetime | None = None


@dataclass(frozen=True)
class Revoked:
    account_email: str
    revoked_at_google: bool
    detail: str
    connection_id: int | None = None


# Writes the person's access-audit row in the transaction that marks the connection revoked (the console).
AuditRevocation = Callable[[Session, Revoked], None]


# --- start tickets -----------------------------------------------------------------------------------------


# `<expiry>.<ticket id>.<signature>`; ASCII only, so nothing a browser sends can trip the parsing up.
_TICKET = re.compile(r"(\d{1,12})\.([A-Za-z0-9_-]{16})\.([0-9a-f]{32})", re.ASCII)


def connect_url(now: float | None = None) -> str:
    """The link staff open to connect Google: /auth/google/start with a one-time ticket, for 15 minutes."""
    settings = get_settings()
    expires = int((now if now is not None else time.time()) + TICKET_TTL_SECONDS)
    ticket_id = secrets.token_urlsafe(12)
    ticket = f"{expires}.{ticket_id}.{_sign(settings, f'google-connect:{expires}:{ticket_id}')}"
    return f"{settings.public_base_url.rstrip('/')}/auth/google/start?{urlencode({'ticket': ticket})}"


def ticket_id(ticket: str | None, now: float | None = None) -> str | None:
    """The id of a genuine, unexpired ticket, else None. Whether it was used already is for
    `begin_authorization` to find out: it records the id, once."""
    match = _TICKET.fullmatch(ticket or "")
    if match is None:
        return None
    expires, ticket_id, signature = match.groups()
    if int(expires) < (now if now is not None else time.time()):
        return None
    settings, message = get_settings(), f"google-connect:{expires}:{ticket_id}"
    genuine = any(
        hmac.compare_digest(signature, _sign(settings, message, key)) for key in settings.session_secrets()
    )
    return ticket_id if genuine else None


# --- the flow ----------------------------------------------------------------------------------------------


def begin_authorization(session_id: str, ticket_id: str) -> str:
    """Google's consent URL for this browser session; remembers state and verifier until the callback.

    The ticket's id is stored with the state under a unique index, so a ticket starts one sign-in: a link
    seen on a shared screen or in an access log is useless once staff have opened it (states are kept a day,
    tickets live 15 minutes)."""
    settings = _require_configured()
    flow = _flow(settings)
    state = secrets.token_urlsafe(32)
    try:
        url, _ = flow.authorization_url(state=state, access_type="offline", prompt="consent")
    except InsecureTransportError as exc:  # oauthlib refuses to send anyone to a plain-http consent page
        raise GoogleNotConfigured(
            "GOOGLE_AUTH_URI must be an https:// URL (plain http only for a local fake, with "
            "OAUTHLIB_INSECURE_TRANSPORT=1)."
        ) from exc
    assert flow.code_verifier, "PKCE verifier was not generated"
    try:
        with session_scope() as session:
            stale = utcnow() - timedelta(days=1)
            session.execute(delete(OAuthState).where(OAuthState.created_at < stale))  # type: ignore[arg-type]
            session.add(
                OAuthState(
                    state_hash=_keyed_hash(settings, "state", state),
                    session_hash=_keyed_hash(settings, "session", session_id),
                    code_verifier=flow.code_verifier,
                    ticket_id=ticket_id,
                )
            )
    except IntegrityError as exc:
        logger.warning("a Google connect ticket was used a second time; refused")
        raise TicketUsed from exc
    return url


# Queues a staff notice (key, markdown body) in the session's transaction; the gateway passes the flows' one.
NotifyStaff = Callable[[Session, str, str], None]


def complete_authorization(
    session_id: str | None,
    state: str | None,
    code: str | None,
    error: str | None = None,
    *,
    notify_staff: NotifyStaff | None = None,
) -> Connected:
    """Check the callback against what `begin_authorization` stored, exchange the code, store the account."""
    settings = _require_configured()
    verifier = _claim_state(settings, session_id, state)
    if error:
        raise OAuthError(f"Google did not grant access ({error[:100]}). Nothing was connected.")
    if not code:
        raise OAuthError("Google's answer carried no authorization code. Start again.")
    if not verifier:
        raise OAuthError(
            "No PKCE code verifier was kept for this sign-in, so it cannot complete. Start again."
        )
    token = _exchange(settings, state or "", code, verifier)
    refresh_token = token.get("refresh_token")
    if not refresh_token:
        raise OAuthError(
            "Google issued no refresh token, so the connection would stop working within the hour. "
            "Remove this app at https://myaccount.google.com/permissions and connect again."
        )
    scope = token.get("scope") or ""  # oauthlib hands it back as a list, Google sends a string
    granted = tuple(scope.split() if isinstance(scope, str) else (str(s) for s in scope)) or SCOPES
    email = _account_email(settings, str(token["access_token"]))
    expires_in = token.get("expires_in")
    expires_at = utcnow() + timedelta(seconds=int(expires_in)) if expires_in else None
    _store_connection(
        email, str(refresh_token), granted, str(token["access_token"]), expires_at, notify_staff
    )
    missing = tuple(scope for scope in SCOPES if scope not in granted)
    logger.info("Google account connected; scopes granted: %s", " ".join(granted))
    return Connected(email, granted, missing)


def _claim_state(settings: Settings, session_id: str | None, state: str | None) -> str:
    """Burn the state (single use, even if what follows fails) and return its code verifier."""
    if not state:
        raise OAuthError("The sign-in answer carried no state. Start again from the connect link.")
    state_hashes = _keyed_hashes(settings, "state", state)  # SESSION_SECRET, and a previous one in its grace
    now = utcnow()
    with session_scope() as session:
        row = session.exec(select(OAuthState).where(OAuthState.state_hash.in_(state_hashes))).first()  # type: ignore[attr-defined]
        if row is None:
            raise OAuthError("This sign-in is unknown (state mismatch). Start again from the connect link.")
        claimed = session.execute(
            update(OAuthState)
            .where(OAuthState.id == row.id, OAuthState.used_at.is_(None))  # type: ignore[union-attr]
            .values(used_at=now)
        )
        if claimed.rowcount != 1:
            raise OAuthError("This sign-in link was already used. Start again from the connect link.")
        verifier, created_at, session_hash = row.code_verifier, row.created_at, row.session_hash
    if created_at < now - STATE_TTL:
        raise OAuthError("This sign-in took too long and expired. Start again from the connect link.")
    if not session_id or not any(
        hmac.compare_digest(session_hash, h) for h in _keyed_hashes(settings, "session", session_id)
    ):
        raise OAuthError(
            "This sign-in was started in another browser (or cookies are blocked). "
            "Start again from the connect link, in this browser."
        )
    return verifier


def _exchange(settings: Settings, state: str, code: str, verifier: str) -> dict[str, Any]:
    flow = _flow(settings, state=state, code_verifier=verifier)
    try:
        return dict(flow.fetch_token(code=code, timeout=settings.google_timeout_seconds))
    except Warning as changed:  # oauthlib: the user granted fewer scopes than asked; the token is fine
        token = getattr(changed, "token", None)
        if token is None:
            raise
        return dict(token)
    except InsecureTransportError as exc:
        raise OAuthError("GOOGLE_TOKEN_URI must be an https:// URL.") from exc
    except OAuth2Error as exc:
        logger.warning("Google refused the authorization code: %s", exc.error)
        raise OAuthError(f"Google refused the sign-in ({exc.error}). Start again.") from exc
    except (requests.RequestException, ValueError) as exc:
        logger.warning("token exchange failed: %s", type(exc).__name__)
        raise OAuthError("Could not complete the sign-in with Google just now. Try again shortly.") from exc


def _account_email(settings: Settings, access_token: str) -> str:
    url = (settings.google_api_url or _DEFAULT_API_URL).rstrip("/") + USERINFO_PATH
    try:
        response = requests.get(
            url, headers={"Authorization": f"Bearer {access_token}"}, timeout=settings.google_timeout_seconds
        )
        response.raise_for_status()
        email = response.json().get("email")
    except (requests.RequestException, ValueError) as exc:
        raise OAuthError("Could not learn which Google account this is. Start again.") from exc
    if not isinstance(email, str) or "@" not in email:
        raise OAuthError("Google did not say which account this is (the email scope was not granted).")
    return email.strip().lower()


def _store_connection(
    email: str,
    refresh_token: str,
    scopes: tuple[str, ...],
    access_token: str,
    expires_at: datetime | None,
    notify_staff: NotifyStaff | None,
) -> None:
    """One row per account; connecting another account retires the previous one (one mailbox at a time).

    Replacing a connected account changes whose mailbox patients' email comes from, so it is never silent:
    a `google.replaced` audit row, a warning in the log and a staff notice (queued with the change; the
    reminder sweep delivers it within a minute).
    """
    now = utcnow()
    with session_scope() as session:
        replaced = list(
            session.exec(
                select(GoogleConnection).where(
                    GoogleConnection.account_email != email,
                    GoogleConnection.status == GoogleConnectionStatus.CONNECTED,
                )
            )
        )
        for other in replaced:
            other.status, other.status_reason = GoogleConnectionStatus.REVOKED, f"replaced by {email}"
            other.access_token, other.updated_at = None, now
            session.add(other)
        connection = session.exec(
            select(GoogleConnection).where(GoogleConnection.account_email == email)
        ).first() or GoogleConnection(account_email=email, refresh_token=refresh_token, scopes="")
        connection.refresh_token = refresh_token
        connection.scopes = " ".join(scopes)
        connection.status = GoogleConnectionStatus.CONNECTED
        connection.status_reason = None
        connection.access_token = access_token
        connection.access_token_expires_at = expires_at
        connection.connected_at = connection.updated_at = now
        session.add(connection)
        session.flush()
        session.add(
            AuditLog(
                actor="staff",
                action="google.connected",
                entity_type="google_connection",
                entity_id=connection.id,
                detail={"account": email, "scopes": list(scopes)},
            )
        )
        for other in replaced:
            _announce_replacement(session, other, connection, now, notify_staff)


def _announce_replacement(
    session: Session,
    previous: GoogleConnection,
    current: GoogleConnection,
    now: datetime,
    notify_staff: NotifyStaff | None,
) -> None:
    logger.warning(
        "the connected Google account (connection %s) was REPLACED by another (connection %s)",
        previous.id,
        current.id,
    )
    session.add(
        AuditLog(
            actor="staff",
            action="google.replaced",
            entity_type="google_connection",
            entity_id=current.id,
            detail={"previous": previous.account_email, "account": current.account_email},
        )
    )
    body = (  # ids only: the notice is readable through Prefect's API; `google status` names the account
        f"**Google account replaced**: patient email and calendar events now go through Google connection "
        f"#{current.id} instead of #{previous.id}. Check `avatar-crm google status`; if nobody at the clinic "
        "did this, run `avatar-crm google disconnect` at once and connect the clinic's account again."
    )
    if notify_staff is not None:
        notify_staff(session, f"google-replaced:{current.id}:{now.isoformat()}", body)


# --- disconnecting and status ------------------------------------------------------------------------------


def revoke(audit: AuditRevocation | None = None) -> Revoked | None:
    """Revoke the refresh token at Google and mark the connection REVOKED; None if nothing is connected.

    The connection stops being used even if Google cannot be reached; the token is then kept (encrypted)
    so that running this again can still revoke it at Google. `audit`, when given, records who did it in the
    same transaction as the change.
    """
    settings = get_settings()
    with session_scope() as session:
        rows = session.exec(
            select(GoogleConnection).order_by(GoogleConnection.updated_at.desc())  # type: ignore[attr-defined]
        ).all()
        # The connected account first; else one whose token Google may still honour (empty = revoked there).
        live = [r for r in rows if r.refresh_token]
        connection = next((r for r in live if r.status == GoogleConnectionStatus.CONNECTED), None) or next(
            iter(live), None
        )
        if connection is None:
            return None
        connection_id, email, token = connection.id, connection.account_email, connection.refresh_token
    revoked_at_google, detail = _revoke_at_google(settings, token)
    with session_scope() as session:
        connection = session.get(GoogleConnection, connection_id)
        assert connection is not None
        connection.status = GoogleConnectionStatus.REVOKED
        connection.status_reason = f"disconnected by staff; {detail}"[:500]
        connection.access_token = None
        connection.access_token_expires_at = None
        if revoked_at_google:
            connection.refresh_token = ""
        connection.updated_at = utcnow()
        session.add(connection)
        session.add(
            AuditLog(
                actor="staff",
                action="google.disconnected",
                entity_type="google_connection",
                entity_id=connection_id,
                detail={"account": email, "revoked_at_google": revoked_at_google},
            )
        )
        result = Revoked(email, revoked_at_google, detail, connection_id)
        if audit is not None:
            audit(session, result)
    return result


def _revoke_at_google(settings: Settings, token: str) -> tuple[bool, str]:
    try:
        response = requests.post(
            settings.google_revoke_uri,
            data={"token": token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=settings.google_timeout_seconds,
        )
    except requests.RequestException as exc:
        return False, f"Google could not be reached to revoke the token ({type(exc).__name__}); run again"
    if response.status_code == 200:
        return True, "revoked at Google"
    if response.status_code == 400:  # invalid_token: already revoked or expired at Google
        return True, "Google already considered the token revoked or expired"
    return False, f"Google answered HTTP {response.status_code} to the revocation; run again"


def connection_status() -> ConnectionStatus:
    """The connection ops should look at: the connected one, else the most recently changed one."""
    settings = get_settings()
    with session_scope() as session:
        rows = session.exec(
            select(GoogleConnection).order_by(GoogleConnection.updated_at.desc())  # type: ignore[attr-defined]
        ).all()
        row = next(
            (r for r in rows if r.status == GoogleConnectionStatus.CONNECTED), rows[0] if rows else None
        )
        if row is None:
            state = "not-connected" if settings.google_configured else "not-configured"
            return ConnectionStatus(configured=settings.google_configured, state=state)
        scopes = tuple(row.scopes.split())
        return ConnectionStatus(
            configured=settings.google_configured,
            state=row.status if settings.google_configured else "not-configured",
            account_email=row.account_email,
            scopes=scopes,
            missing_scopes=tuple(s for s in SCOPES if s not in scopes),
            reason=row.status_reason,
            connected_at=row.connected_at,
            updated_at=row.updated_at,
            access_token_expires_at=row.access_token_expires_at,
        )


# --- helpers -----------------------------------------------------------------------------------------------


def _require_configured() -> Settings:
    settings = get_settings()
    if not settings.google_configured:
        raise GoogleNotConfigured(
            "Google is not configured: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET "
            "(an OAuth client of type 'Web application' whose redirect URI is "
            f"{settings.google_oauth_redirect_uri})."
        )
    return settings


def _flow(settings: Settings, *, state: str | None = None, code_verifier: str | None = None) -> Flow:
    assert settings.google_client_secret is not None
    config = {
        "web": {
            "client_id": settings.google_client_id,
            "client_secret": settings.google_client_secret.get_secret_value(),
            "auth_uri": settings.google_auth_uri,
            "token_uri": settings.google_token_uri,
            "redirect_uris": [settings.google_oauth_redirect_uri],
        }
    }
    return Flow.from_client_config(
        config,
        scopes=list(SCOPES),
        redirect_uri=settings.google_oauth_redirect_uri,
        state=state,
        code_verifier=code_verifier,
        autogenerate_code_verifier=code_verifier is None,
    )


def _keyed_hash(settings: Settings, purpose: str, value: str) -> str:
    return hmac.new(
        settings.require_session_secret(), f"{purpose}:{value}".encode(), hashlib.sha256
    ).hexdigest()


def _keyed_hashes(settings: Settings, purpose: str, value: str) -> list[str]:
    """The value's keyed hash under each session secret still accepted (current first)."""
    message = f"{purpose}:{value}".encode()
    return [hmac.new(key, message, hashlib.sha256).hexdigest() for key in settings.session_secrets()]


def _sign(settings: Settings, message: str, key: bytes | None = None) -> str:
    key = key if key is not None else settings.require_session_secret()
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]
