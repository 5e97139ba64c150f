"""Signed tokens for email engagement tracking: the open pixel and click-tracking redirects.

A token carries the outbox message id and, for a click, the exact destination URL we put in the message, and
is signed with HMAC-SHA256 under a key derived from `SESSION_SECRET`. The gateway redirects only to a URL a
valid token names, so the tracking route can never be used as an open redirect: changing one character of the
token (the URL, the message id, the kind, or the signature) makes it worthless. Flows sign (when a message is
sent), the gateway verifies (when a patient opens or clicks), so this module sits in `providers/`, which both
may import.

Format: `base64url(payload) "." base64url(mac)`, payload = compact JSON `{"k": kind, "m": id[, "u": url]}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from models import get_settings

TrackingKind = Literal["open", "click"]

MAX_TOKEN_LENGTH = 4096  # longer is not ours; refuse before doing any work
_KEY_LABEL = b"avatar-crm email tracking v1"  # domain separation: OAuth state signing uses the same secret


class InvalidDestination(ValueError):
    """Only absolute http(s) URLs are tracked (and so only they can ever be redirected to)."""


@dataclass(frozen=True)
class TrackingClaim:
    kind: TrackingKind
    message_id: int
    url: str | None = None


def _key(secret: bytes | None = None) -> bytes:
    base = secret if secret is not None else get_settings().require_session_secret()
    return hmac.new(base, _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_trackable_url(url: str) -> bool:
    """An absolute http(s) URL with a host, printable ASCII without spaces (control characters could split
    the redirect's headers): what a patient's browser may safely be sent to."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (
        parts.scheme in {"http", "https"}
        and bool(parts.hostname)
        and url.isascii()  # it goes into a Location header as is
        and url.isprintable()
        and " " not in url
    )


def _sign(payload: dict[str, object], secret: bytes | None) -> str:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(_key(secret), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def open_token(message_id: int, *, secret: bytes | None = None) -> str:
    return _sign({"k": "open", "m": message_id}, secret)


def click_token(message_id: int, url: str, *, secret: bytes | None = None) -> str:
    if not is_trackable_url(url):
        raise InvalidDestination("only absolute http(s) URLs can be click-tracked")
    return _sign({"k": "click", "m": message_id, "u": url}, secret)


def verify(
    token: str, kind: TrackingKind, *, secret: bytes | Sequence[bytes] | None = None
) -> TrackingClaim | None:
    """The claim a genuine token of this kind makes, or None for anything forged, altered or malformed.
    Several secrets: signed by any of them (SESSION_SECRET and, in its grace period, the previous one)."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    body_b64, mac_b64 = token.split(".")
    try:
        body, mac = _unb64(body_b64), _unb64(mac_b64)
    except (binascii.Error, ValueError):
        return None
    if isinstance(secret, bytes):
        secrets = [secret]
    else:
        secrets = list(secret) if secret is not None else get_settings().session_secrets()
    if not any(hmac.compare_digest(mac, hmac.new(_key(s), body, hashlib.sha256).digest()) for s in secrets):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("k") != kind:
        return None
    message_id = payload.get("m")
    if not isinstance(message_id, int) or isinstance(message_id, bool) or message_id < 1:
        return None
    if kind == "open":
        return TrackingClaim("open", message_id)
    url = payload.get("u")
    if not isinstance(url, str) or not is_trackable_url(url):
        return None  # we never sign such a URL; refuse it even if the key had leaked
    return TrackingClaim("click", message_id, url)
