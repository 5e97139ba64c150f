"""Finding patients by address (`find_contacts`) and the booking-side upsert built on it, against the real
database: which record wins when addresses point at different patients or several patients share one."""

from __future__ import annotations

import pytest
from sqlmodel import select

from messaging.contacts import ContactInput, find_contacts, upsert_contact
from models import Contact, session_scope
from models.crypto import get_cipher

pytestmark = pytest.mark.db

PAT_EMAIL, SAM_PHONE = "pat@example.com", "+61412345111"


def add(
    first_name: str, *, email: str | None = None, phone: str | None = None, wix: str | None = None
) -> int:
    cipher = get_cipher()
    with session_scope() as session:
        contact = Contact(
            first_name=first_name,
            email=email,
            email_hash=cipher.blind_index("email", email) if email else None,
            phone=phone,
            phone_hash=cipher.blind_index("phone", phone) if phone else None,
            wix_contact_id=wix,
        )
        session.add(contact)
        session.flush()
        assert contact.id is not None
        return contact.id


def found(*addresses: tuple[str, str | None]) -> list[str | None]:
    with session_scope() as session:
        return [c.first_name for c in find_contacts(session, addresses)]  # type: ignore[arg-type]


def test_the_callers_order_decides_when_email_and_phone_point_at_different_patients(db: str) -> None:
    add("Pat", email=PAT_EMAIL)
    add("Sam", phone=SAM_PHONE)

    assert found(("email", PAT_EMAIL), ("phone", SAM_PHONE)) == ["Pat", "Sam"]
    assert found(("phone", SAM_PHONE), ("email", PAT_EMAIL)) == ["Sam", "Pat"]
    # An address nobody holds ranks nothing, whatever its place.
    assert found(("email", "nobody@example.com"), ("phone", SAM_PHONE)) == ["Sam"]


def test_patients_sharing_an_address_come_oldest_first_and_all_of_them(db: str) -> None:
    add("Parent", email="family@example.com")
    add("Other", phone=SAM_PHONE)
    add("Child", email="family@example.com", phone=SAM_PHONE)

    assert found(("email", "family@example.com")) == ["Parent", "Child"]
    # Child holds both addresses: it ranks by the better one, ahead of Other (phone only).
    assert found(("email", "family@example.com"), ("phone", SAM_PHONE)) == ["Parent", "Child", "Other"]
    assert found(("phone", SAM_PHONE)) == ["Other", "Child"]


def test_empty_addresses_are_ignored_and_addresses_match_only_their_own_kind(db: str) -> None:
    add("Pat", email=PAT_EMAIL, phone=SAM_PHONE)

    assert found() == [] and found(("email", None), ("phone", "")) == []
    assert found(("email", None), ("phone", SAM_PHONE)) == ["Pat"]
    assert found(("phone", PAT_EMAIL), ("email", SAM_PHONE)) == []
    assert found(("email", "someone@example.com")) == []


@pytest.mark.parametrize(
    ("email", "phone", "wix", "expected"),
    [
        (PAT_EMAIL, SAM_PHONE, "wix-kim", "Sam"),  # the phone outranks the email and the Wix id
        (PAT_EMAIL, "+61412345999", "wix-kim", "Pat"),  # then the email
        ("new@example.com", "+61412345999", "wix-kim", "Kim"),  # then the Wix contact id
        ("new@example.com", None, None, None),  # nobody: a new patient
    ],
)
def test_a_booking_matches_by_phone_then_email_then_wix_id(
    db: str, email: str | None, phone: str | None, wix: str | None, expected: str | None
) -> None:
    ids = {
        "Pat": add("Pat", email=PAT_EMAIL),
        "Sam": add("Sam", phone=SAM_PHONE),
        "Kim": add("Kim", wix="wix-kim"),
    }

    with session_scope() as session:
        change = upsert_contact(session, ContactInput("Booked", None, email, phone, wix))
        matched, created = change.contact.id, change.created

    assert created == (expected is None)
    assert matched == ids.get(expected or "", matched)
    with session_scope() as session:
        stored = session.get(Contact, matched)
        assert stored is not None and len(session.exec(select(Contact)).all()) == 3 + created
    # What the booking told us lands on the matched record: non-empty values replace stored ones.
    assert (stored.first_name, stored.email) == ("Booked", email)
    assert stored.phone == (phone or (SAM_PHONE if expected == "Sam" else None))
