"""Signed SendGrid Event Webhook batches, made the way SendGrid makes them: ECDSA P-256 / SHA-256 over the
timestamp string followed by the raw body, base64 DER signature; the public key as base64 DER SPKI."""

from __future__ import annotations

import base64
import itertools
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from providers.sendgrid_webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

# The sendgrid library's own fixture (sendgrid-python `test/unit/test_eventwebhook.py`, shipped in the
# sendgrid 6.12.5 wheel as `test/unit/test_eventwebhook.py`): key, timestamp, signature and the exact payload.
LIBRARY_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpi"
    "glSI8eNEc6wEA3F+g=="
)
LIBRARY_OTHER_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7Gj"
    "UuFDb/R1NGe1OPzpA=="
)
LIBRARY_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
)
LIBRARY_TIMESTAMP = "1600112502"
LIBRARY_EVENT = {
    "email": "hello@world.com",
    "event": "dropped",
    "reason": "Bounced Address",
    "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
    "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
    "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
    "timestamp": 1600112492,
}
# Be sure to include the trailing carriage return and newline (the library's own warning).
LIBRARY_PAYLOAD = json.dumps([LIBRARY_EVENT], sort_keys=True, separators=(",", ":")) + "\r\n"


class EventSigner:
    """A SendGrid account's signing key pair: signs batches, and shows the public key as the app does."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._key.sign(stamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        }


_ids = itertools.count(1)


def event(kind: str, email: str = "alex@example.com", **fields: Any) -> dict[str, Any]:
    """One event as SendGrid posts it; custom args (`outbox_id`, `campaign`, `variant`) are flattened in as
    strings, as SendGrid does. Each call gets a new `sg_event_id` unless one is given."""
    number = next(_ids)
    base: dict[str, Any] = {
        "email": email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": f"c2ctZXZlbnQt{number:012d}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": ["campaign"],
    }
    return {**base, **{key: str(value) if key == "outbox_id" else value for key, value in fields.items()}}


def batch(*events: dict[str, Any]) -> bytes:
    """A batch body as SendGrid sends it: a JSON array, with SendGrid's trailing CRLF."""
    return json.dumps(list(events)).encode() + b"\r\n"
