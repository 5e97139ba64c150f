"""The one way anything here talks to Google's APIs (Gmail, Calendar, People) on the clinic's behalf.

Discovery documents come from the copies bundled with google-api-python-client (no network to build a
client); `GOOGLE_API_URL` points all three APIs at one base URL, with each API's real path beneath it, so a
local fake serves them in tests exactly as Google lays them out. Errors are sorted into the three things a
caller can do about them: retry later (`GoogleTemporaryError`), give up on this item (`GooglePermanentError`),
or wait for a person to reconnect the account (`GoogleNotConnected`), which delays work and drops nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import HttpError
from sqlmodel import Session, select

from models import GoogleConnection, GoogleConnectionStatus, get_settings, session_scope
from models.types import utcnow
from providers.retry import GOOGLE

logger = logging.getLogger(__name__)

GoogleApi = Literal["gmail", "calendar", "people"]

# Least privilege: send mail (not read it), edit events (not calendars), read contacts.
SCOPES = (
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/contacts.readonly",
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
)
_VERSIONS: dict[str, str] = {"gmail": "v1", "calendar": "v3", "people": "v1"}
_SERVICE_PATHS: dict[str, str] = {"gmail": "", "calendar": "calendar/v3/", "people": ""}


class GoogleNotConnected(Exception):
    """No usable Google connection: nobody connected one, staff revoked it, or Google refused its token."""


class GoogleTemporaryError(Exception):
    """Google (or the network) failed in a way that trying again later can fix."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class GooglePermanentError(Exception):
    """Google refused the request itself; sending it again would fail the same way."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


def active_connection() -> GoogleConnection | None:
    with session_scope() as session:
        connection = session.exec(
            select(GoogleConnection)
            .where(GoogleConnection.status == GoogleConnectionStatus.CONNECTED)
            .order_by(GoogleConnection.updated_at.desc())  # type: ignore[attr-defined]
        ).first()
        if connection is not None:
            session.expunge(connection)
        return connection


class StoredCredentials(Credentials):
    """Credentials that write each refreshed access token back to their `GoogleConnection` row.

    Without this every process start (and every flow run) would refresh again; with it the hour-long access
    token is shared until it expires. The refresh token itself never changes here.
    """

    def __init__(self, connection_id: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_id = connection_id

    def refresh(self, request: Any) -> None:
        try:
            super().refresh(request)
        except RefreshError as exc:
            if "invalid_grant" in str(exc):
                reason = f"Google refused the refresh token (invalid_grant): {exc}"[:500]
                if not mark_disconnected(self.connection_id, self.refresh_token, reason):
                    # Staff reconnected since these credentials were loaded: the refusal is about a token
                    # the CRM no longer holds, and the next attempt loads the new one.
                    raise GoogleTemporaryError(
                        "Google refused a refresh token that a reconnect has since replaced; retrying with "
                        "the new connection"
                    ) from exc
            raise
        save_access_token(self.connection_id, self.refresh_token, self.token, self.expiry)


def save_access_token(
    connection_id: int, refresh_token: str | None, token: str | None, expiry: datetime | None
) -> None:
    """Remember a freshly issued access token (encrypted) and when it expires (google-auth: naive UTC), if
    the connection still holds the refresh token it came from (not one a reconnect has replaced since)."""
    with session_scope() as session:
        connection = _still_holding(session, connection_id, refresh_token)
        if connection is None:
            return
        connection.access_token = token
        connection.access_token_expires_at = expiry.replace(tzinfo=UTC) if expiry else None
        connection.updated_at = utcnow()
        session.add(connection)


def _still_holding(
    session: Session, connection_id: int, refresh_token: str | None
) -> GoogleConnection | None:
    """The connection, locked, if it is still connected with this refresh token: credentials loaded before a
    reconnect (a new token on the same row, or another account) must not write over the new connection."""
    connection = session.get(GoogleConnection, connection_id, with_for_update=True)
    if (
        connection is None
        or connection.status != GoogleConnectionStatus.CONNECTED
        or connection.refresh_token != refresh_token
    ):
        return None
    return connection


def load_credentials() -> Credentials:
    """The connected account's credentials; google-auth refreshes the access token when it expires."""
    return _credentials_for(_require_connection())


def _require_connection() -> GoogleConnection:
    settings = get_settings()
    if not settings.google_configured:
        raise GoogleNotConnected("Google is not configured (GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET unset)")
    connection = active_connection()
    if connection is None:
        raise GoogleNotConnected("no Google account is connected; run `avatar-crm google connect`")
    return connection


def _credentials_for(connection: GoogleConnection) -> Credentials:
    settings = get_settings()
    assert settings.google_client_secret is not None
    assert connection.id is not None
    return StoredCredentials(
        connection.id,
        token=connection.access_token,
        refresh_token=connection.refresh_token,
        token_uri=settings.google_token_uri,
        client_id=settings.google_client_id,
        client_secret=settings.google_client_secret.get_secret_value(),
        scopes=connection.scopes.split(),
        expiry=(
            connection.access_token_expires_at.replace(tzinfo=None)  # google-auth compares naive UTC
            if connection.access_token_expires_at
            else None
        ),
    )


