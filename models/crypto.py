"""Encryption at rest for patient contact details and stored webhook bodies.

One master key (`CRM_ENCRYPTION_KEY`, 32 random bytes, urlsafe base64) is stretched with HKDF into two
independent keys: one for AES-GCM encryption, one for the keyed hash ("blind index") that lets us find a
contact by phone or email without storing either in clear. Rotating the master key therefore changes both,
which is why the ciphertext carries a version byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

from models.settings import Settings, get_settings

_VERSION = b"\x01"
_NONCE_BYTES = 12


def generate_key() -> str:
    """A new master key in the format `CRM_ENCRYPTION_KEY` expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"avatar-crm", info=purpose).derive(master)


class Cipher:
    """AES-GCM for values, HMAC-SHA256 for lookups; both keyed from the one master key."""

    def __init__(self, master_key: bytes) -> None:
        try:
            raw = base64.urlsafe_b64decode(master_key)
        except ValueError as exc:
            raise ValueError("CRM_ENCRYPTION_KEY must be urlsafe base64") from exc
        if len(raw) < 32:
            raise ValueError("CRM_ENCRYPTION_KEY must decode to at least 32 bytes")
        self._aead = AESGCM(_derive(raw, b"encrypt-v1"))
        # Keyed once; each blind index continues a copy (a campaign hashes a thousand addresses per batch, and
        # keying a fresh HMAC each time cost 60 % more).
        self._index = hmac.new(_derive(raw, b"blind-index-v1"), digestmod=hashlib.sha256)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, blob: bytes) -> bytes:
        if blob[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        nonce, body = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        return self._aead.decrypt(nonce, body, None)

    def blind_index(self, kind: str, normalized_value: str) -> str:
        index = self._index.copy()
        index.update(f"{kind}:{normalized_value}".encode())
        return index.hexdigest()


@lru_cache(maxsize=4)
def _cipher_for(master_key: bytes) -> Cipher:
    return Cipher(master_key)


_current: tuple[Settings, Cipher] | None = None


def get_cipher() -> Cipher:
    """The cipher of the current settings.

    Called for every encrypted value read or written (a 100,000-recipient campaign: 200,000 times), so the
    cipher is remembered beside the settings object it was made for: asking the settings for their key
    through pydantic's private-attribute lookup and hashing it into the cache cost 3.5 times the AES-GCM
    decryption itself (measured with py-spy --gil on the campaign benchmark). New settings (a test's
    `get_settings.cache_clear()`) are a different object, so they get their own key's cipher.
    """
    global _current
    settings = get_settings()
    current = _current
    if current is None or current[0] is not settings:
        current = _current = (settings, _cipher_for(settings.require_encryption_key()))
    return current[1]


class EncryptedText(TypeDecorator[str]):
    """A text column stored AES-GCM encrypted; reads come back as plain `str`."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> bytes | None:
        return None if value is None else get_cipher().encrypt(value.encode())

    def process_result_value(self, value: bytes | None, dialect: object) -> str | None:
        return None if value is None else get_cipher().decrypt(bytes(value)).decode()


class EncryptedBytes(TypeDecorator[bytes]):
    """A binary column stored AES-GCM encrypted (raw webhook bodies)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: object) -> bytes | None:
        return None if value is None else get_cipher().encrypt(value)

    def process_result_value(self, value: bytes | None, dialect: object) -> bytes | None:
        return None if value is None else get_cipher().decrypt(bytes(value))
