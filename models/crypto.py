"""Encryption at rest for patient details, stored webhook bodies and tokens.

A key ring of master keys (`CRM_ENCRYPTION_KEYS`, newest first, or the single `CRM_ENCRYPTION_KEY`; each
32 random bytes, urlsafe base64). Each master key is stretched with HKDF into an AES-GCM key and a short key
id; new values are sealed with the newest key, and every ciphertext names the key that sealed it, so values
written before a rotation stay readable until `avatar-crm keys rotate` has re-sealed them.

Every value is sealed with associated data naming its table and column (`contact.phone`): a ciphertext
copied into another column (a patient's name into the booking's service, an email into a phone) fails to
decrypt instead of being read as the other field. The one deliberate exception is declared where it happens:
an outbox message's recipient may hold the contact's own email or phone ciphertext, copied by the campaign's
INSERT … SELECT.

The keyed hash ("blind index") that finds a contact by phone or email, or a booking by service, must not
change when the encryption key does (every stored hash and suppression would be lost), so it has its own,
stable root: `CRM_BLIND_INDEX_KEY` when set, else the oldest key of the ring — which for a clinic that has
never rotated is the one key it always had. Before the oldest key leaves the ring, its value moves to
`CRM_BLIND_INDEX_KEY` (docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

from models.settings import Settings, get_settings

LEGACY_VERSION = b"\x01"  # nonce + AES-GCM, no key id, no associated data (before migration 0011)
VERSION = b"\x02"  # version + key id + nonce + AES-GCM over (header + context)
KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_HEADER_BYTES = 1 + KEY_ID_BYTES


def generate_key() -> str:
    """A new master key in the format `CRM_ENCRYPTION_KEY(S)` expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"avatar-crm", info=purpose).derive(master)


def _decode_master(master_key: bytes) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(master_key)
    except ValueError as exc:
        raise ValueError("CRM_ENCRYPTION_KEY must be urlsafe base64") from exc
    if len(raw) < 32:
        raise ValueError("CRM_ENCRYPTION_KEY must decode to at least 32 bytes")
    return raw


def key_id(master_key: bytes) -> str:
    """The id a key's ciphertexts carry (hex), derived from the key so nobody has to name keys."""
    return _derive(_decode_master(master_key), b"key-id-v2")[:KEY_ID_BYTES].hex()


class UnknownKeyError(ValueError):
    """A ciphertext sealed by a key no longer in the ring (removed before `keys rotate` finished)."""


