"""The settings object: embedded defaults, and refusing a configuration that would fail every patient SMS."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.settings import Settings


def test_without_credentials_sms_is_sandboxed_and_data_lives_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        crm_data_dir=tmp_path,
        sms_provider=None,
        mobilemessage_api_username=None,
        mobilemessage_api_password=None,
        crm_database_url="",
    )
    assert settings.sms_provider == "sandbox"
    assert settings.crm_database_url == f"sqlite:///{tmp_path / 'crm.db'}"


def test_credentials_switch_on_mobilemessage() -> None:
    settings = Settings(
        _env_file=None,
        sms_provider=None,
        mobilemessage_api_username="clinic",
        mobilemessage_api_password="pw",
        mobilemessage_from_number="61400000010",
    )
    assert settings.sms_provider == "mobilemessage"


def test_mobilemessage_without_a_sender_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="needs MOBILEMESSAGE_FROM_NUMBER"):
        Settings(
            _env_file=None,
            sms_provider="mobilemessage",
            mobilemessage_api_username="clinic",
            mobilemessage_api_password="pw",
            mobilemessage_from_number=" ",
        )


def test_mobilemessage_without_credentials_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="MOBILEMESSAGE_API_USERNAME, MOBILEMESSAGE_API_PASSWORD"):
        Settings(
            _env_file=None,
            sms_provider="mobilemessage",
            mobilemessage_api_username=None,
            mobilemessage_api_password=None,
            mobilemessage_from_number="61400000010",
        )


def test_the_key_file_make_up_wrote_is_read_once_and_a_missing_one_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make up` keeps the key in a file; every encryption asks for it, so it is read once, not per value."""
    monkeypatch.delenv("CRM_ENCRYPTION_KEY", raising=False)
    settings = Settings(_env_file=None, crm_data_dir=tmp_path, crm_encryption_key=None)
    with pytest.raises(RuntimeError, match="avatar-crm keygen"):
        settings.require_encryption_key()
    settings.encryption_key_file.write_text("tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=\n")
    assert settings.require_encryption_key() == b"tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk="
    settings.encryption_key_file.unlink()
    assert settings.require_encryption_key() == b"tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk="


def test_blind_index_is_standard_hmac_sha256_of_kind_and_value() -> None:
    """Contacts and suppressions already stored are found by this hash: it must never drift."""
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from models.crypto import Cipher

    master = "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk="
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"avatar-crm", info=b"blind-index-v1").derive(
        base64.urlsafe_b64decode(master)
    )
    cipher = Cipher(master.encode())
    for kind, value in [
        ("email", "pat@example.com"),
        ("phone", "+61412345678"),
        ("email", "pat@example.com"),
    ]:
        expected = hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        assert cipher.blind_index(kind, value) == expected


def test_the_cipher_follows_the_settings_it_was_made_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cipher is remembered per settings object (it is asked for once per encrypted value): new settings
    with another key must encrypt with that key, and going back finds the first key's cipher again."""
    from models.crypto import UnknownKeyError, get_cipher
    from models.settings import get_settings

    first_key, second_key = (
        "tSJFpnbbGTeAj1QGk0jXrVZr2oDsEW3V3KdxwCdWFNk=",
        "Zm9yIHRlc3RzIG9ubHk6IGEgc2Vjb25kIGtleSEhISE=",
    )
    try:
        monkeypatch.setenv("CRM_ENCRYPTION_KEY", first_key)
        get_settings.cache_clear()
        first = get_cipher()
        assert get_cipher() is first
        sealed = first.encrypt(b"0412 345 678", "contact.phone")

        monkeypatch.setenv("CRM_ENCRYPTION_KEY", second_key)
        get_settings.cache_clear()
        second = get_cipher()
        assert second is not first
        with pytest.raises(UnknownKeyError):  # sealed under the first key, which this ring does not hold
            second.decrypt(sealed, "contact.phone")
        assert (
            second.decrypt(second.encrypt(b"0412 345 678", "contact.phone"), "contact.phone")
            == b"0412 345 678"
        )

        monkeypatch.setenv("CRM_ENCRYPTION_KEY", first_key)
        get_settings.cache_clear()
        assert get_cipher().decrypt(sealed, "contact.phone") == b"0412 345 678"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_the_public_base_url_defaults_to_where_the_gateway_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """`google connect` printed a link to port 8000 while the gateway ran on GATEWAY_PORT elsewhere."""
    from models import get_settings
    from providers.google_oauth import connect_url

    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    monkeypatch.delenv("GOOGLE_OAUTH_REDIRECT_URI", raising=False)
    monkeypatch.setenv("GATEWAY_PORT", "8765")
    get_settings.cache_clear()
    try:
        assert connect_url().startswith("http://127.0.0.1:8765/auth/google/start?ticket=")
        assert get_settings().google_oauth_redirect_uri == "http://127.0.0.1:8765/auth/google/callback"
    finally:
        get_settings.cache_clear()

    wildcard = Settings(_env_file=None, gateway_host="0.0.0.0", gateway_port=9000, public_base_url="")  # noqa: S104
    assert wildcard.public_base_url == "http://127.0.0.1:9000"  # a browser on this machine reaches it there
    named = Settings(_env_file=None, gateway_host="crm.local", gateway_port=8080, public_base_url="")
    assert named.public_base_url == "http://crm.local:8080"
    explicit = Settings(_env_file=None, gateway_port=9000, public_base_url="https://crm.example.com")
    assert explicit.google_oauth_redirect_uri == "https://crm.example.com/auth/google/callback"


def test_a_registered_source_wins_over_the_environment_and_origins_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import models.settings
    from models.settings import get_settings, register_settings_source, settings_from_environment

    monkeypatch.setattr(models.settings, "_sources", {})
    monkeypatch.setenv("WIX_WEBHOOK_SECRET", "from-env")
    monkeypatch.setenv("CLINIC_PHONE", "07 3000 0000")
    register_settings_source(
        "test",
        lambda: {"wix_webhook_secret": ("from-block", "block avatar-crm-wix/x"), "clinic_name": (None, "b")},
    )
    try:
        settings = get_settings()
        assert settings.wix_webhook_secret is not None
        assert settings.wix_webhook_secret.get_secret_value() == "from-block"
        origins = settings.origins()
        assert origins["wix_webhook_secret"] == "block avatar-crm-wix/x"
        assert origins["clinic_phone"] == "env"
        assert origins["clinic_name"] in ("default", "env")  # a source's None is no value
        from_env = settings_from_environment()  # what `secrets push` stores: the environment alone
        assert from_env.wix_webhook_secret is not None
        assert from_env.wix_webhook_secret.get_secret_value() == "from-env"
    finally:
        get_settings.cache_clear()
