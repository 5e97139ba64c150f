"""The typed Prefect blocks holding avatar-crm's secrets (and the identifiers that go with them).

One block type per integration, so the Prefect UI shows what each secret is for and a rotation touches one
document. Each field maps to one setting of `models.settings.Settings` (`SETTINGS_FIELDS`); every secret is a
`SecretStr`, so Prefect stores it encrypted and shows it obfuscated in the UI and in logs.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class CrmBlock(Block):
    """What every avatar-crm block declares: which setting each of its fields feeds."""

    settings_fields: ClassVar[dict[str, str]] = {}  # block field -> Settings field


class WixCredentials(CrmBlock):
    """Wix webhook verification (the app's public key or a shared HMAC secret) and the REST API key."""

    _block_type_name = "avatar-crm Wix"
    _block_type_slug = "avatar-crm-wix"
    _description = "Wix: webhook signing key or secret, site/instance ids, API key (avatar-crm)."
    settings_fields: ClassVar[dict[str, str]] = {
        "public_key": "wix_public_key",
        "webhook_secret": "wix_webhook_secret",
        "api_key": "wix_api_key",
        "site_id": "wix_site_id",
        "instance_id": "wix_instance_id",
        "webhook_secret_previous": "wix_webhook_secret_previous",
    }

    public_key: str | None = Field(default=None, description="PEM public key verifying Wix's JWT webhooks.")
    webhook_secret: SecretStr | None = None
    api_key: SecretStr | None = None
    site_id: str | None = None
    instance_id: str | None = None
    webhook_secret_previous: SecretStr | None = Field(default=None, description="Accepted in the grace.")


class MobileMessageCredentials(CrmBlock):
    """The SMS gateway's API login and the secret its webhooks are signed with."""

    _block_type_name = "avatar-crm MobileMessage"
    _block_type_slug = "avatar-crm-mobilemessage"
    _description = "MobileMessage: API username/password and webhook secret (avatar-crm)."
    settings_fields: ClassVar[dict[str, str]] = {
        "api_username": "mobilemessage_api_username",
        "api_password": "mobilemessage_api_password",
        "webhook_secret": "mobilemessage_webhook_secret",
        "webhook_secret_previous": "mobilemessage_webhook_secret_previous",
    }

    api_username: str | None = None
    api_password: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    webhook_secret_previous: SecretStr | None = None


class SendGridCredentials(CrmBlock):
    """Campaign email: the API key, and the public key SendGrid's event webhooks are signed with."""

    _block_type_name = "avatar-crm SendGrid"
    _block_type_slug = "avatar-crm-sendgrid"
    _description = "SendGrid: API key and event-webhook verification key (avatar-crm)."
    settings_fields: ClassVar[dict[str, str]] = {
        "api_key": "sendgrid_api_key",
        "webhook_public_key": "sendgrid_webhook_public_key",
        "webhook_public_key_previous": "sendgrid_webhook_public_key_previous",
    }

    api_key: SecretStr | None = None
    webhook_public_key: str | None = None
    webhook_public_key_previous: str | None = None


class GoogleOAuthClient(CrmBlock):
    """The clinic's Google OAuth client (the tokens it obtains are stored encrypted in the CRM database)."""

    _block_type_name = "avatar-crm Google OAuth client"
    _block_type_slug = "avatar-crm-google-oauth"
    _description = "Google Workspace OAuth client id and secret (avatar-crm)."
    settings_fields: ClassVar[dict[str, str]] = {
        "client_id": "google_client_id",
        "client_secret": "google_client_secret",
    }

    client_id: str | None = None
    client_secret: SecretStr | None = None


class LlmEndpoint(CrmBlock):
    """The OpenAI-compatible endpoint that classifies SMS replies the rules are unsure of."""

    _block_type_name = "avatar-crm LLM endpoint"
    _block_type_slug = "avatar-crm-llm"
    _description = "SMS triage LLM: base URL, model and API key (avatar-crm)."
    settings_fields: ClassVar[dict[str, str]] = {
        "url": "sms_llm_url",
        "model": "sms_llm_model",
        "api_key": "sms_llm_api_key",
    }

    url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None


class CrmKeys(CrmBlock):
    """The CRM's own keys: the data encryption key and the secret signing OAuth state and tracking links."""

    _block_type_name = "avatar-crm keys"
    _block_type_slug = "avatar-crm-keys"
    _description = "avatar-crm encryption key or key ring, blind-index key, session secret (avatar-crm)."
    settings_fields: ClassVar[dict[str, str]] = {
        "encryption_key": "crm_encryption_key",
        "encryption_keys": "crm_encryption_keys",
        "blind_index_key": "crm_blind_index_key",
        "session_secret": "session_secret",
        "session_secret_previous": "session_secret_previous",
    }

    encryption_key: SecretStr | None = None
    encryption_keys: SecretStr | None = Field(default=None, description="The key ring, newest first.")
    blind_index_key: SecretStr | None = None
    session_secret: SecretStr | None = None
    session_secret_previous: SecretStr | None = None


BLOCK_TYPES: tuple[type[CrmBlock], ...] = (
    WixCredentials,
    MobileMessageCredentials,
    SendGridCredentials,
    GoogleOAuthClient,
    LlmEndpoint,
    CrmKeys,
)