class Cipher:
    """AES-GCM for values (one key per ring entry), HMAC-SHA256 for lookups (one stable key)."""

    def __init__(self, master_key: bytes | Sequence[bytes], index_key: bytes | None = None) -> None:
        ring = [master_key] if isinstance(master_key, bytes) else list(master_key)
        if not ring:
            raise ValueError("the key ring is empty")
        self._keys: dict[bytes, AESGCM] = {}
        for master in ring:
            raw = _decode_master(master)
            kid = _derive(raw, b"key-id-v2")[:KEY_ID_BYTES]
            self._keys.setdefault(kid, AESGCM(_derive(raw, b"encrypt-v1")))
        self.key_ids = [kid.hex() for kid in self._keys]  # newest first
        self._current_id = next(iter(self._keys))
        self._current = self._keys[self._current_id]
        # Legacy values name no key: they were written when the ring had one key, the oldest one.
        self._legacy = AESGCM(_derive(_decode_master(ring[-1]), b"encrypt-v1"))
        index_root = _decode_master(index_key if index_key is not None else ring[-1])
        # Keyed once; each blind index continues a copy (a campaign hashes a thousand addresses per batch, and
        # keying a fresh HMAC each time cost 60 % more).
        self._index = hmac.new(_derive(index_root, b"blind-index-v1"), digestmod=hashlib.sha256)
        self.index_key_id = _derive(index_root, b"key-id-v2")[:KEY_ID_BYTES].hex()

    @property
    def current_key_id(self) -> str:
        return self._current_id.hex()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        """Seal `plaintext` for the column `context` ("table.column") with the newest key."""
        header = VERSION + self._current_id
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._current.encrypt(nonce, plaintext, header + context.encode())

    def decrypt(self, blob: bytes, context: str | Sequence[str]) -> bytes:
        """Open a value sealed for `context` (or any of several, tried in order); a value sealed for
        another column, or altered, raises `cryptography.exceptions.InvalidTag`."""
        if blob[:1] != VERSION:
            raise ValueError("unknown ciphertext version (run `avatar-crm migrate`)")
        header, nonce = blob[:_HEADER_BYTES], blob[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES]
        body = blob[_HEADER_BYTES + _NONCE_BYTES :]
        aead = self._keys.get(header[1:])
        if aead is None:
            raise UnknownKeyError(
                f"ciphertext sealed by key {header[1:].hex()}, which is not in the key ring"
            )
        contexts = [context] if isinstance(context, str) else list(context)
        for candidate in contexts[:-1]:
            try:
                return aead.decrypt(nonce, body, header + candidate.encode())
            except Exception:  # noqa: S112 (InvalidTag: not sealed for this one, try the next)
                continue
        return aead.decrypt(nonce, body, header + contexts[-1].encode())

    def decrypt_legacy(self, blob: bytes) -> bytes:
        """Open a value written before associated data (migration 0011 re-seals them; nothing else reads
        them, so an old ciphertext cannot be slipped into a column unnoticed)."""
        if blob[:1] != LEGACY_VERSION:
            raise ValueError("not a legacy ciphertext")
        nonce, body = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        return self._legacy.decrypt(nonce, body, None)

    def encrypt_legacy(self, plaintext: bytes) -> bytes:
        """The pre-0011 format, for tests and benchmarks that need rows as an old install wrote them."""
        nonce = os.urandom(_NONCE_BYTES)
        return LEGACY_VERSION + nonce + self._legacy.encrypt(nonce, plaintext, None)

    @staticmethod
    def key_id_of(blob: bytes) -> str | None:
        """The key that sealed `blob` (None for a legacy value)."""
        return blob[1:_HEADER_BYTES].hex() if blob[:1] == VERSION else None

    def blind_index(self, kind: str, normalized_value: str) -> str:
        index = self._index.copy()
        index.update(f"{kind}:{normalized_value}".encode())
        return index.hexdigest()


@lru_cache(maxsize=4)
def _cipher_for(ring: tuple[bytes, ...], index_key: bytes | None) -> Cipher:
    return Cipher(ring, index_key)


_current: tuple[Settings, Cipher] | None = None


def cipher_for_settings(settings: Settings) -> Cipher:
    return _cipher_for(tuple(settings.require_encryption_keys()), settings.blind_index_key())


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
        current = _current = (settings, cipher_for_settings(settings))
    return current[1]


class EncryptedText(TypeDecorator[str]):
    """A text column stored AES-GCM encrypted, bound to its "table.column"; reads come back as `str`.

    `also` names other columns whose ciphertexts this one may hold as copies (read only: writes always
    seal for `context`). Migrations create the column as plain binary, so they may leave `context` out."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, context: str = "", also: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.context = context
        self.contexts = (context, *also)

    def process_bind_param(self, value: str | None, dialect: object) -> bytes | None:
        return None if value is None else get_cipher().encrypt(value.encode(), self.context)

    def process_result_value(self, value: bytes | None, dialect: object) -> str | None:
        return None if value is None else get_cipher().decrypt(bytes(value), self.contexts).decode()


class EncryptedBytes(TypeDecorator[bytes]):
    """A binary column stored AES-GCM encrypted (raw webhook bodies), bound to its "table.column"."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, context: str = "") -> None:
        super().__init__()
        self.context = context
        self.contexts = (context,)

    def process_bind_param(self, value: bytes | None, dialect: object) -> bytes | None:
        return None if value is None else get_cipher().encrypt(value, self.context)

    def process_result_value(self, value: bytes | None, dialect: object) -> bytes | None:
        return None if value is None else get_cipher().decrypt(bytes(value), self.contexts)
