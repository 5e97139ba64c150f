"""Google Contacts import against the fake People API over HTTP and the real database: paging, incremental
changes with the sync token, falling back to a full sync when Google expires the token, merging without
overwriting what the clinic entered, deletions as unlinks, and what ops see (artifact rows, flow outcome).

The import is run as the function the flow's task wraps (`run_import`); the flow body's decisions about a
missing or refused connection are run through `google_contacts_import.fn`, which needs no Prefect server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect.states import Failed
from sqlalchemy import text
from sqlmodel import Session, select

from flows.google_contacts_import import google_contacts_import, is_temporary
from messaging import google_contacts as importer
from messaging.contacts import lock_keys
from messaging.google_contacts import artifact_rows, run_import
from models import (
    AuditLog,
    Contact,
    GoogleConnection,
    GoogleConnectionStatus,
    SyncCursor,
    get_settings,
    session_scope,
)
from models.crypto import get_cipher
from models.db import get_engine
from models.types import utcnow
from providers.google_api import SCOPES, GoogleNotConnected, GoogleTemporaryError
from tests.fakes.google import FakeGoogle
from tests.lock_races import start_until_blocked

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogle]:
    with FakeGoogle() as server:
        yield server


@pytest.fixture
def google(db: str, fake: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """Google configured, pointed at the fake, and connected (as if the clinic had done the OAuth flow)."""
    fake.reset()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    monkeypatch.setattr(importer, "PAGE_SIZE", 2)  # small pages, so a handful of people spans several
    with session_scope() as session:
        for table in ("googleconnection", "synccursor"):
            session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (fixed table names)
    connect(fake)
    yield fake
    get_settings.cache_clear()


def connect(fake: FakeGoogle) -> None:
    refresh, access = fake.issue_tokens(" ".join(SCOPES))
    with session_scope() as session:
        session.add(
            GoogleConnection(
                account_email=fake.account_email,
                refresh_token=refresh,
                scopes=" ".join(SCOPES),
                access_token=access,
                access_token_expires_at=utcnow() + timedelta(minutes=50),
            )
        )


def contacts() -> dict[str | None, Contact]:
    """Every patient, by Google resource name (None for those never linked or unlinked: last one wins)."""
    with session_scope() as session:
        return {c.google_resource_name: c for c in session.exec(select(Contact).order_by(Contact.id)).all()}


def all_contacts() -> list[Contact]:
    with session_scope() as session:
        return list(session.exec(select(Contact).order_by(Contact.id)).all())


def people_calls(fake: FakeGoogle) -> list[dict]:
    return fake.requests_to("/v1/people/me/connections")


def stored_token() -> str | None:
    with session_scope() as session:
        cursor = session.exec(select(SyncCursor).where(SyncCursor.name == "google-contacts")).first()
        return cursor.token if cursor else None


def seed(fake: FakeGoogle) -> list[str]:
    return [
        fake.add_person("Ada", "Lovelace", emails=["Ada@Example.com"], phones=["0412 345 001"]),
        fake.add_person("Bob", "Brown", emails=["bob@example.com"]),
        fake.add_person("Cy", None, phones=["+61 412 345 003"]),
        fake.add_person("Dee", "Dunn", emails=["dee@example.com"], phones=["0412 345 004"]),
        fake.add_person("Name Only", None),  # nothing to reach them by: not a patient record
    ]


def test_a_first_run_reads_every_page_and_creates_contacts(google: FakeGoogle) -> None:
    names = seed(google)

    result = run_import()

    calls = people_calls(google)
    assert len(calls) == 3  # 5 people, 2 a page
    assert [c["query"].get("pageToken") is not None for c in calls] == [False, True, True]
    for call in calls:
        assert call["query"]["personFields"] == "names,emailAddresses,phoneNumbers"
        assert call["query"]["requestSyncToken"] == "true" and "syncToken" not in call["query"]
    assert result.mode == "full"
    assert result.counts() == {
        "seen": 5,
        "created": 4,
        "updated": 0,
        "unlinked": 0,
        "unchanged": 0,
        "skipped": 1,
    }
    by_name = contacts()
    ada = by_name[names[0]]
    assert (ada.first_name, ada.last_name, ada.email, ada.phone) == (
        "Ada",
        "Lovelace",
        "ada@example.com",
        "+61412345001",
    )
    assert ada.email_hash == get_cipher().blind_index("email", "ada@example.com")
    assert ada.email_marketing_consent_at is None and ada.sms_marketing_consent_at is None  # no consent
    assert by_name[names[2]].phone == "+61412345003" and by_name[names[2]].email is None
    assert names[4] not in by_name
    assert stored_token() is not None
    with session_scope() as session:
        audit = session.exec(select(AuditLog).where(AuditLog.action == "contact.created_from_google")).all()
    assert len(audit) == 4
    assert all("@" not in str(a.detail) and "+61" not in str(a.detail) for a in audit)

    # Running again changes nothing and creates no duplicates.
    again = run_import()
    assert again.mode == "incremental" and again.changes == []
    assert len(all_contacts()) == 4


def test_an_incremental_run_applies_additions_changes_and_deletions(google: FakeGoogle) -> None:
    ada, bob, cy, dee, _ = seed(google)
    run_import()
    token = stored_token()
    google.requests.clear()
    eve = google.add_person("Eve", "Evans", emails=["eve@example.com"])
    google.update_person(bob, phones=["0412 345 002"])  # Bob gets a phone: the CRM lacked one
    google.update_person(cy, given_name="Cyrus")  # a name the clinic already has: not overwritten
    google.delete_person(dee)

    result = run_import()

    calls = people_calls(google)
    assert len(calls) == 2  # four changes, two a page
    assert all(c["query"]["syncToken"] == token for c in calls)  # paging repeats the first call's parameters
    assert result.mode == "incremental"
    assert {(c.action, c.fields) for c in result.changes} == {
        ("created", ("first_name", "last_name", "email")),
        ("updated", ("phone",)),
        ("unlinked", ("google_link",)),
    }
    assert result.unchanged == 1  # Cy
    by_name = contacts()
    assert by_name[eve].email == "eve@example.com"
    assert by_name[bob].phone == "+61412345002"
    assert by_name[cy].first_name == "Cy"
    assert dee not in by_name
    dunn = next(c for c in all_contacts() if c.last_name == "Dunn")  # still a patient, just unlinked
    assert dunn.google_resource_name is None and dunn.email == "dee@example.com"
    assert stored_token() != token
    assert ada in by_name


def test_an_expired_sync_token_falls_back_to_a_full_sync(google: FakeGoogle) -> None:
    _, bob, *_ = seed(google)
    run_import()
    old_token = stored_token()
    google.expire_sync_tokens()
    google.delete_person(bob)  # deleted while we were not looking: a full listing no longer has Bob
    google.add_person("Fay", emails=["fay@example.com"])
    google.requests.clear()

    result = run_import()

    calls = people_calls(google)
    assert calls[0]["query"]["syncToken"] == old_token and calls[0]["status"] == 400
    assert all("syncToken" not in c["query"] for c in calls[1:]) and len(calls) == 4  # 1 refused + 3 pages
    assert result.mode == "full (sync token expired)"
    assert sorted(c.action for c in result.changes) == ["created", "unlinked"]
    assert bob not in contacts()
    assert stored_token() not in (None, old_token)
    # And the new token works for the next incremental run.
    assert run_import().mode == "incremental"


def test_full_flag_ignores_the_stored_token(google: FakeGoogle) -> None:
    seed(google)
    run_import()
    google.requests.clear()
    result = run_import(full=True)
    assert result.mode == "full" and result.unchanged == 4 and result.changes == []
    assert all("syncToken" not in c["query"] for c in people_calls(google))


def test_merging_fills_gaps_and_never_overwrites_what_the_clinic_entered(google: FakeGoogle) -> None:
    cipher = get_cipher()
    with session_scope() as session:
        entered = Contact(
            first_name="Jane",
            last_name="Citizen",
            phone="+61412345678",
            phone_hash=cipher.blind_index("phone", "+61412345678"),
        )
        other = Contact(
            first_name="Tom",
            email="tom@clinic.example",
            email_hash=cipher.blind_index("email", "tom@clinic.example"),
        )
        nameless = Contact(email="kim@example.com", email_hash=cipher.blind_index("email", "kim@example.com"))
        session.add_all([entered, other, nameless])
    jane = google.add_person("Janet", "Smith", emails=["janet@example.com"], phones=["0412 345 678"])
    # Matched by email to Tom, but offers a phone and a different name: only the phone is new.
    tom = google.add_person("Thomas", "Other", emails=["TOM@clinic.example"], phones=["0412 999 000"])
    kim = google.add_person("Kim", "Lee", emails=["kim@example.com"])

    result = run_import()

    assert result.counts()["created"] == 0 and len(all_contacts()) == 3
    by_name = contacts()
    assert (by_name[jane].first_name, by_name[jane].last_name) == ("Jane", "Citizen")
    assert (by_name[jane].phone, by_name[jane].email) == ("+61412345678", "janet@example.com")
    assert (by_name[tom].first_name, by_name[tom].last_name) == ("Tom", None)
    assert (by_name[tom].email, by_name[tom].phone) == ("tom@clinic.example", "+61412999000")
    assert (by_name[kim].first_name, by_name[kim].last_name) == ("Kim", "Lee")  # it had no name at all
    fields = {c.contact_id: c.fields for c in result.changes}
    assert fields[by_name[jane].id] == ("email", "google_link")
    assert fields[by_name[kim].id] == ("name", "google_link")


def test_an_email_another_patient_holds_is_not_copied_onto_a_second_record(google: FakeGoogle) -> None:
    cipher = get_cipher()
    with session_scope() as session:
        session.add(
            Contact(
                first_name="Pat",
                email="pat@example.com",
                email_hash=cipher.blind_index("email", "pat@example.com"),
            )
        )
        session.add(
            Contact(
                first_name="Sam", phone="+61412345111", phone_hash=cipher.blind_index("phone", "+61412345111")
            )
        )
    # Phone says Sam, email says Pat: linked to the first match (by email), Sam's record is left alone.
    shared = google.add_person("Sam", emails=["pat@example.com"], phones=["0412 345 111"])
    run_import()
    linked = contacts()[shared]
    assert linked.first_name == "Pat" and linked.phone is None  # Sam's number stays Sam's alone
    assert len(all_contacts()) == 2


def test_any_email_outranks_the_phone_and_the_google_link_outranks_both(google: FakeGoogle) -> None:
    cipher = get_cipher()
    with session_scope() as session:
        pat = Contact(
            first_name="Pat",
            email="pat@example.com",
            email_hash=cipher.blind_index("email", "pat@example.com"),
        )
        sam = Contact(
            first_name="Sam", phone="+61412345111", phone_hash=cipher.blind_index("phone", "+61412345111")
        )
        session.add_all([pat, sam])
    # Nobody holds the primary email; the second one is Pat's, the phone Sam's: Pat's record is the match.
    shared = google.add_person("Sam", emails=["new@example.com", "pat@example.com"], phones=["0412 345 111"])
    run_import()
    assert contacts()[shared].first_name == "Pat" and len(all_contacts()) == 2

    # Once linked, the link decides, even when Google's person now lists only Sam's number.
    google.update_person(shared, emails=[], phones=["0412 345 111"])
    result = run_import()
    assert result.unchanged == 1 and result.changes == []
    linked = contacts()[shared]
    assert linked.first_name == "Pat" and linked.phone is None  # Sam's number stays Sam's alone
    assert next(c for c in all_contacts() if c.first_name == "Sam").google_resource_name is None


def test_a_page_and_a_booking_sharing_patients_both_complete(google: FakeGoogle) -> None:
    """Booking intake locks a patient's addresses in sorted order; so must a page, or the two deadlock."""
    if get_engine().dialect.name != "postgresql":
        pytest.skip("only PostgreSQL takes advisory locks; SQLite transactions are serial")
    cipher = get_cipher()
    by_key = {f"contact:{cipher.blind_index('email', e)}": e for e in ("one@example.com", "two@example.com")}
    low, high = sorted(by_key)
    # The page lists the patient with the higher key first (PAGE_SIZE is 2: one page).
    google.add_person("High", emails=[by_key[high]])
    google.add_person("Low", emails=[by_key[low]])
    with Session(get_engine()) as booking:  # a booking for a patient with both addresses, half-way locked
        lock_keys(booking, [low])
        page = start_until_blocked(run_import, "the locked address")
        lock_keys(booking, [low, high])  # the rest of the booking's keys, in order
        booking.commit()
    page.finish()

    assert sorted(c.email for c in all_contacts()) == sorted(by_key.values())


