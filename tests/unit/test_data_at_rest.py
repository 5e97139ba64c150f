"""Patients' details at rest: names, service and location encrypted, every value bound to its column, and
migration 0011 re-sealing a database written in the old format (on SQLite and, with -m db, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import text
from sqlmodel import select

from models import Booking, Contact, OutboundMessage, WebhookEvent, session_scope
from models.crypto import get_cipher
from models.db import get_engine
from models.migrate import upgrade

pytestmark = pytest.mark.db

START = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


def _raw(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    with get_engine(url).begin() as connection:
        result = connection.execute(text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def test_names_service_and_location_are_not_stored_in_clear(db: str) -> None:
    with session_scope() as session:
        contact = Contact(first_name="Ada", last_name="Lovelace", phone="+61412345678")
        session.add(contact)
        session.flush()
        session.add(
            Booking(
                wix_booking_id="b-1",
                contact_id=contact.id,
                status="CONFIRMED",
                service_name="MRI – Knee",
                location="Bondi Junction",
                start_at=START,
            )
        )
    ((first, last, _phone),) = _raw(db, "SELECT first_name, last_name, phone FROM contact")
    ((service, location, service_key),) = _raw(db, "SELECT service_name, location, service_key FROM booking")
    for stored, clear in ((first, "Ada"), (last, "Lovelace"), (service, "MRI – Knee"), (location, "Bondi")):
        assert isinstance(stored, bytes | memoryview)
        assert clear.encode() not in bytes(stored)  # type: ignore[arg-type]
        assert bytes(stored)[:5] == b"\x02" + bytes.fromhex(get_cipher().current_key_id)  # type: ignore[arg-type]
    assert service_key == get_cipher().blind_index("service", "mri - knee")  # dash- and case-insensitive
    with session_scope() as session:
        booking = session.exec(select(Booking)).one()
        contact = session.exec(select(Contact)).one()
        assert (contact.first_name, contact.last_name, contact.phone) == ("Ada", "Lovelace", "+61412345678")
        assert (booking.service_name, booking.location) == ("MRI – Knee", "Bondi Junction")


def test_a_ciphertext_moved_to_another_column_or_table_is_refused(db: str) -> None:
    """Associated data names table and column: a value copied elsewhere does not decrypt as that field."""
    with session_scope() as session:
        contact = Contact(
            first_name="Ada", last_name="Lovelace", email="ada@example.com", phone="+61412345678"
        )
        session.add(contact)
        session.flush()
        session.add(
            Booking(
                wix_booking_id="b-2",
                contact_id=contact.id,
                status="CONFIRMED",
                service_name="X-ray",
                start_at=START,
            )
        )
    _raw(db, "UPDATE contact SET phone = email")  # the email's ciphertext where the phone belongs
    with pytest.raises(InvalidTag), session_scope() as session:
        session.exec(select(Contact.phone)).one()
    _raw(db, "UPDATE booking SET service_name = (SELECT first_name FROM contact)")  # across tables
    with pytest.raises(InvalidTag), session_scope() as session:
        session.exec(select(Booking.service_name)).one()
    # Old-format ciphertexts (no associated data) are not accepted either: only the migration reads them.
    legacy = get_cipher().encrypt_legacy(b"Mallory")
    _raw(db, "UPDATE contact SET first_name = :v", v=legacy)
    with pytest.raises(ValueError, match="version"), session_scope() as session:
        session.exec(select(Contact.first_name)).one()


def test_migration_0011_reseals_a_database_written_in_the_old_format(fresh_database_url: str) -> None:
    url = fresh_database_url
    upgrade(url, "0010")
    cipher = get_cipher()
    old = cipher.encrypt_legacy
    now = datetime.now(UTC)
    _raw(
        url,
        "INSERT INTO contact (id, first_name, last_name, email, email_hash, phone, created_at, updated_at)"
        " VALUES (1, 'Ada', 'Lovelace', :email, :eh, :phone, :now, :now),"
        " (2, NULL, NULL, NULL, NULL, :phone2, :now, :now)",
        email=old(b"ada@example.com"),
        eh=cipher.blind_index("email", "ada@example.com"),
        phone=old(b"+61412345678"),
        phone2=old(b"+61400000002"),
        now=now,
    )
    _raw(
        url,
        "INSERT INTO booking (id, wix_booking_id, contact_id, status, revision, service_name, location,"
        " start_at, created_at, updated_at) VALUES (1, 'b-1', 1, 'CONFIRMED', 1, 'MRI – Knee',"
        " 'Bondi Junction', :s, :now, :now), (2, 'b-2', 2, 'CONFIRMED', 1, NULL, NULL, :s, :now, :now)",
        s=START,
        now=now,
    )
    _raw(
        url,
        "INSERT INTO webhookevent (id, source, dedupe_key, event_type, body, status, received_at,"
        " dispatch_attempts, redispatches)"
        " VALUES (1, 'wix', 'k1', 'booking', :body, 'processed', :now, 0, 0)",
        body=old(b'{"name": "Ada"}'),
        now=now,
    )
    _raw(
        url,
        "INSERT INTO outboundmessage (id, idempotency_key, channel, purpose, kind, contact_id, recipient,"
        " body, status, attempts, send_after, created_at, updated_at)"
        " VALUES (1, 'm1', 'sms', 'transactional', 'confirmation', 1, :r, :b, 'sent', 1, :now, :now, :now)",
        r=old(b"+61412345678"),
        b=old(b"Hi Ada, see you at 11"),
        now=now,
    )

    upgrade(url)

    raw = _raw(url, "SELECT first_name, email, phone FROM contact WHERE id = 1")[0]
    assert all(bytes(v)[:1] == b"\x02" for v in raw)  # type: ignore[arg-type]
    assert b"Ada" not in bytes(raw[0])  # type: ignore[arg-type]
    engine = get_engine(url)
    with session_scope(engine) as session:
        ada = session.get(Contact, 1)
        assert ada is not None
        assert (ada.first_name, ada.last_name, ada.email, ada.phone) == (
            "Ada",
            "Lovelace",
            "ada@example.com",
            "+61412345678",
        )
        other = session.get(Contact, 2)
        assert other is not None and (other.first_name, other.phone) == (None, "+61400000002")
        booking = session.get(Booking, 1)
        assert booking is not None and (booking.service_name, booking.location) == (
            "MRI – Knee",
            "Bondi Junction",
        )
        assert booking.service_key == cipher.blind_index("service", "mri - knee")
        assert booking.location_key == cipher.blind_index("location", "bondi junction")
        empty = session.get(Booking, 2)
        assert empty is not None and (empty.service_name, empty.service_key) == (None, None)
        event = session.get(WebhookEvent, 1)
        assert event is not None and event.body == b'{"name": "Ada"}'
        message = session.get(OutboundMessage, 1)
        assert message is not None and (message.recipient, message.body) == (
            "+61412345678",
            "Hi Ada, see you at 11",
        )
    upgrade(url)  # at head already: nothing to do, nothing broken


def test_migration_0011_downgrades_to_the_old_format_and_up_again(fresh_database_url: str) -> None:
    from alembic import command

    from models.migrate import alembic_config

    url = fresh_database_url
    upgrade(url)
    with session_scope(get_engine(url)) as session:
        session.add(Contact(first_name="Ada", last_name="Lovelace", email="ada@example.com"))
        session.add(
            Booking(wix_booking_id="b-9", status="CONFIRMED", service_name="MRI – Knee", start_at=START)
        )
    command.downgrade(alembic_config(url), "0010")
    ((first, email),) = _raw(url, "SELECT first_name, email FROM contact")
    ((service,),) = _raw(url, "SELECT service_name FROM booking")
    assert (first, service) == ("Ada", "MRI – Knee")  # in clear again, as 0010 had them
    assert get_cipher().decrypt_legacy(bytes(email)) == b"ada@example.com"  # type: ignore[arg-type]
    upgrade(url)
    with session_scope(get_engine(url)) as session:
        ada = session.exec(select(Contact)).one()
        booking = session.exec(select(Booking)).one()
    assert (ada.first_name, ada.email, booking.service_name) == ("Ada", "ada@example.com", "MRI – Knee")
    assert booking.service_key == get_cipher().blind_index("service", "mri - knee")
