"""One fake Google over real HTTP: OAuth 2.0 (authorize, token, revoke, userinfo), Gmail send, Calendar
events and People connections, each under the path Google really serves it at.

Point the code under test at it with `GOOGLE_AUTH_URI=<url>/o/oauth2/v2/auth`, `GOOGLE_TOKEN_URI=<url>/token`,
`GOOGLE_REVOKE_URI=<url>/revoke` and `GOOGLE_API_URL=<url>` (see `FakeGoogle.env()`).

What it enforces, because our code must cope with it: client credentials (body or HTTP Basic) and the
registered redirect URI on the token endpoint; PKCE S256 (a code issued with a `code_challenge` is only
exchanged with the matching `code_verifier`); single-use codes; `Authorization: Bearer <token it issued>` on
every API call (401 otherwise, also once `expire_access_tokens()` ran); refresh tokens that can be revoked or
made to answer `invalid_grant`. Errors use Google's JSON shapes: the OAuth `{"error", "error_description"}`,
Calendar's `{"error": {"errors": [...], "code", "message"}}` and the People API's `google.rpc` style with
`details[].reason` (`EXPIRED_SYNC_TOKEN`).

Tests read `requests` (every request, in order), `sent_emails` (decoded MIME), `events`, `people`; script
failures with `fail(path_prefix, times, status)`; add contacts with `add_person` / `update_person` /
`delete_person`; approve or deny a consent screen with `approve(auth_url)` / `deny(auth_url)`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import itertools
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from litestar import Litestar, Request, Response, route
from litestar.params import FromPath

from tests.servers import FakeProvider, compact_json, json_or_none

AUTH_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
REVOKE_PATH = "/revoke"
USERINFO_PATH = "/oauth2/v3/userinfo"
GMAIL_SEND = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/messages/send$")
CALENDAR_EVENTS = re.compile(r"^/calendar/v3/calendars/(?P<calendar>[^/]+)/events(?:/(?P<event>[^/]+))?$")
PEOPLE_CONNECTIONS = re.compile(r"^/v1/people/me/connections$")
_BASE32HEX = re.compile(r"^[a-v0-9]{5,1024}$")

EXPIRED_SYNC_TOKEN_MESSAGE = "Sync token is expired. Clear local cache and retry call without the sync token."


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    email: str
    code_challenge: str | None
    code_challenge_method: str | None
    used: bool = False


@dataclass
class _Grant:
    """A refresh token and what it was granted."""

    client_id: str
    scope: str
    email: str
    revoked: bool = False


@dataclass
class _AccessToken:
    refresh_token: str | None
    scope: str
    email: str
    expires_at: float


@dataclass
class _Failure:
    prefix: str
    method: str | None
    status: int
    body: Any
    headers: dict[str, str]
    remaining: int


@dataclass
class _PersonRecord:
    person: dict[str, Any]
    changed_seq: int
    deleted: bool = False


@dataclass
class _PageCursor:
    items: list[dict[str, Any]]
    offset: int
    sync_token: str | None
    params: dict[str, str] = field(default_factory=dict)


class FakeGoogle(FakeProvider):
    def __init__(
        self,
        client_id: str = "test-client-id.apps.googleusercontent.com",
        client_secret: str = "test-client-secret",  # noqa: S107 (a test value)
        *,
        account_email: str = "clinic@example.com",
        access_token_seconds: int = 3599,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.account_email = account_email
        self.access_token_seconds = access_token_seconds
        self._lock = threading.Lock()
        self.reset()

    # --- what tests read and set ---------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests: list[dict[str, Any]] = []
            self.authorization_requests: list[dict[str, str]] = []
            self.sent_emails: list[dict[str, Any]] = []
            self.calendars: dict[str, dict[str, dict[str, Any]]] = {}
            self.revoked_tokens: list[str] = []
            self._codes: dict[str, _Code] = {}
            self._grants: dict[str, _Grant] = {}
            self._access: dict[str, _AccessToken] = {}
            self._failures: list[_Failure] = []
            self._invalid_grant_refreshes = 0
            self._people: dict[str, _PersonRecord] = {}
            self._seq = 0
            self._min_sync_seq = 0
            self._page_cursors: dict[str, _PageCursor] = {}
            self._ids = itertools.count(1)

    def env(self) -> dict[str, str]:
        """The environment that points our Google code at this fake."""
        return {
            "GOOGLE_CLIENT_ID": self.client_id,
            "GOOGLE_CLIENT_SECRET": self.client_secret,
            "GOOGLE_AUTH_URI": self.url + AUTH_PATH,
            "GOOGLE_TOKEN_URI": self.url + TOKEN_PATH,
            "GOOGLE_REVOKE_URI": self.url + REVOKE_PATH,
            "GOOGLE_API_URL": self.url,
        }

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r["path"].startswith(path_prefix) and (method is None or r["method"] == method)
            ]

    def fail(
        self,
        path_prefix: str,
        times: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` requests whose path starts with `path_prefix` get `status` instead."""
        payload = body if body is not None else _google_error(status, _STATUS_TEXT.get(status, "Error"))
        with self._lock:
            self._failures.append(_Failure(path_prefix, method, status, payload, headers or {}, times))

    # OAuth ------------------------------------------------------------------------------------------

    def approve(
        self, auth_url: str | None = None, *, email: str | None = None, scope: str | None = None
    ) -> str:
        """The user clicks Allow: the URL Google redirects the browser to (redirect_uri?code=…&state=…).

        `auth_url` is the authorization URL our app produced (the last one the fake was shown by default);
        `scope` narrows what the user grants (Google lets users untick scopes)."""
        params = self._authorization_params(auth_url)
        code = "4/0" + secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                client_id=params.get("client_id", ""),
                redirect_uri=params.get("redirect_uri", ""),
                scope=scope if scope is not None else params.get("scope", ""),
                email=email or self.account_email,
                code_challenge=params.get("code_challenge"),
                code_challenge_method=params.get("code_challenge_method"),
            )
        query = {"code": code, "scope": scope if scope is not None else params.get("scope", "")}
        if "state" in params:
            query["state"] = params["state"]
        return _with_query(params.get("redirect_uri", ""), query)

    def deny(self, auth_url: str | None = None) -> str:
        """The user clicks Cancel: Google redirects with `error=access_denied`."""
        params = self._authorization_params(auth_url)
        query = {"error": "access_denied"}
        if "state" in params:
            query["state"] = params["state"]
        return _with_query(params.get("redirect_uri", ""), query)

    def invalid_grant_on_refresh(self, times: int = 1) -> None:
        """The next refreshes answer `invalid_grant`, as after a user revokes access or a token expires."""
        with self._lock:
            self._invalid_grant_refreshes += times

    def revoke_all_refresh_tokens(self) -> None:
        with self._lock:
            for grant in self._grants.values():
                grant.revoked = True

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (401), as an hour later."""
        with self._lock:
            for token in self._access.values():
                token.expires_at = 0.0

    def issue_tokens(self, scope: str = "", email: str | None = None) -> tuple[str, str]:
        """A (refresh_token, access_token) pair as if the clinic had connected, for tests that skip OAuth."""
        with self._lock:
            refresh = self._new_grant(self.client_id, scope, email or self.account_email)
            access = self._new_access(refresh, scope, email or self.account_email)
        return refresh, access

    @property
    def refresh_tokens(self) -> dict[str, bool]:
        """Every refresh token issued, and whether it still works."""
        with self._lock:
            return {token: not grant.revoked for token, grant in self._grants.items()}

    # Calendar ---------------------------------------------------------------------------------------

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        """Every event on every calendar by id (deleted ones stay, with status `cancelled`)."""
        with self._lock:
            return {
                event_id: copy.deepcopy(event)
                for calendar in self.calendars.values()
                for event_id, event in calendar.items()
            }

    def calendar_events(self, calendar_id: str = "primary") -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.calendars.get(calendar_id, {}))

    # People -----------------------------------------------------------------------------------------

    def add_person(
        self,
        given_name: str | None = None,
        family_name: str | None = None,
        *,
        emails: list[str] | None = None,
        phones: list[str] | None = None,
        resource_name: str | None = None,
    ) -> str:
        """A contact appears in the account; returns its resourceName (`people/c…`)."""
        with self._lock:
            name = resource_name or f"people/c{next(self._ids) * 7919 + 10_000_000}"
            self._seq += 1
            person = {"resourceName": name}
            self._people[name] = _PersonRecord(person, self._seq)
            _fill_person(person, given_name, family_name, emails or [], phones or [])
        return name

    def update_person(
        self,
        resource_name: str,
        given_name: str | None = None,
        family_name: str | None = None,
        *,
        emails: list[str] | None = None,
        phones: list[str] | None = None,
    ) -> None:
        """Replace the contact's names/emails/phones (None keeps what it had)."""
        with self._lock:
            record = self._people[resource_name]
            person = record.person
            old_given, old_family = _name_parts(person)
            _fill_person(
                person,
                given_name if given_name is not None else old_given,
                family_name if family_name is not None else old_family,
                emails if emails is not None else [e["value"] for e in person.get("emailAddresses", [])],
                phones if phones is not None else [p["value"] for p in person.get("phoneNumbers", [])],
            )
            self._seq += 1
            record.changed_seq = self._seq

    def delete_person(self, resource_name: str) -> None:
        with self._lock:
            record = self._people[resource_name]
            self._seq += 1
            record.changed_seq, record.deleted = self._seq, True

    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far is expired (as 7 days after the full sync)."""
        with self._lock:
            self._min_sync_seq = self._seq + 1

    @property
    def people(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {n: copy.deepcopy(r.person) for n, r in self._people.items() if not r.deleted}

    # --- the HTTP side --------------------------------------------------------------------------------

    def _app(self) -> Litestar:
        fake = self

        @route("/{path:path}", http_method=["GET", "POST", "PATCH", "PUT", "DELETE"])
        async def anything(request: Request, path: FromPath[str]) -> Response[bytes]:
            return await fake._handle(request)

        return Litestar([anything], openapi_config=None)

    async def _handle(self, request: Request) -> Response[bytes]:
        body = await request.body()
        path = request.scope["path"]
        method = request.method
        headers = {k.lower(): v for k, v in request.headers.items()}
        query = dict(parse_qsl(request.scope.get("query_string", b"").decode(), keep_blank_values=True))
        content_type = headers.get("content-type", "")
        form = (
            dict(parse_qsl(body.decode(), keep_blank_values=True))
            if "application/x-www-form-urlencoded" in content_type
            else {}
        )
        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "form": form,
            "json": json_or_none(body),
            "body": body,
            "received_at": time.time(),
        }
        with self._lock:
            self.requests.append(record)
            failure = self._take_failure(path, method)
        if failure is not None:
            status, payload, extra = failure.status, failure.body, failure.headers
        else:
            status, payload, extra = self._route(method, path, query, headers, form, body)
        record["status"] = status
        if status == 204:
            return Response(b"", status_code=204, headers=extra)
        if isinstance(payload, str):
            return Response(payload.encode(), status_code=status, headers=extra, media_type="text/html")
        return Response(
            compact_json(payload), status_code=status, headers=extra, media_type="application/json"
        )

    def _take_failure(self, path: str, method: str) -> _Failure | None:
        for failure in self._failures:
            matches = failure.method is None or failure.method == method
            if failure.remaining > 0 and path.startswith(failure.prefix) and matches:
                failure.remaining -= 1
                return failure
        return None

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        form: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        if path == AUTH_PATH and method == "GET":
            return self._authorize(query)
        if path == TOKEN_PATH and method == "POST":
            return self._token(form, headers)
        if path == REVOKE_PATH and method == "POST":
            return self._revoke(form.get("token") or query.get("token", ""))
        access = self._bearer(headers)
        if access is None:
            return 401, _google_error(401, "Invalid Credentials", reason="authError"), _WWW_AUTH
        if path == USERINFO_PATH and method == "GET":
            return 200, {"sub": _sub(access.email), "email": access.email, "email_verified": True}, {}
        if match := GMAIL_SEND.match(path):
            if method != "POST":
                return 405, _google_error(405, "Method Not Allowed"), {}
            return self._gmail_send(body)
        if match := CALENDAR_EVENTS.match(path):
            calendar = unquote(match["calendar"])
            event_id = unquote(match["event"]) if match["event"] else None
            return self._calendar(method, calendar, event_id, query, body)
        if PEOPLE_CONNECTIONS.match(path) and method == "GET":
            return self._connections(query)
        return 404, _google_error(404, "Not Found", reason="notFound"), {}

    # OAuth ------------------------------------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.authorization_requests.append(dict(query))
        if query.get("client_id") != self.client_id:
            return 400, "<h1>Error 401: invalid_client</h1><p>The OAuth client was not found.</p>", {}
        if query.get("response_type") != "code" or not query.get("redirect_uri"):
            return 400, "<h1>Error 400: invalid_request</h1>", {}
        return 200, "<h1>Sign in with Google</h1><p>(fake consent screen: tests call approve())</p>", {}

    def _authorization_params(self, auth_url: str | None) -> dict[str, str]:
        if auth_url is not None:
            return {k: v[-1] for k, v in parse_qs(urlsplit(auth_url).query).items()}
        with self._lock:
            assert self.authorization_requests, "no authorization request reached the fake"
            return dict(self.authorization_requests[-1])

    def _client_ok(self, form: dict[str, str], headers: dict[str, str]) -> bool:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = decoded.partition(":")
            client_id, client_secret = unquote(user), unquote(password)
        return (client_id, client_secret) == (self.client_id, self.client_secret)

    def _token(self, form: dict[str, str], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if not self._client_ok(form, headers):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}, {}
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                return self._exchange_code(form)
            if grant_type == "refresh_token":
                return self._refresh(form)
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, {}

    def _exchange_code(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.used:
            return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}, {}
        if form.get("redirect_uri") != code.redirect_uri:
            return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}, {}
        if code.code_challenge:
            verifier = form.get("code_verifier")
            if not verifier:
                return 400, {"error": "invalid_grant", "error_description": "Missing code verifier."}, {}
            if _s256(verifier) != code.code_challenge or code.code_challenge_method != "S256":
                return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}, {}
        code.used = True
        refresh = self._new_grant(code.client_id, code.scope, code.email)
        access = self._new_access(refresh, code.scope, code.email)
        return (
            200,
            {
                "access_token": access,
                "expires_in": self.access_token_seconds,
                "refresh_token": refresh,
                "scope": code.scope,
                "token_type": "Bearer",
                "id_token": _id_token(code.email, code.client_id),
            },
            {},
        )

    def _refresh(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        grant = self._grants.get(form.get("refresh_token", ""))
        if self._invalid_grant_refreshes > 0:
            self._invalid_grant_refreshes -= 1
            grant = None
        if grant is None or grant.revoked:
            return (
                400,
                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
                {},
            )
        access = self._new_access(form["refresh_token"], grant.scope, grant.email)
        return (
            200,
            {
                "access_token": access,
                "expires_in": self.access_token_seconds,
                "scope": grant.scope,
                "token_type": "Bearer",
            },
            {},
        )

    def _revoke(self, token: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.revoked_tokens.append(token)
            grant = self._grants.get(token)
            access = self._access.get(token)
            if grant is None and access is None:
                return 400, {"error": "invalid_token", "error_description": "Token expired or revoked"}, {}
            refresh = token if grant is not None else access.refresh_token if access else None
            if refresh and refresh in self._grants:
                self._grants[refresh].revoked = True  # revoking either token revokes the grant
            for value in self._access.values():
                if value.refresh_token == refresh or value is access:
                    value.expires_at = 0.0
        return 200, {}, {}

    def _new_grant(self, client_id: str, scope: str, email: str) -> str:
        token = "1//0" + secrets.token_urlsafe(32)
        self._grants[token] = _Grant(client_id, scope, email)
        return token

    def _new_access(self, refresh: str | None, scope: str, email: str) -> str:
        token = "ya29." + secrets.token_urlsafe(32)
        self._access[token] = _AccessToken(refresh, scope, email, time.time() + self.access_token_seconds)
        return token

    def _bearer(self, headers: dict[str, str]) -> _AccessToken | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        with self._lock:
            access = self._access.get(token.strip())
            if access is None or access.expires_at <= time.time():
                return None
            if access.refresh_token and self._grants[access.refresh_token].revoked:
                return None
            return access

    # Gmail ------------------------------------------------------------------------------------------

    def _gmail_send(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
        payload = json_or_none(body)
        raw = payload.get("raw") if isinstance(payload, dict) else None
        if not isinstance(raw, str) or not raw:
            return 400, _rpc_error(400, "Invalid value for ByteString: ", "INVALID_ARGUMENT"), {}
        try:
            mime = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            return 400, _rpc_error(400, "Invalid value for ByteString: " + raw[:40], "INVALID_ARGUMENT"), {}
        message: EmailMessage = BytesParser(policy=policy.default).parsebytes(mime)  # type: ignore[assignment]
        if not message.get("To") and not message.get("Cc") and not message.get("Bcc"):
            return 400, _rpc_error(400, "Recipient address required", "INVALID_ARGUMENT"), {}
        message_id = uuid.uuid4().hex[:16]
        thread_id = payload.get("threadId") or message_id
        with self._lock:
            self.sent_emails.append(
                {
                    "id": message_id,
                    "threadId": thread_id,
                    "raw": mime,
                    "message": message,
                    "to": str(message.get("To", "")),
                    "from": str(message.get("From", "")),
                    "subject": str(message.get("Subject", "")),
                    "headers": {k: str(v) for k, v in message.items()},
                    "text": _part_text(message, "plain"),
                    "html": _part_text(message, "html"),
                }
            )
        return 200, {"id": message_id, "threadId": thread_id, "labelIds": ["SENT"]}, {}

    # Calendar ---------------------------------------------------------------------------------------

    def _calendar(
        self, method: str, calendar_id: str, event_id: str | None, query: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        payload = json_or_none(body)
        with self._lock:
            calendar = self.calendars.setdefault(calendar_id, {})
            if event_id is None:
                if method == "POST":
                    return self._insert_event(calendar, calendar_id, payload)
                if method == "GET":
                    return 200, _list_events(calendar, query), {}
                return 405, _google_error(405, "Method Not Allowed"), {}
            event = calendar.get(event_id)
            if event is None:
                return 404, _calendar_error(404, "notFound", "Not Found"), {}
            if method == "GET":
                return 200, copy.deepcopy(event), {}
            if method == "DELETE":
                if event["status"] == "cancelled":
                    return 410, _calendar_error(410, "deleted", "Resource has been deleted"), {}
                event["status"] = "cancelled"
                _touch(event)
                return 204, None, {}
            if method in ("PATCH", "PUT"):
                if not isinstance(payload, dict):
                    return 400, _calendar_error(400, "parseError", "Parse Error"), {}
                if method == "PUT":
                    kept = {k: event[k] for k in _SERVER_FIELDS if k in event}
                    event.clear()
                    event.update(kept | {"status": "confirmed"})
                    payload = {k: v for k, v in payload.items() if k not in _SERVER_FIELDS}
                _merge(event, payload)
                event["id"] = event_id
                _touch(event)
                return 200, copy.deepcopy(event), {}
        return 405, _google_error(405, "Method Not Allowed"), {}

    def _insert_event(
        self, calendar: dict[str, dict[str, Any]], calendar_id: str, payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(payload, dict):
            return 400, _calendar_error(400, "parseError", "Parse Error"), {}
        if not payload.get("start") or not payload.get("end"):
            return 400, _calendar_error(400, "required", "Missing time zone definition for start time."), {}
        event_id = payload.get("id") or uuid.uuid4().hex
        if not _BASE32HEX.match(event_id):
            return 400, _calendar_error(400, "invalid", "Invalid resource id value."), {}
        if event_id in calendar:
            return 409, _calendar_error(409, "duplicate", "The requested identifier already exists."), {}
        now = _rfc3339()
        event = copy.deepcopy(payload) | {
            "kind": "calendar#event",
            "id": event_id,
            "status": payload.get("status", "confirmed"),
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "created": now,
            "updated": now,
            "iCalUID": f"{event_id}@google.com",
            "sequence": 0,
            "etag": f'"{time.time_ns()}"',
            "organizer": {"email": calendar_id, "self": True},
        }
        calendar[event_id] = event
        return 200, copy.deepcopy(event), {}

    # People -----------------------------------------------------------------------------------------

    def _connections(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        fields = [f for f in query.get("personFields", "").split(",") if f]
        if not fields:
            return (
                400,
                _rpc_error(
                    400,
                    "personFields mask is required. Please specify one or more valid paths.",
                    "INVALID_ARGUMENT",
                ),
                {},
            )
        try:
            page_size = int(query.get("pageSize", "100"))
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= 1000:
            return 400, _rpc_error(400, "Invalid pageSize", "INVALID_ARGUMENT"), {}
        params = {k: v for k, v in query.items() if k not in ("pageToken", "alt")}
        with self._lock:
            page_token = query.get("pageToken")
            if page_token:
                cursor = self._page_cursors.get(page_token)
                if cursor is None:
                    return 400, _rpc_error(400, "Page token is not valid.", "INVALID_ARGUMENT"), {}
                if cursor.params != params:
                    return (
                        400,
                        _rpc_error(
                            400,
                            "Parameters must match the call that provided the page token.",
                            "INVALID_ARGUMENT",
                        ),
                        {},
                    )
            else:
                sync_token = query.get("syncToken")
                if sync_token:
                    since = _sync_seq(sync_token)
                    if since is None or since < self._min_sync_seq:
                        return 400, _expired_sync_token(), {}
                    changed = [r for r in self._people.values() if r.changed_seq > since]
                else:
                    changed = [r for r in self._people.values() if not r.deleted]
                changed.sort(key=lambda r: r.changed_seq)
                items = [_person_view(r, fields) for r in changed]
                wants_token = bool(sync_token) or query.get("requestSyncToken", "").lower() == "true"
                cursor = _PageCursor(items, 0, f"sync-{self._seq}" if wants_token else None, params)
            page = cursor.items[cursor.offset : cursor.offset + page_size]
            response: dict[str, Any] = {
                "connections": page,
                "totalPeople": sum(1 for r in self._people.values() if not r.deleted),
                "totalItems": len(cursor.items),
            }
            if not page:
                response.pop("connections")
            if cursor.offset + page_size < len(cursor.items):
                token = secrets.token_urlsafe(12)
                self._page_cursors[token] = _PageCursor(
                    cursor.items, cursor.offset + page_size, cursor.sync_token, params
                )
                response["nextPageToken"] = token
            elif cursor.sync_token:
                response["nextSyncToken"] = cursor.sync_token
        return 200, response, {}


# --- shapes ------------------------------------------------------------------------------------------

_WWW_AUTH = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}
_STATUS_TEXT = {
    400: "Bad Request",
    401: "Invalid Credentials",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Rate Limit Exceeded",
    500: "Backend Error",
    502: "Bad Gateway",
    503: "The service is currently unavailable.",
    504: "Deadline Exceeded",
}
_SERVER_FIELDS = ("kind", "id", "htmlLink", "created", "iCalUID", "organizer")


def _google_error(code: int, message: str, *, reason: str = "backendError") -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


def _calendar_error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "errors": [{"domain": "global", "reason": reason, "message": message}],
            "code": code,
            "message": message,
        }
    }


def _rpc_error(code: int, message: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def _expired_sync_token() -> dict[str, Any]:
    return {
        "error": {
            "code": 400,
            "message": EXPIRED_SYNC_TOKEN_MESSAGE,
            "status": "FAILED_PRECONDITION",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "EXPIRED_SYNC_TOKEN",
                    "domain": "people.googleapis.com",
                }
            ],
        }
    }


def _fill_person(
    person: dict[str, Any], given: str | None, family: str | None, emails: list[str], phones: list[str]
) -> None:
    source = {"type": "CONTACT", "id": person["resourceName"].rsplit("/c", 1)[-1]}
    person["etag"] = "%" + secrets.token_urlsafe(12)
    person["metadata"] = {"sources": [{**source, "etag": person["etag"]}], "objectType": "PERSON"}
    display = " ".join(part for part in (given, family) if part)
    person["names"] = (
        [
            {
                "metadata": {"primary": True, "source": source},
                "displayName": display,
                "familyName": family,
                "givenName": given,
                "displayNameLastFirst": ", ".join(p for p in (family, given) if p),
                "unstructuredName": display,
            }
        ]
        if display
        else []
    )
    for entry in person["names"]:
        for key in ("familyName", "givenName"):
            if entry[key] is None:
                entry.pop(key)
    person["emailAddresses"] = [
        {"metadata": {"primary": i == 0, "source": source}, "value": value} for i, value in enumerate(emails)
    ]
    person["phoneNumbers"] = [
        {
            "metadata": {"primary": i == 0, "source": source},
            "value": value,
            "type": "mobile",
            "formattedType": "Mobile",
        }
        for i, value in enumerate(phones)
    ]


def _name_parts(person: dict[str, Any]) -> tuple[str | None, str | None]:
    names = person.get("names") or [{}]
    return names[0].get("givenName"), names[0].get("familyName")


def _person_view(record: _PersonRecord, fields: list[str]) -> dict[str, Any]:
    person = record.person
    if record.deleted:
        return {"resourceName": person["resourceName"], "etag": person["etag"], "metadata": {"deleted": True}}
    view = {"resourceName": person["resourceName"], "etag": person["etag"], "metadata": person["metadata"]}
    for name in fields:
        if person.get(name):
            view[name] = person[name]
    return copy.deepcopy(view)


def _sync_seq(token: str) -> int | None:
    try:
        return int(token.removeprefix("sync-"))
    except ValueError:
        return None


def _list_events(calendar: dict[str, dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    show_deleted = query.get("showDeleted", "").lower() == "true"
    items = []
    for event in calendar.values():
        if event["status"] == "cancelled" and not show_deleted:
            continue
        if "iCalUID" in query and event.get("iCalUID") != query["iCalUID"]:
            continue
        if "privateExtendedProperty" in query:
            key, _, value = query["privateExtendedProperty"].partition("=")
            private = event.get("extendedProperties", {}).get("private", {})
            if private.get(key) != value:
                continue
        items.append(copy.deepcopy(event))
    return {"kind": "calendar#events", "items": items}


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch semantics: nested objects merge, arrays and scalars replace."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _touch(event: dict[str, Any]) -> None:
    event["updated"] = _rfc3339()
    event["sequence"] = int(event.get("sequence", 0)) + 1
    event["etag"] = f'"{time.time_ns()}"'


def _part_text(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    return part.get_content() if part is not None else None  # type: ignore[attr-defined]


def _id_token(email: str, audience: str) -> str:
    """An OpenID id_token shape (unsigned: our code must not trust it for anything but display)."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(compact_json(data)).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "sub": _sub(email),
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    return f"{b64({'alg': 'RS256', 'kid': 'fake', 'typ': 'JWT'})}.{b64(claims)}.c2lnbmF0dXJl"


def _sub(email: str) -> str:
    return str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16))


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
