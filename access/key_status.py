"""What an admin may know about the CRM's keys and secrets: whether each is set, sandboxed or missing,
where it comes from (an environment variable, `.env`, a Prefect block, the data directory) and how long it
has been in use. Never a value: nothing here returns one, so no page or command built on it can show one by
mistake.

Key ids are the short ids `models.keyring` derives (the same `avatar-crm keys status` prints): enough to tell
one key from the next after a rotation, far too short to test guesses of a strong secret against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from prefect.settings import PREFECT_API_AUTH_STRING
from pydantic import SecretStr
from sqlalchemy import select

from blocks import settings_source
from models.crypto import cipher_for_settings
from models.cryptokey import CryptoKey
from models.data_dir import PREFECT_LOGIN_FILE, read_prefect_login
from models.db import get_engine, session_scope
from models.keyring import count_by_key, keys_in_use
from models.settings import Settings
from models.types import utcnow

State = Literal["set", "sandbox", "derived", "missing", "not set"]


@dataclass(frozen=True)
class SecretStatus:
    group: str  # "MobileMessage", "SendGrid", ...
    name: str  # what it is, in a person's words
    variable: str  # the environment variable (and block field) that sets it
    state: State  # "missing": needed and absent; "not set": optional and off
    source: str  # where the value comes from, "" when nothing sets it
    note: str = ""
    key_id: str | None = None
    in_use_since: datetime | None = None
    too_old: bool = False


@dataclass(frozen=True)
class RingKey:
    key_id: str
    active: bool  # seals new values (the newest)
    in_use_since: datetime | None
    too_old: bool
    values: int | None  # how many stored values it seals, when counted


@dataclass(frozen=True)
class KeyRingStatus:
    keys: list[RingKey]  # newest first
    source: str
    blind_index_key_id: str
    blind_index_source: str
    unknown_values: dict[str, int] | None  # values sealed by no key of the ring ("legacy": the old format)
    max_age_days: int

    @property
    def active(self) -> RingKey:
        return self.keys[0]

    @property
    def under_older_keys(self) -> int | None:
        if any(key.values is None for key in self.keys):
            return None
        return sum(key.values or 0 for key in self.keys[1:]) + sum((self.unknown_values or {}).values())


def _has(value: object) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value().strip())
    return value is not None and str(value).strip() != ""


class _Origins:
    """Where each setting came from, said for a person: `env SENDGRID_API_KEY`, `Prefect block …`, `.env`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.found = settings.origins()

    def __call__(self, *names: str) -> str:
        said = []
        for name in names:
            if not _has(getattr(self.settings, name)):
                continue
            origin = self.found.get(name, "default")
            variable = name.upper()
            if origin == "env":
                said.append(f"env {variable}")
            elif origin == ".env":
                said.append(f".env file ({variable})")
            elif origin.startswith("block "):
                said.append(f"Prefect {origin}")
            else:  # given in code when the process was started (tests, scripts)
                said.append(f"{variable} given at start-up")
        return ", ".join(dict.fromkeys(said))


def _ages(settings: Settings) -> dict[str, tuple[str, datetime | None, bool]]:
    """Per purpose ("encryption", "SESSION_SECRET", ...): key id, when first seen in use, and whether that is
    longer ago than KEY_MAX_AGE_DAYS. Read only: the gateway records keys in use when it starts."""
    used = list(keys_in_use(settings))
    with session_scope(get_engine(settings.crm_database_url)) as session:
        rows = session.execute(select(CryptoKey.purpose, CryptoKey.key_id, CryptoKey.first_seen_at)).all()  # type: ignore[call-overload]
    first_seen = {(purpose, kid): at for purpose, kid, at in rows}
    limit, now = timedelta(days=settings.key_max_age_days), utcnow()
    found: dict[str, tuple[str, datetime | None, bool]] = {}
    for label, kid in used:
        at = first_seen.get((label.removesuffix(" (older)"), kid))
        too_old = at is not None and now - at > limit and label != "encryption (older)"
        found.setdefault(label if label != "encryption (older)" else f"ring:{kid}", (kid, at, too_old))
    return found


def key_ring(settings: Settings, *, count: bool = False) -> KeyRingStatus:
    """The encryption key ring: its keys, newest first, where it comes from; with `count`, how many stored
    values each key seals (reads every encrypted column, so only on request)."""
    cipher = cipher_for_settings(settings)
    origins = _Origins(settings)
    parts = [origins("crm_encryption_keys")] if _has(settings.crm_encryption_keys) else []
    if _has(settings.crm_encryption_key):
        parts.append(origins("crm_encryption_key"))
    elif settings.encryption_key_file.exists():
        parts.append(f"data directory ({settings.encryption_key_file.name})")
    ages = _ages(settings)
    totals: dict[str, int] | None = None
    if count:
        totals = {}
        for column in count_by_key(get_engine(settings.crm_database_url)):
            for kid, n in column.by_key.items():
                totals[kid] = totals.get(kid, 0) + n
    keys = []
    for index, kid in enumerate(cipher.key_ids):
        _, since, too_old = ages.get("encryption" if index == 0 else f"ring:{kid}", (kid, None, False))
        values = None if totals is None else totals.pop(kid, 0)
        keys.append(RingKey(kid, index == 0, since, too_old, values))
    index_source = (
        origins("crm_blind_index_key") if settings.blind_index_key() else "the oldest key of the ring"
    )
    return KeyRingStatus(
        keys=keys,
        source=" + ".join(p for p in parts if p),
        blind_index_key_id=cipher.index_key_id,
        blind_index_source=index_source,
        unknown_values=totals,
        max_age_days=settings.key_max_age_days,
    )