def build_service(api: GoogleApi, credentials: Credentials | None = None, http: Any = None) -> Resource:
    """A client for one API. `http` (e.g. an `HttpMockSequence`) replaces the network in offline tests."""
    settings = get_settings()
    options: dict[str, str] = {}
    if settings.google_api_url:
        options["api_endpoint"] = f"{settings.google_api_url.rstrip('/')}/{_SERVICE_PATHS[api]}"
    if http is None:
        credentials = credentials or load_credentials()
        http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=settings.google_timeout_seconds)
        )
    return build(
        api,
        _VERSIONS[api],
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options=options or None,
    )


class BatchService:
    """One client for a batch of calls made one after another (the sweep's calendar catch-up), built once.

    Why: a client per item rebuilds the API from its bundled discovery document (0.5-1.5 ms), makes new
    credentials from the database, and opens a new HTTPS connection to Google (a TLS handshake) for every
    item; a batch of 50 bookings a minute needs all of that once. A single call (one booking, one email)
    keeps `build_service` per call: nothing to share.

    Why it is safe:
    - googleapiclient's `Resource` and httplib2's `Http` are not thread-safe. A batch uses its client
      strictly one call at a time: each call runs in a worker thread (`asyncio.to_thread`), and the next
      starts only after the previous one was awaited, so consecutive calls may run on different pool
      threads but never at the same time, and each hand-over is ordered by the event loop. Never share one
      across concurrent work (`gather`, several workers): give each worker its own `BatchService`.
    - Credentials: one google-auth `StoredCredentials` object serves the batch, so an access token expiring
      mid-batch is refreshed once and written back; `invalid_grant` marks the connection disconnected (if
      it still holds that token) and `execute` raises `GoogleNotConnected`, ending the batch as before.
    - The connection is still looked up for every item (one indexed query; building per item did the
      same), so staff disconnecting Google stops the batch at the next item (`GoogleNotConnected`), and a
      reconnect (`connected_at` changes, perhaps a new account or refresh token) gets a new client: no item
      uses credentials the CRM no longer holds.
    - It lives for one batch (a `with` block), not the process: between sweeps the connection may change,
      worker threads are pooled and shared, and an idle keep-alive connection goes stale.
    """

    def __init__(self, api: GoogleApi) -> None:
        self.api: GoogleApi = api
        self._service: Resource | None = None
        self._built_for: tuple[int | None, datetime] | None = None

    def get(self) -> Resource:
        """The batch's client (building it on first use); blocking: call it from the worker thread."""
        connection = _require_connection()
        built_for = (connection.id, connection.connected_at)
        if self._service is None or self._built_for != built_for:
            self.close()
            self._service = build_service(self.api, _credentials_for(connection))
            self._built_for = built_for
        return self._service

    def close(self) -> None:
        """Close the client's sockets (httplib2 leaves them open)."""
        if self._service is not None:
            self._service.close()
            self._service = None

    def __enter__(self) -> BatchService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def mark_disconnected(connection_id: int, refresh_token: str | None, reason: str) -> bool:
    """Google refused this connection's refresh token: stop using it and let ops see why, until someone
    reconnects. Only if the row still holds that token: a request that loaded its credentials before staff
    reconnected (same account with a new token, or another account) must not disconnect the new connection.
    Returns whether it disconnected."""
    with session_scope() as session:
        connection = _still_holding(session, connection_id, refresh_token)
        if connection is None:
            logger.warning("Google refused a refresh token the CRM no longer uses; connection unchanged")
            return False
        connection.status = GoogleConnectionStatus.DISCONNECTED
        connection.status_reason = reason[:500]
        connection.access_token = None
        connection.updated_at = utcnow()
        session.add(connection)
    logger.error("Google connection disconnected: %s", reason)
    return True


def execute(request: Any) -> Any:
    """Run one API request, turning every failure into one of this module's three errors."""
    try:
        return request.execute(num_retries=0)
    except RefreshError as exc:
        if "invalid_grant" in str(exc):  # `StoredCredentials.refresh` has marked the connection disconnected
            raise GoogleNotConnected("the Google connection was revoked or expired; reconnect it") from exc
        raise GoogleTemporaryError(f"token refresh failed: {exc}") from exc
    except HttpError as exc:
        status = int(exc.resp.status)
        reason = _error_reason(exc)
        if status in GOOGLE:
            retry_after = exc.resp.get("retry-after")
            raise GoogleTemporaryError(
                f"HTTP {status}: {reason}", float(retry_after) if retry_after else None
            ) from exc
        raise GooglePermanentError(f"HTTP {status}: {reason}", status) from exc
    except (TransportError, httplib2.HttpLib2Error, OSError, TimeoutError) as exc:
        raise GoogleTemporaryError(f"{type(exc).__name__}: {exc}") from exc


def _error_reason(exc: HttpError) -> str:
    try:
        payload = json.loads(exc.content.decode("utf-8", "replace"))
        error = payload.get("error", {})
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or exc.reason)[:300]
    except (ValueError, AttributeError):
        pass
    return str(exc.reason)[:300]


def error_status(exc: Exception) -> int | None:
    """The HTTP status behind a permanent error (409 from a Calendar insert means the id already exists)."""
    return exc.status if isinstance(exc, GooglePermanentError) else None
