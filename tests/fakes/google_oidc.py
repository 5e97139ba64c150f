"""A fake Google OpenID Connect provider over real HTTP, for signing staff in to the console.

It serves what the console reads, in the shapes of Google's OIDC reference
(developers.google.com/identity/openid-connect/reference):
the discovery document at `/.well-known/openid-configuration` (issuer = the fake's own URL), the key set at
`/oauth2/v3/certs` (one RS256 key, a fresh test key per fake), the authorization endpoint at
`/o/oauth2/v2/auth`, which plays the person choosing an account and redirects straight back with `code`,
`state`, `scope`, `authuser`, `hd` and `prompt`, and the token endpoint at `/token`, which checks the client
credentials, the registered redirect URI, single use of the code and PKCE S256, and answers Google's
`{access_token, expires_in, scope, token_type, id_token}`.

Tests choose who signs in (`sign_in_as`) and may spoil the ID token (`spoil`: expired, wrong nonce, wrong
audience, signed by another key) to see the console refuse it.
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

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from litestar import Litestar, Request, Response, get, post
from litestar.response import Redirect

AUTH_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
CERTS_PATH = "/oauth2/v3/certs"


@dataclass
class Person:
    email: str
    hd: str | None = "clinic.example"
    email_verified: bool = True


@dataclass
class _Code:
    redirect_uri: str
    nonce: str
    challenge: str
    person: Person
    used: bool = False


class FakeGoogleOIDC:
    def __init__(
        self,
        client_id: str = "test-client-id.apps.googleusercontent.com",
        client_secret: str = "test-client-secret",  # noqa: S107 (a test value)
    ) -> None:
        from tests.servers import ThreadedServer

        self.client_id, self.client_secret = client_id, client_secret
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self.person = Person("reception@clinic.example")
        self.spoiled: str | None = None
        self.authorization_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self._server = ThreadedServer(self._app())

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> FakeGoogleOIDC:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def sign_in_as(
        self, email: str, *, hd: str | None = "clinic.example", email_verified: bool = True
    ) -> None:
        self.person, self.spoiled = Person(email, hd, email_verified), None

    def spoil(self, how: str) -> None:
        """The next ID tokens are `expired`, carry a `wrong-nonce`, a `wrong-audience`, or a `foreign-key`."""
        self.spoiled = how

    def env(self) -> dict[str, str]:
        return {
            "GOOGLE_CLIENT_ID": self.client_id,
            "GOOGLE_CLIENT_SECRET": self.client_secret,
            "GOOGLE_OIDC_ISSUER": self.url,
        }

    # --- Google's endpoints --------------------------------------------------------------------------

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": self.url + AUTH_PATH,
            "device_authorization_endpoint": self.url + "/device/code",
            "token_endpoint": self.url + TOKEN_PATH,
            "userinfo_endpoint": self.url + "/v1/userinfo",
            "revocation_endpoint": self.url + "/revoke",
            "jwks_uri": self.url + CERTS_PATH,
            "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": [
                "aud",
                "email",
                "email_verified",
                "exp",
                "family_name",
                "given_name",
                "iat",
                "iss",
                "name",
                "picture",
                "sub",
            ],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
        }

    def _jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self._kid, "alg": "RS256", "use": "sig"}]}

    def _authorize(self, query: dict[str, str]) -> Response[Any]:
        self.authorization_requests.append(query)
        if query.get("client_id") != self.client_id:
            return Response("<h1>Error 401: invalid_client</h1>", status_code=401, media_type="text/html")
        if (
            query.get("response_type") != "code"
            or not query.get("redirect_uri")
            or "openid" not in query.get("scope", "").split()
        ):
            return Response("<h1>Error 400: invalid_request</h1>", status_code=400, media_type="text/html")
        code = "4/0A" + secrets.token_urlsafe(40)
        with self._lock:
            self._codes[code] = _Code(
                query["redirect_uri"], query.get("nonce", ""), query.get("code_challenge", ""), self.person
            )
        back = {
            "state": query.get("state", ""),
            "code": code,
            "scope": "email profile openid https://www.googleapis.com/auth/userinfo.email",
            "authuser": "0",
            "prompt": "consent",
        }
        if self.person.hd:
            back["hd"] = self.person.hd
        return Redirect(f"{query['redirect_uri']}?{urlencode(back)}", status_code=302)

    def _token(self, form: dict[str, str]) -> Response[Any]:
        self.token_requests.append(form)
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return Response({"error": "invalid_client", "error_description": "Unauthorized"}, status_code=401)
        with self._lock:
            code = self._codes.get(form.get("code", ""))
            if code is None or code.used or code.redirect_uri != form.get("redirect_uri"):
                return Response(
                    {"error": "invalid_grant", "error_description": "Bad Request"}, status_code=400
                )
            code.used = True
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
            return Response(
                {"error": "invalid_grant", "error_description": "Missing code verifier."}, status_code=400
            )
        return Response(
            {
                "access_token": "ya29." + secrets.token_urlsafe(40),
                "expires_in": 3599,
                "scope": "openid https://www.googleapis.com/auth/userinfo.email",
                "token_type": "Bearer",
                "id_token": self._id_token(code),
            }
        )

    def _id_token(self, code: _Code) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": str(int(hashlib.sha256(code.person.email.encode()).hexdigest()[:15], 16)),
            "email": code.person.email,
            "email_verified": code.person.email_verified,
            "at_hash": secrets.token_urlsafe(16),
            "nonce": code.nonce,
            "iat": now,
            "exp": now + 3600,
        }
        if code.person.hd:
            claims["hd"] = code.person.hd
        key: Any = self._key
        if self.spoiled == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif self.spoiled == "wrong-nonce":
            claims["nonce"] = secrets.token_urlsafe(32)
        elif self.spoiled == "wrong-audience":
            claims["aud"] = "someone-else.apps.googleusercontent.com"
        elif self.spoiled == "foreign-key":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self._kid})

    def _app(self) -> Litestar:
        fake = self

        @get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return fake._discovery()

        @get(CERTS_PATH)
        async def certs() -> dict[str, Any]:
            return fake._jwks()

        @get(AUTH_PATH)
        async def authorize(request: Request) -> Response[Any]:
            return fake._authorize(dict(request.query_params))

        @post(TOKEN_PATH, status_code=200)
        async def token(request: Request) -> Response[Any]:
            return fake._token(dict(await request.form()))

        return Litestar([discovery, certs, authorize, token], openapi_config=None)