def _grace(settings: Settings, name: str) -> str:
    """A previous value still accepted during a rotation, and until when."""
    if len(settings.accepted(name)) > 1 and settings.secrets_previous_until is not None:
        until = settings.secrets_previous_until
        return f"the previous value is still accepted until {until:%Y-%m-%d %H:%M %Z}"
    return ""


def secrets(settings: Settings) -> list[SecretStatus]:
    """Each provider secret and sensitive setting: set, sandboxed, derived or missing, and from where."""
    origin = _Origins(settings)
    ages = _ages(settings)

    def item(
        group: str,
        name: str,
        fields: tuple[str, ...],
        *,
        unset: State = "missing",  # what its absence means: needed ("missing") or merely off ("not set")
        unset_note: str = "",
        sandbox: str = "",  # set: the provider is sandboxed (with or without the secret), and why
        age_of: str = "",
    ) -> SecretStatus:
        present = all(_has(getattr(settings, f)) for f in fields)
        kid, since, too_old = ages.get(age_of, (None, None, False)) if present else (None, None, False)
        state: State = "sandbox" if sandbox else "set" if present else unset
        rotating = present and f"{fields[0]}_previous" in Settings.model_fields
        grace = _grace(settings, fields[0]) if rotating else ""
        return SecretStatus(
            group=group,
            name=name,
            variable=" + ".join(f.upper() for f in fields),
            state=state,
            source=origin(*fields),
            note=sandbox or grace or ("" if present else unset_note),
            key_id=kid,
            in_use_since=since,
            too_old=too_old,
        )

    sms_sandbox = "SMS_PROVIDER=sandbox: texts are recorded, not sent"
    email_sandbox = "EMAIL_CAMPAIGN_PROVIDER=sandbox: campaign email is recorded, not sent"
    wix_by_key = _has(settings.wix_public_key) and not _has(settings.wix_webhook_secret)
    wix_by_secret = _has(settings.wix_webhook_secret) and not _has(settings.wix_public_key)
    return [
        item(
            "MobileMessage",
            "API login",
            ("mobilemessage_api_username", "mobilemessage_api_password"),
            sandbox=sms_sandbox if settings.sms_provider == "sandbox" else "",
        ),
        item(
            "MobileMessage",
            "Webhook signing secret",
            ("mobilemessage_webhook_secret",),
            unset_note="delivery receipts and replies cannot be verified",
            age_of="MOBILEMESSAGE_WEBHOOK_SECRET",
        ),
        item(
            "SendGrid",
            "API key",
            ("sendgrid_api_key",),
            sandbox=email_sandbox if settings.email_campaign_provider == "sandbox" else "",
        ),
        item(
            "SendGrid",
            "Event webhook verification key",
            ("sendgrid_webhook_public_key",),
            unset_note="email events cannot be verified",
            age_of="SENDGRID_WEBHOOK_PUBLIC_KEY",
        ),
        item(
            "Wix",
            "API key (reconciliation)",
            ("wix_api_key",),
            unset="not set",
            unset_note="reconciliation with Wix is off",
            age_of="WIX_API_KEY",
        ),
        item(
            "Wix",
            "Webhook signing secret",
            ("wix_webhook_secret",),
            unset="not set" if wix_by_key else "missing",
            unset_note="webhooks are verified with the public key" if wix_by_key else "",
            age_of="WIX_WEBHOOK_SECRET",
        ),
        item(
            "Wix",
            "Webhook public key",
            ("wix_public_key",),
            unset="not set" if wix_by_secret else "missing",
            unset_note="webhooks are verified with the shared secret" if wix_by_secret else "",
        ),
        item(
            "Google",
            "OAuth client",
            ("google_client_id", "google_client_secret"),
            unset_note="Google is not configured: no console sign-in, Gmail or Calendar",
        ),
        item(
            "Console",
            "Session secret",
            ("session_secret",),
            unset="derived",
            unset_note="derived from the encryption key; set SESSION_SECRET to rotate it on its own",
            age_of="SESSION_SECRET",
        ),
        _prefect_login(settings),
        item("Gateway", "Metrics token", ("metrics_token",), unset="not set", unset_note="/metrics is off"),
        item(
            "SMS triage",
            "LLM API key",
            ("sms_llm_api_key",),
            unset="not set",
            unset_note="no LLM: replies are read by the rules alone",
        ),
    ]


def _prefect_login(settings: Settings) -> SecretStatus:
    """The login the gateway and the runner send to Prefect's API: PREFECT_API_AUTH_STRING (the
    environment or a Prefect profile), else the one `make up` wrote in the data directory."""
    name, variable = "API auth string", "PREFECT_API_AUTH_STRING"
    if PREFECT_API_AUTH_STRING.value():
        where = f"env {variable}" if os.environ.get(variable) else "Prefect profile"
        return SecretStatus("Prefect", name, variable, "set", where)
    if read_prefect_login(settings.crm_data_dir):
        return SecretStatus("Prefect", name, variable, "set", f"data directory ({PREFECT_LOGIN_FILE})")
    return SecretStatus("Prefect", name, variable, "missing", "", "Prefect's API is called without a login")


@dataclass(frozen=True)
class BlocksRead:
    state: str  # read | unreachable | failed | not read
    api_url: str | None
    found: tuple[str, ...]


def blocks_read() -> BlocksRead:
    """Whether this process read its settings from Prefect blocks (and which), as `avatar-crm config` says."""
    last = settings_source.last_read
    return BlocksRead(last.state, last.api_url, tuple(last.found))