def test_artifact_rows_show_what_changed_by_contact_id_only(google: FakeGoogle) -> None:
    """The artifact is readable through Prefect's API: ids, actions and field names; nothing of the patient,
    not even a masked address or number."""
    seed(google)
    rows = artifact_rows(run_import())
    with session_scope() as session:
        contacts = {c.id: c for c in session.exec(select(Contact)).all()}
    assert len(rows) == 4 and {r["action"] for r in rows} == {"created"}
    assert all(set(row) == {"action", "contact_id", "fields"} for row in rows)
    assert {r["contact_id"] for r in rows} == set(contacts)
    ada = next(r for r in rows if contacts[r["contact_id"]].first_name == "Ada")
    assert ada["fields"] == "first_name, last_name, email, phone"
    flat = str(rows)
    for name in ("Ada", "Lovelace", "Bob", "Brown", "Dee", "Dunn", "example.com", "…", "412", "+61"):
        assert name not in flat


def test_temporary_google_trouble_is_retried_and_a_retry_does_not_duplicate(google: FakeGoogle) -> None:
    seed(google)
    google.fail("/v1/people", 1, 503)
    with pytest.raises(GoogleTemporaryError) as first:
        run_import()
    assert is_temporary(Failed(data=first.value))
    assert not is_temporary(Failed(data=GoogleNotConnected("x")))
    assert stored_token() is None

    # A failure after the first page: that page was merged; the retry merges it again harmlessly.
    google.requests.clear()
    original = importer.pages

    def failing_second_page(token: str | None):  # type: ignore[no-untyped-def]
        pages = original(token)
        yield next(pages)
        google.fail("/v1/people", 1, 503)
        yield from pages

    importer.pages = failing_second_page  # type: ignore[assignment]
    try:
        with pytest.raises(GoogleTemporaryError):
            run_import()
    finally:
        importer.pages = original  # type: ignore[assignment]
    assert len(all_contacts()) == 2 and stored_token() is None
    result = run_import()
    assert result.counts()["created"] == 2 and result.unchanged == 2
    assert len(all_contacts()) == 4 and stored_token() is not None


