"""The one settings object: every knob the clinic can turn, from Prefect blocks, the environment or `.env`.

Settings live beside the tables because everything else (providers, flows, gateway) imports `models`,
and the database URL and encryption key are the first things any of them needs. Secrets can also come from
Prefect blocks, but `models` is the bottom layer and must not import Prefect's blocks: the `blocks` package
registers itself here (`register_settings_source`) when a process starts (the CLI, the runner and its flow
runs, the gateway), and its values then win over the environment's. A process that registers nothing (a unit
test, a script) reads the environment and `.env` only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import PrivateAttr, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# A source returns {field name: (value, where it came from)}, e.g. ("…", "block avatar-crm-wix/avatar-crm").
SettingsSource = Callable[[], Mapping[str, tuple[Any, str]]]
_sources: dict[str, SettingsSource] = {}
_origins: dict[str, str] = {}  # what the registered sources supplied at the last read


def register_settings_source(name: str, source: SettingsSource) -> None:
    """Have every settings read ask `source` first (above the environment); the next `get_settings()` does."""
    _sources[name] = source
    get_settings.cache_clear()


class _RegisteredSources(PydanticBaseSettingsSource):
    """The registered sources (Prefect blocks), asked in order: the first to name a field wins."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ answers for all fields at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        _origins.clear()
        for source in _sources.values():
            for name, (value, origin) in source().items():
                if name in self.settings_cls.model_fields and name not in values and value is not None:
                    values[name] = value
                    _origins[name] = origin
        return values


