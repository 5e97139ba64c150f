"""The one settings object: every knob the clinic can turn, read from the environment or `.env`.

Settings live beside the tables because everything else (providers, flows, gateway) imports `models`,
and the database URL and encryption key are the first things any of them needs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # --- storage -------------------------------------------------------------------------------
    crm_data_dir: Path = Path("./var")
    crm_database_url: str = ""
    crm_encryption_key: SecretStr | None = None

    # --- the clinic --------------------------------------------------------------------------------
    clinic_name: str = "Avatar Imaging"
    clinic_timezone: str = "Australia/Brisbane"
    clinic_phone: str = ""
    default_phone_region: str = "AU"

    # --- Wix -------------------------------------------------------------------------------------
    wix_public_key: str | None = None
    wix_webhook_secret: SecretStr | None = None
    wix_site_id: str | None = None

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

    # --- gateway -------------------------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    gateway_max_body_bytes: int = 256 * 1024
    dispatch_poll_seconds: float = 2.0
    dispatch_max_backoff_seconds: float = 300.0

    # --- Prefect (the variables Prefect itself reads; mirrored here so `up` can set them) ---------
    prefect_port: int = 4200

    @model_validator(mode="after")
    def _defaults_from_data_dir(self) -> Settings:
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
        return self

    @property
    def encryption_key_file(self) -> Path:
        return self.crm_data_dir / "encryption.key"

    @property
    def prefect_home(self) -> Path:
        return self.crm_data_dir / "prefect"

    def require_encryption_key(self) -> bytes:
        """The master key, from `CRM_ENCRYPTION_KEY` or the key file `make up` wrote on first run."""
        if self.crm_encryption_key is not None:
            return self.crm_encryption_key.get_secret_value().encode()
        if self.encryption_key_file.exists():
            return self.encryption_key_file.read_text().strip().encode()
        raise RuntimeError(
            "CRM_ENCRYPTION_KEY is not set and no key file exists at "
            f"{self.encryption_key_file}; run `make up` once or `avatar-crm keygen`."
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