async def test_the_flow_completes_quietly_when_google_was_never_connected(
    google: FakeGoogle, caplog: pytest.LogCaptureFixture
) -> None:
    with session_scope() as session:
        session.execute(text("DELETE FROM googleconnection"))
    with caplog.at_level("INFO"):
        assert await google_contacts_import.fn() == {}
    assert "nothing imported: no Google account has been connected" in caplog.text
    assert people_calls(google) == []


async def test_the_flow_fails_when_google_refused_the_token(google: FakeGoogle) -> None:
    with session_scope() as session:
        connection = session.exec(select(GoogleConnection)).one()
        connection.status = GoogleConnectionStatus.DISCONNECTED
        connection.status_reason = "Google refused the refresh token (invalid_grant)"
        session.add(connection)
    with pytest.raises(GoogleNotConnected, match="invalid_grant"):
        await google_contacts_import.fn()
    assert people_calls(google) == []


def test_invalid_grant_during_an_import_disconnects_and_stops(google: FakeGoogle) -> None:
    seed(google)
    google.revoke_all_refresh_tokens()
    with session_scope() as session:
        connection = session.exec(select(GoogleConnection)).one()
        connection.access_token_expires_at = utcnow() - timedelta(minutes=1)
        session.add(connection)

    with pytest.raises(GoogleNotConnected):
        run_import()

    assert all_contacts() == []
    with session_scope() as session:
        assert session.exec(select(GoogleConnection)).one().status == GoogleConnectionStatus.DISCONNECTED
    reason, is_failure = importer.not_connected_reason()  # type: ignore[misc]
    assert is_failure and "invalid_grant" in reason