PREVIOUS_SECRETS = (
    "session_secret",
    "wix_webhook_secret",
    "mobilemessage_webhook_secret",
    "sendgrid_webhook_public_key",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")
    _encryption_keys: list[bytes] | None = PrivateAttr(default=None)
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Blocks first, the environment second, `.env` third (arguments given in code above all)."""
        if not _sources:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        blocks = _RegisteredSources(settings_cls)
        return init_settings, blocks, env_settings, dotenv_settings, file_secret_settings

    def origins(self) -> dict[str, str]:
        """Where each setting came from: `block <type>/<name>`, `env`, `.env` or `default` (or derived)."""
        dotenv_file = self.model_config.get("env_file")
        from_file = {k.lower() for k in dotenv_values(dotenv_file)} if isinstance(dotenv_file, str) else set()
        from_env = {k.lower() for k in os.environ}
        found = {}
        for name in type(self).model_fields:
            if name in self._origins:
                found[name] = self._origins[name]
            else:
                found[name] = "env" if name in from_env else ".env" if name in from_file else "default"
        return found

    # --- storage -------------------------------------------------------------------------------
    crm_data_dir: Path = Path("./var")
    crm_database_url: str = ""
    crm_encryption_key: SecretStr | None = None
    # The key ring, newest first, comma-separated: new values are sealed with the first, older ones still
    # open values until `avatar-crm keys rotate` has re-sealed them. CRM_ENCRYPTION_KEY (or, unset, the key
    # file `make up` wrote) is the oldest entry, so a rotation starts by adding CRM_ENCRYPTION_KEYS=<new key>.
    crm_encryption_keys: SecretStr | None = None
    # The root of the blind indexes (keyed hashes of phones, emails, services) and of the default session
    # secret; unset: the oldest key of the ring. Set it to the oldest key before that key leaves the ring.
    crm_blind_index_key: SecretStr | None = None
    # `avatar-crm keys status` and the key-age check flag a key or secret in use longer than this.
    key_max_age_days: int = 365

    # --- the clinic --------------------------------------------------------------------------------
    clinic_name: str = "Avatar Imaging"
    clinic_timezone: str = "Australia/Brisbane"
    clinic_phone: str = ""
    clinic_email: str = ""  # patient emails' Reply-To and footer; unset: replies go to the sending account
    clinic_address: str = ""  # shown in email footers (Spam Act: identify the sender)
    staff_notification_email: str = ""  # staff notices also go here by Gmail when set
    session_secret: SecretStr | None = None  # signs OAuth state cookies and tracking links
    # Rotating a secret: the one it replaces, still accepted until SECRETS_PREVIOUS_UNTIL (an aware ISO time,
    # required with any *_PREVIOUS): tracked links in emails already sent, webhooks signed before the
    # provider's switch. Applies to SESSION_SECRET, WIX_WEBHOOK_SECRET, MOBILEMESSAGE_WEBHOOK_SECRET and
    # SENDGRID_WEBHOOK_PUBLIC_KEY.
    session_secret_previous: SecretStr | None = None
    secrets_previous_until: datetime | None = None
    public_base_url: str = ""  # how patients' browsers reach the gateway; default: the gateway's address
    default_phone_region: str = "AU"

    # --- Wix -------------------------------------------------------------------------------------
    wix_public_key: str | None = None
    wix_webhook_secret: SecretStr | None = None
    wix_webhook_secret_previous: SecretStr | None = None
    # When set, a Wix-signed webhook must name this site / app instance (the app's key signs every site's).
    # The site id also addresses reconciliation's reads through Wix's REST API, made with an API key (API
    # Keys Manager, permission "Read Bookings - Including Participants"); off while either is unset.
    wix_site_id: str | None = None
    wix_instance_id: str | None = None
    wix_api_key: SecretStr | None = None
    wix_api_url: str = "https://www.wixapis.com"
    wix_timeout_seconds: float = 20.0

    # --- MobileMessage ---------------------------------------------------------------------------
    sms_provider: Literal["mobilemessage", "sandbox"] | None = None
    mobilemessage_api_url: str = "https://api.mobilemessage.com.au"
    mobilemessage_api_username: str | None = None
    mobilemessage_api_password: SecretStr | None = None
    mobilemessage_from_number: str = ""
    mobilemessage_timeout_seconds: float = 10.0
    mobilemessage_max_attempts: int = 5
    mobilemessage_max_in_flight: int = 5
    mobilemessage_webhook_secret: SecretStr | None = None
    mobilemessage_webhook_secret_previous: SecretStr | None = None
    mobilemessage_webhook_tolerance_seconds: int = 300

    # --- reminders and two-way SMS ---------------------------------------------------------------
    # Offsets before the appointment, e.g. "24h,2h"; per service (by Wix service name) as JSON,
    # e.g. REMINDER_SERVICE_OFFSETS='{"MRI Scan": "48h,2h"}'.
    reminder_offsets: str = "24h,2h"
    reminder_service_offsets: dict[str, str] = {}
    sms_quiet_hours: str = "20:00-08:00"  # local clinic time; empty string turns quiet hours off
    reminder_min_lead_minutes: int = 60  # a reminder due sooner than this after booking is not planned
    sms_classifier_min_confidence: float = 0.75
    sms_llm_url: str | None = None  # an OpenAI-compatible base URL; unset = no LLM (the default)
    sms_llm_model: str = "gpt-4o-mini"
    sms_llm_api_key: SecretStr | None = None
    sms_llm_timeout_seconds: float = 5.0

    # --- SendGrid (campaign email) --------------------------------------------------------------
    email_campaign_provider: Literal["sendgrid", "sandbox"] | None = None
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_url: str = "https://api.sendgrid.com"
    sendgrid_from_email: str = ""
    sendgrid_from_name: str = ""  # the clinic's name when unset
    sendgrid_unsubscribe_group_id: int | None = None
    sendgrid_webhook_public_key: str | None = None
    sendgrid_webhook_public_key_previous: str | None = None
    # SendGrid retries a failed batch for up to 24 h, maybe without re-signing it: 24 h + 1 h margin.
    sendgrid_webhook_tolerance_seconds: int = 25 * 3600
    sendgrid_timeout_seconds: float = 30.0
    sendgrid_max_in_flight: int = 4

    # --- Google Workspace (OAuth, Gmail, Calendar, People) ---------------------------------------
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    google_oauth_redirect_uri: str = ""  # {public_base_url}/auth/google/callback when unset
    google_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
    google_revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    google_api_url: str | None = None  # one base URL for Gmail, Calendar and People (a local fake in tests)
    google_calendar_id: str = "primary"
    google_timeout_seconds: float = 20.0

    # --- the clinic console (docs/console.md) -------------------------------------------------------
    # Staff sign in with Google (OpenID Connect, the OAuth client above): the issuer whose discovery document
    # and keys are trusted, and the Workspace domain(s) whose `hd` claim may sign in, comma-separated.
    google_oidc_issuer: str = "https://accounts.google.com"
    console_workspace_domains: str = ""  # e.g. "avatarimaging.com.au"; empty: nobody can sign in
    console_redirect_uri: str = ""  # {public_base_url}/console/auth/callback when unset
    console_session_idle_seconds: int = 30 * 60  # signed out after this long without a request
    console_session_absolute_seconds: int = 12 * 3600  # and this long after signing in, whatever happens
    console_signin_per_minute: int = 10  # sign-in attempts per client address a minute

    # --- gateway -------------------------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    gateway_max_body_bytes: int = 256 * 1024
    # Requests per client address a second, above what the gateway can ingest so genuine bursts always get
    # in; a refused one (bad signature, wrong site, forged link) counts `failure_weight` times. 0: no limit.
    rate_limit_per_second: int = 3000
    rate_limit_failure_weight: int = 100
    redis_url: str | None = None  # rate-limit counts shared by several gateways
    # `/metrics` (Prometheus) answers only `Authorization: Bearer <this>`; unset: 404, as if it were absent.
    metrics_token: SecretStr | None = None
    dispatch_poll_seconds: float = 2.0
    dispatch_max_backoff_seconds: float = 300.0
    # Dispatched events whose flow run died: how often they are looked for, when a run still Pending counts
    # as dead (and a Running one, with heartbeats off), and how many runs an event gets before it is `failed`.
    dispatch_recovery_seconds: float = 15.0
    dispatch_stuck_pending_seconds: float = 90.0
    dispatch_stuck_running_seconds: float = 1800.0
    dispatch_max_runs: int = 3
    # How long a dispatcher's claim on a batch of due events keeps other gateways' dispatchers off it (a
    # dispatcher that dies mid-batch delays those events by this much; see webhook_gateway/dispatcher.py).
    dispatch_claim_seconds: float = 60.0
    # A backlog of booking events (this many or more due, or held by unfinished runs; 0: never batch) goes out
    # in flow runs of DISPATCH_BACKLOG_BATCH events, a task run per booking, instead of a run per booking; at
    # most DISPATCH_BACKLOG_RUNS such runs at once (the rest waits in the inbox and goes out in full batches).
    dispatch_backlog_threshold: int = 8
    dispatch_backlog_batch: int = 50
    dispatch_backlog_runs: int = 8
    # A lone booking event (no backlog) goes to a Prefect background task worker (`avatar-crm task-worker`)
    # as a task run instead of a flow run: a fraction of a flow run's Prefect CPU, started in ~0.1 s. Only
    # while a task worker serves the booking task (asked of Prefect every few seconds); an event's later runs
    # (its first died, or sat untaken DISPATCH_STUCK_PENDING_SECONDS) are flow runs. `up --scaled` sets it.
    booking_task_workers: bool = False
    # Task runs send no heartbeats: one Running this long (a booking takes about a second) is taken as dead.
    dispatch_stuck_task_seconds: float = 120.0
    # Ctrl-C on `avatar-crm up`: how long flow runs already running may take to finish before the runner is
    # stopped (which cancels what is left; the dispatcher gives those events a new run at the next start).
    stop_grace_seconds: float = 30.0

    # --- retention (the `retention` deployment, daily; `avatar-crm retention run`). 0 keeps forever ------
    # Stored webhook bodies (booking details, SMS replies) of events processed or failed this long ago: the
    # row, its dedupe key and ids stay, so a provider's redelivery is still recognised.
    retention_inbox_days: int = 30
    # The text of messages sent (or finally not sent) this long ago; recipient, status and times stay.
    retention_message_days: int = 180
    # OAuth sign-in states (PKCE verifier, ticket id) this old are deleted; never under the ticket's 15 min.
    retention_oauth_hours: int = 24

    # --- ops alerts (the `ops-alerts` deployment and its Prefect automations; docs/alerts.md) ----------
    # Who is told: an SMS to OPS_ALERT_PHONE (through the outbox, never to a suppressed number) when set, and
    # an email to OPS_ALERT_EMAIL, by default STAFF_NOTIFICATION_EMAIL (the Prefect UI notice always).
    ops_alert_phone: str = ""
    ops_alert_email: str = ""
    # Rates are over the last ALERT_WINDOW_MINUTES and only once at least ALERT_MIN_EVENTS were counted
    # (one failure in three is noise, not a 33 % error rate); the plan's threshold is 1 %.
    alert_window_minutes: int = 60
    alert_min_events: int = 20
    alert_webhook_error_rate: float = 0.01
    alert_sms_failure_rate: float = 0.01
    alert_email_failure_rate: float = 0.01
    alert_inbox_backlog_minutes: int = 10  # a stored webhook event not processed after this long
    alert_reminder_sweep_minutes: int = 10  # no reminder-sweep run completed for this long
    alert_repeat_minutes: int = 60  # a condition still firing is told again after this long (de-dup)
    # --- logs ----------------------------------------------------------------------------------------
    # How the gateway, the runner (and its flow runs) and the CLI print log lines: `text` (as Prefect and
    # uvicorn print them) or `json` (one object a line, with the request or flow-run id; docs/logging.md).
    log_format: Literal["text", "json"] = "text"

    # --- Prefect (the variables Prefect itself reads; mirrored here so `up` can set them) ---------
    prefect_port: int = 4200
    # `prefect deploy` (work-pool deployments): the git repository every worker clones its code from, and
    # the commit it checks out (unset: the deployer's HEAD, which must be pushed there). See
    # deployments/release.py.
    avatar_crm_git_url: str | None = None
    avatar_crm_git_commit: str | None = None

    @model_validator(mode="after")
    def _defaults_from_data_dir(self) -> Settings:
        previous = [name for name in PREVIOUS_SECRETS if getattr(self, f"{name}_previous") is not None]
        if previous and self.secrets_previous_until is None:
            names = ", ".join(f"{name.upper()}_PREVIOUS" for name in previous)
            raise ValueError(f"{names} needs SECRETS_PREVIOUS_UNTIL: when the grace period ends")
        if self.secrets_previous_until is not None and self.secrets_previous_until.tzinfo is None:
            raise ValueError("SECRETS_PREVIOUS_UNTIL needs a timezone (e.g. 2026-12-31T00:00:00+10:00)")
        if not self.crm_database_url:
            self.crm_database_url = f"sqlite:///{self.crm_data_dir / 'crm.db'}"
        if self.sms_provider is None:
            has_credentials = bool(self.mobilemessage_api_username and self.mobilemessage_api_password)
            self.sms_provider = "mobilemessage" if has_credentials else "sandbox"
        if self.sms_provider == "mobilemessage":
            missing = [
                name
                for name, value in (
                    ("MOBILEMESSAGE_API_USERNAME", self.mobilemessage_api_username),
                    ("MOBILEMESSAGE_API_PASSWORD", self.mobilemessage_api_password),
                    ("MOBILEMESSAGE_FROM_NUMBER", self.mobilemessage_from_number.strip()),
                )
                if not value
            ]
            if missing:  # refuse to start rather than fail every patient message later
                raise ValueError(f"SMS_PROVIDER=mobilemessage needs {', '.join(missing)} to be set")
        if self.email_campaign_provider is None:
            self.email_campaign_provider = "sendgrid" if self.sendgrid_api_key else "sandbox"
        if self.email_campaign_provider == "sendgrid" and not (
            self.sendgrid_api_key and self.sendgrid_from_email.strip()
        ):
            raise ValueError(
                "EMAIL_CAMPAIGN_PROVIDER=sendgrid needs SENDGRID_API_KEY and SENDGRID_FROM_EMAIL"
            )
        if not self.public_base_url:  # a wildcard bind is reached on this machine as the loopback address
            host = "127.0.0.1" if self.gateway_host in ("0.0.0.0", "::", "") else self.gateway_host  # noqa: S104
            host = f"[{host}]" if ":" in host else host
            self.public_base_url = f"http://{host}:{self.gateway_port}"
        if not self.google_oauth_redirect_uri:
            self.google_oauth_redirect_uri = f"{self.public_base_url.rstrip('/')}/auth/google/callback"
        if not self.console_redirect_uri:
            self.console_redirect_uri = f"{self.public_base_url.rstrip('/')}/console/auth/callback"
        return self

    @property
    def wix_api_configured(self) -> bool:
        """Reconciliation with Wix runs only with an API key and the site it belongs to."""
        key = self.wix_api_key.get_secret_value() if self.wix_api_key else ""
        return bool(key and (self.wix_site_id or "").strip())

    @property
    def alert_email(self) -> str:
        """Where alert emails go: OPS_ALERT_EMAIL, else STAFF_NOTIFICATION_EMAIL ("" = no email)."""
        return (self.ops_alert_email or self.staff_notification_email).strip()

    @property
    def console_domains(self) -> frozenset[str]:
        """The Google Workspace domains whose staff may sign in to the console (lower case)."""
        return frozenset(d.strip().lower() for d in self.console_workspace_domains.split(",") if d.strip())

    @property
    def google_configured(self) -> bool:
        """Google is used once the clinic registers an OAuth client; until then email is sandboxed."""
        return bool(self.google_client_id and self.google_client_secret)

    def accepted(self, name: str, now: datetime | None = None) -> list[str]:
        """The values of secret `name` ("wix_webhook_secret", ...) a signature may be made with: the current
        one, then the previous one until SECRETS_PREVIOUS_UNTIL."""
        values = [getattr(self, name), getattr(self, f"{name}_previous")]
        if self.secrets_previous_until is None or (now or datetime.now(UTC)) >= self.secrets_previous_until:
            values = values[:1]
        return [v if isinstance(v, str) else v.get_secret_value() for v in values if v is not None]

    def session_secrets(self, now: datetime | None = None) -> list[bytes]:
        """The session secret that signs (first), then the previous one while it is still accepted."""
        return [self.require_session_secret()] + [
            s.encode() for s in self.accepted("session_secret", now)[1:]
        ]

    def require_session_secret(self) -> bytes:
        """The key that signs OAuth state and tracking links: `SESSION_SECRET`, or one derived from the
        encryption key so the embedded defaults work with nothing configured."""
        if self.session_secret is not None:
            return self.session_secret.get_secret_value().encode()
        return hmac.new(self.blind_index_root(), b"avatar-crm session secret", hashlib.sha256).digest()

    @property
    def encryption_key_file(self) -> Path:
        return self.crm_data_dir / "encryption.key"

    @property
    def prefect_home(self) -> Path:
        return self.crm_data_dir / "prefect"

    @property
    def stack_prefect_api_url(self) -> str:
        """The API of the Prefect server `make up` runs: where the CLI looks when PREFECT_API_URL is unset."""
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def require_encryption_key(self) -> bytes:
        """The newest master key: the one new values are sealed with."""
        return self.require_encryption_keys()[0]

    def require_encryption_keys(self) -> list[bytes]:
        """The key ring, newest first: `CRM_ENCRYPTION_KEYS`, then `CRM_ENCRYPTION_KEY` (or, with neither
        set, the key file `make up` wrote on first run).

        Read once per settings object: every encryption, decryption and blind index asks for it, and a
        campaign of 100,000 asks 200,000 times (reading the key file each time tripled a campaign's claims).
        """
        if self._encryption_keys is None:
            self._encryption_keys = self._read_encryption_keys()
        return self._encryption_keys

    def blind_index_key(self) -> bytes | None:
        """`CRM_BLIND_INDEX_KEY`, or None: the oldest key of the ring is the root (models/crypto.py)."""
        if self.crm_blind_index_key is None:
            return None
        return self.crm_blind_index_key.get_secret_value().strip().encode() or None

    def blind_index_root(self) -> bytes:
        return self.blind_index_key() or self.require_encryption_keys()[-1]

    def _read_encryption_keys(self) -> list[bytes]:
        ring: list[bytes] = []
        if self.crm_encryption_keys is not None:
            ring = [
                k.strip().encode()
                for k in self.crm_encryption_keys.get_secret_value().split(",")
                if k.strip()
            ]
        # The single key: CRM_ENCRYPTION_KEY, else the key file `make up` wrote (the ring's oldest entry).
        if self.crm_encryption_key is not None:
            single = self.crm_encryption_key.get_secret_value().strip().encode()
        elif self.encryption_key_file.exists():
            single = self.encryption_key_file.read_text().strip().encode()
        else:
            single = b""
        if single and single not in ring:
            ring.append(single)
        if not ring:
            raise RuntimeError(
                "CRM_ENCRYPTION_KEY is not set and no key file exists at "
                f"{self.encryption_key_file}; run `make up` once or `avatar-crm keygen`."
            )
        return ring


def settings_from_environment() -> Settings:
    """The settings the environment and `.env` alone give, whatever sources are registered (what
    `avatar-crm secrets push` copies into blocks)."""
    return _EnvironmentOnly()


class _EnvironmentOnly(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, file_secret_settings


@lru_cache
def get_settings() -> Settings:
    settings = Settings()
    settings._origins = dict(_origins) if _sources else {}
    return settings
