"""What the gateway answers: small, stable JSON bodies providers and operators can rely on."""

from __future__ import annotations

from typing import Literal

import msgspec


class WebhookAck(msgspec.Struct, omit_defaults=True):
    status: Literal["accepted", "duplicate", "ignored"]
    event_id: int | None = None
    reason: str | None = None


class Health(msgspec.Struct):
    status: Literal["ok", "ready", "degraded", "not ready"]
    checks: dict[str, str] = msgspec.field(default_factory=dict)
