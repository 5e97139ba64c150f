"""Signing staff in with Google (OpenID Connect, authorization code flow with PKCE), for the console.

The issuer's discovery document names the endpoints and the key set; both come from GOOGLE_OIDC_ISSUER
(https://accounts.google.com, a local fake in tests), never from anything the browser sends. The ID token is
taken only from the token endpoint (a back-channel request authenticated with the client secret) and is still
verified in full with PyJWT: signature against the issuer's published keys, audience = our client id, issuer,
expiry and issue time, and the nonce bound to this browser's sign-in. Whether the person may then use the
console (verified email, Workspace domain, on the staff list) is the caller's decision.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from models import Settings

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_TTL_SECONDS = 3600.0
SCOPE = "openid email profile"
LEEWAY_SECONDS = 30  # clock skew tolerated on exp/iat


class OIDCError(Exception):
    """Sign-in with Google did not produce a verified identity; the message is safe to show and log."""


@dataclass(frozen=True)
class Identity:
    """What the verified ID token says about the person."""

    subject: str
    email: str
    email_verified: bool
    hosted_domain: str | None


@dataclass(frozen=True)
class Challenge:
    """What this browser's sign-in must be completed with: kept server-side in the browser's session."""

    state: str
    nonce: str
    code_verifier: str

    @classmethod
    def new(cls) -> Challenge:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64))

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.code_verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Cache:
    """The discovery document and the key-set client per issuer, refreshed hourly (keys rotate at Google;
    PyJWKClient refetches by itself when a token names a key id it has not seen)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, tuple[float, dict[str, Any]]] = {}
        self._jwks: dict[str, jwt.PyJWKClient] = {}

    def document(self, issuer: str, timeout: float) -> dict[str, Any]:
        with self._lock:
            cached = self._documents.get(issuer)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_SECONDS:
            return cached[1]
        try:
            response = httpx.get(issuer.rstrip("/") + DISCOVERY_PATH, timeout=timeout)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OIDCError(
                f"Google's sign-in configuration could not be read ({type(exc).__name__})"
            ) from exc
        missing = [
            key
            for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(document.get(key), str)
        ]
        if missing:
            raise OIDCError(f"Google's sign-in configuration lacks {', '.join(missing)}")
        with self._lock:
            self._documents[issuer] = (time.monotonic(), document)
        return document

    def keys(self, jwks_uri: str, timeout: float) -> jwt.PyJWKClient:
        with self._lock:
            client = self._jwks.get(jwks_uri)
            if client is None:
                client = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=3600, timeout=timeout)
                self._jwks[jwks_uri] = client
            return client

    def clear(self) -> None:
        with self._lock:
            self._documents.clear()
            self._jwks.clear()


CACHE = _Cache()


def _client(settings: Settings) -> tuple[str, str]:
    if not settings.google_configured:
        raise OIDCError("Google is not configured (GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET)")
    assert settings.google_client_id and settings.google_client_secret
    return settings.google_client_id, settings.google_client_secret.get_secret_value()


def authorization_url(settings: Settings, challenge: Challenge) -> str:
    """Where to send the browser: Google's account chooser, limited to the Workspace domain when one is set
    (`hd` there is a convenience; the ID token's `hd` claim is what is checked)."""
    client_id, _ = _client(settings)
    document = CACHE.document(settings.google_oidc_issuer, settings.google_timeout_seconds)
    domains = sorted(settings.console_domains)
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": settings.console_redirect_uri,
        "state": challenge.state,
        "nonce": challenge.nonce,
        "code_challenge": challenge.code_challenge,
        "code_challenge_method": "S256",
        "prompt": "select_account",
        "hd": domains[0] if len(domains) == 1 else "*",
    }
    return f"{document['authorization_endpoint']}?{urlencode(params)}"


def _issuers(issuer: str) -> list[str]:
    """Google's ID tokens say `https://accounts.google.com` or, for legacy clients, `accounts.google.com`."""
    bare = issuer.removeprefix("https://")
    return [issuer, bare] if bare != issuer else [issuer]


def complete(settings: Settings, challenge: Challenge, code: str) -> Identity:
    """Exchange the code (with the PKCE verifier) and verify the ID token that comes back."""
    client_id, client_secret = _client(settings)
    document = CACHE.document(settings.google_oidc_issuer, settings.google_timeout_seconds)
    try:
        response = httpx.post(
            document["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": settings.console_redirect_uri,
                "client_id": client_id,
                "client_secret": client_secret,
                "code_verifier": challenge.code_verifier,
            },
            timeout=settings.google_timeout_seconds,
        )
    except httpx.HTTPError as exc:
        raise OIDCError(f"Google could not be reached ({type(exc).__name__})") from exc
    if response.status_code != 200:
        try:
            error = str(response.json().get("error", response.status_code))
        except ValueError:
            error = str(response.status_code)
        raise OIDCError(f"Google refused the sign-in code ({error})")
    id_token = response.json().get("id_token")
    if not isinstance(id_token, str):
        raise OIDCError("Google's answer carried no ID token")
    return verify_id_token(settings, id_token, challenge.nonce, document)


def verify_id_token(
    settings: Settings, id_token: str, nonce: str, document: dict[str, Any] | None = None
) -> Identity:
    client_id, _ = _client(settings)
    document = document or CACHE.document(settings.google_oidc_issuer, settings.google_timeout_seconds)
    try:
        key = CACHE.keys(document["jwks_uri"], settings.google_timeout_seconds).get_signing_key_from_jwt(
            id_token
        )
        claims = jwt.decode(
            id_token,
            key.key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=_issuers(document["issuer"]),
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise OIDCError("the ID token has expired") from exc
    except jwt.PyJWKClientError as exc:
        raise OIDCError(f"the ID token's signing key could not be found ({exc})") from exc
    except jwt.InvalidTokenError as exc:
        raise OIDCError(f"the ID token is not valid ({type(exc).__name__})") from exc
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OIDCError("the ID token was not issued for this sign-in (nonce)")
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise OIDCError("the ID token carries no email address")
    hd = claims.get("hd")
    return Identity(
        subject=str(claims["sub"]),
        email=email.strip().lower(),
        email_verified=claims.get("email_verified") is True,
        hosted_domain=hd.lower() if isinstance(hd, str) else None,
    )
