"""Bringing the clinic's Google Contacts into the CRM (the `google-contacts-import` flow's rules).

The first run (and `full=True`, and any run whose sync token Google has expired, after 7 days) reads every
contact with People API `connections.list`; later runs read only what changed since the sync token the last
run stored. Each person is matched to a patient by Google resource name, then email, then phone (blind
indexes; nothing is looked up in clear). A match only gets what it lacks: names, email and phone the clinic
entered are never overwritten. Unknown people with an email or phone become new contacts (importing grants no
marketing consent). A person deleted in Google is unlinked from the patient, never deleted; a full sync also
unlinks patients whose Google contact no longer exists. Every change is audit-logged and listed in a table
artifact by contact id (no names, addresses or numbers).

Not connected: when the clinic never connected Google (or staff disconnected it) the run completes and says
so; when Google refused the stored token (invalid_grant) the run fails, so ops notice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from messaging.contacts import AddressKind, find_contacts, lock_keys, normalize_email, normalize_phone
from models import Contact, GoogleConnectionStatus, SyncCursor, get_settings, session_scope
from models.audit import run_audit
from models.crypto import get_cipher
from models.types import utcnow
from providers.google_api import (
    GooglePermanentError,
    build_service,
    execute,
)
from providers.google_oauth import connection_status

CURSOR_NAME = "google-contacts"
PERSON_FIELDS = "names,emailAddresses,phoneNumbers"
PAGE_SIZE = 1000
ARTIFACT_KEY = "google-contacts-import"
ARTIFACT_MAX_ROWS = 500
ACTOR = "google-contacts-import"


class SyncTokenExpired(Exception):
    """Google no longer honours the stored sync token: only a full sync can continue."""


@dataclass(frozen=True)
class Person:
    resource_name: str
    first_name: str | None
    last_name: str | None
    emails: tuple[str, ...]  # normalised, primary first
    phones: tuple[str, ...]  # E.164, primary first
    deleted: bool = False


@dataclass(frozen=True)
class Change:
    """What happened to one patient, by id: the artifact is readable through Prefect's API, so no names,
    addresses or numbers (not even masked ones) go into it."""

    action: str  # created | updated | unlinked
    contact_id: int
    fields: tuple[str, ...] = ()  # which fields were filled, by name


@dataclass
class ImportResult:
    mode: str  # full | incremental | full (sync token expired)
    seen: int = 0
    unchanged: int = 0
    skipped: int = 0  # people with neither a usable email nor a phone
    changes: list[Change] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        tally = {"seen": self.seen, "created": 0, "updated": 0, "unlinked": 0}
        for change in self.changes:
            tally[change.action] += 1
        return tally | {"unchanged": self.unchanged, "skipped": self.skipped}


# --- reading Google ----------------------------------------------------------------------------------------


def parse_person(raw: dict[str, Any], region: str) -> Person:
    """The fields we use from a People API Person, normalised; malformed entries are dropped."""
    deleted = bool((raw.get("metadata") or {}).get("deleted"))
    names = raw.get("names") or [{}]
    name = next((n for n in names if (n.get("metadata") or {}).get("primary")), names[0])
    first = name.get("givenName") or (None if name.get("familyName") else name.get("displayName"))
    emails = [normalize_email(e.get("value")) for e in _primary_first(raw.get("emailAddresses"))]
    phones = [
        normalize_phone(p.get("canonicalForm") or p.get("value"), region)
        for p in _primary_first(raw.get("phoneNumbers"))
    ]
    return Person(
        resource_name=str(raw["resourceName"]),
        first_name=_clean(first),
        last_name=_clean(name.get("familyName")),
        emails=tuple(dict.fromkeys(e for e in emails if e)),
        phones=tuple(dict.fromkeys(p for p in phones if p)),
        deleted=deleted,
    )


def pages(sync_token: str | None) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    """Each page of connections, and (on the last page) the next sync token. Raises `SyncTokenExpired`."""
    people = build_service("people").people()
    page_token: str | None = None
    while True:
        params: dict[str, Any] = {
            "resourceName": "people/me",
            "personFields": PERSON_FIELDS,
            "pageSize": PAGE_SIZE,
            "requestSyncToken": True,
        }
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        try:
            response = execute(people.connections().list(**params))
        except GooglePermanentError as exc:
            if sync_token and _is_expired_sync_token(exc):
                raise SyncTokenExpired(str(exc)) from exc
            raise
        page_token = response.get("nextPageToken")
        yield response.get("connections", []), None if page_token else response.get("nextSyncToken")
        if not page_token:
            return


def _is_expired_sync_token(exc: GooglePermanentError) -> bool:
    text = str(exc).lower()
    return exc.status == 410 or (
        exc.status == 400 and ("expired_sync_token" in text or "sync token is expired" in text)
    )


# --- merging into the CRM ----------------------------------------------------------------------------------


def run_import(full: bool = False) -> ImportResult:
    """Sync once (full, or incremental from the stored token), merge, store the next token.

    Raises `GoogleNotConnected`, `GoogleTemporaryError` (retry), `GooglePermanentError`. Merging is
    idempotent, so a sync retried after a failure half-way re-applies the pages it had done harmlessly.
    """
    token = None if full else _stored_token()
    mode = "full" if token is None else "incremental"
    try:
        return _sync(token, ImportResult(mode))
    except SyncTokenExpired:
        return _sync(None, ImportResult("full (sync token expired)"))


def _sync(token: str | None, result: ImportResult) -> ImportResult:
    region = get_settings().default_phone_region
    seen: set[str] = set()
    next_token: str | None = None
    for raw_people, page_sync_token in pages(token):
        next_token = page_sync_token or next_token  # Google sends it with the last page
        people = [parse_person(raw, region) for raw in raw_people if raw.get("resourceName")]
        seen.update(p.resource_name for p in people)
        with session_scope() as session:
            merge_page(session, people, result)
    with session_scope() as session:
        if token is None:  # a full listing: whoever was linked but is not listed any more was deleted
            for contact in session.exec(select(Contact).where(Contact.google_resource_name.is_not(None))):  # type: ignore[union-attr]
                if contact.google_resource_name not in seen:
                    _unlink(session, contact, result)
        _store_token(session, next_token, full=token is None)
    return result


def merge_page(session: Session, people: list[Person], result: ImportResult) -> None:
    """Merge one page in the caller's transaction, locking every address on it before touching any.

    Locking person by person would take the page's keys in Google's order while booking intake takes its
    keys sorted, and two transactions taking shared keys in different orders deadlock; one sorted
    `lock_keys` call for the whole page keeps the global order.
    """
    cipher = get_cipher()
    lock_keys(
        session,
        [
            f"contact:{cipher.blind_index(kind, value)}"
            for person in people
            if not person.deleted
            for kind, value in _addresses(person)
        ],
    )
    for person in people:
        result.seen += 1
        merge_person(session, person, result)


def merge_person(session: Session, person: Person, result: ImportResult) -> None:
    """Needs the person's contact locks held (`merge_page` takes them for the whole page)."""
    if person.deleted:
        for contact in session.exec(
            select(Contact).where(Contact.google_resource_name == person.resource_name)
        ).all():
            _unlink(session, contact, result)
        return
    cipher = get_cipher()
    email_hashes = [cipher.blind_index("email", e) for e in person.emails]
    phone_hashes = [cipher.blind_index("phone", p) for p in person.phones]
    contact = _linked(session, person.resource_name)
    if contact is None:
        matches = find_contacts(session, _addresses(person))
        contact = matches[0] if matches else None
    if contact is None:
        if not (person.emails or person.phones):
            result.skipped += 1
            return
        contact = Contact(
            first_name=person.first_name,
            last_name=person.last_name,
            email=person.emails[0] if person.emails else None,
            email_hash=email_hashes[0] if email_hashes else None,
            phone=person.phones[0] if person.phones else None,
            phone_hash=phone_hashes[0] if phone_hashes else None,
            google_resource_name=person.resource_name,
        )
        session.add(contact)
        session.flush()
        filled = tuple(n for n in ("first_name", "last_name", "email", "phone") if getattr(contact, n))
        _record(session, "created", contact, person.resource_name, filled, result)
        return
    filled = _fill_gaps(session, contact, person, email_hashes, phone_hashes)
    if filled:
        contact.updated_at = utcnow()
        session.add(contact)
        session.flush()
        _record(session, "updated", contact, person.resource_name, filled, result)
    else:
        result.unchanged += 1


def _linked(session: Session, resource_name: str) -> Contact | None:
    return session.exec(
        select(Contact)
        .where(Contact.google_resource_name == resource_name)
        .order_by(Contact.id)  # type: ignore[arg-type]
        .limit(1)
    ).first()


def _addresses(person: Person) -> list[tuple[AddressKind, str]]:
    """Every email before any phone, each primary first: the order in which they identify a patient."""
    return [*(("email", e) for e in person.emails), *(("phone", p) for p in person.phones)]


def _fill_gaps(
    session: Session, contact: Contact, person: Person, email_hashes: list[str], phone_hashes: list[str]
) -> tuple[str, ...]:
    """Only what the patient's record lacks; an email/phone another patient already has is left alone."""
    filled = []
    if not contact.first_name and not contact.last_name and (person.first_name or person.last_name):
        contact.first_name, contact.last_name = person.first_name, person.last_name
        filled.append("name")
    if not contact.email and person.emails and not _taken(session, Contact.email_hash, email_hashes[0]):
        contact.email, contact.email_hash = person.emails[0], email_hashes[0]
        filled.append("email")
    if not contact.phone and person.phones and not _taken(session, Contact.phone_hash, phone_hashes[0]):
        contact.phone, contact.phone_hash = person.phones[0], phone_hashes[0]
        filled.append("phone")
    if contact.google_resource_name != person.resource_name and not contact.google_resource_name:
        contact.google_resource_name = person.resource_name
        filled.append("google_link")
    return tuple(filled)


def _taken(session: Session, column: Any, value: str) -> bool:
    return session.exec(select(Contact.id).where(column == value).limit(1)).first() is not None


def _unlink(session: Session, contact: Contact, result: ImportResult) -> None:
    resource_name = contact.google_resource_name or ""
    contact.google_resource_name = None
    contact.updated_at = utcnow()
    session.add(contact)
    session.flush()
    _record(session, "unlinked", contact, resource_name, ("google_link",), result)


def _record(
    session: Session,
    action: str,
    contact: Contact,
    resource_name: str,
    fields: tuple[str, ...],
    result: ImportResult,
) -> None:
    assert contact.id is not None
    session.add(
        run_audit(
            ACTOR,
            f"contact.{action}_from_google",
            "contact",
            contact.id,
            google_resource_name=resource_name,
            fields=list(fields),
        )
    )
    result.changes.append(Change(action, contact.id, fields))


def _stored_token() -> str | None:
    with session_scope() as session:
        cursor = session.exec(select(SyncCursor).where(SyncCursor.name == CURSOR_NAME)).first()
        return cursor.token if cursor else None


def _store_token(session: Session, token: str | None, *, full: bool) -> None:
    cursor = session.exec(select(SyncCursor).where(SyncCursor.name == CURSOR_NAME)).first() or SyncCursor(
        name=CURSOR_NAME
    )
    cursor.token = token
    cursor.updated_at = utcnow()
    if full:
        cursor.full_sync_at = cursor.updated_at
    session.add(cursor)


def artifact_rows(result: ImportResult) -> list[dict[str, object]]:
    return [
        {
            "action": change.action,
            "contact_id": change.contact_id,
            "fields": ", ".join(change.fields),
        }
        for change in result.changes[:ARTIFACT_MAX_ROWS]
    ]


def not_connected_reason() -> tuple[str, bool] | None:
    """Why nothing can be imported, and whether that is a failure (a refused token) or just a fact."""
    status = connection_status()
    if status.state == "not-configured":
        return "Google is not configured (GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET unset)", False
    if status.state == "not-connected":
        return "no Google account has been connected (run `avatar-crm google connect`)", False
    if status.state == GoogleConnectionStatus.REVOKED:
        return f"staff disconnected Google ({status.reason or 'no reason recorded'})", False
    if status.state == GoogleConnectionStatus.DISCONNECTED:
        return f"Google refused the stored token; reconnect it ({status.reason or 'invalid_grant'})", True
    return None


def _primary_first(entries: Any) -> list[dict[str, Any]]:
    items = [e for e in entries or [] if isinstance(e, dict)]
    return sorted(items, key=lambda e: not (e.get("metadata") or {}).get("primary"))


def _clean(value: Any) -> str | None:
    return str(value).strip()[:200] or None if value else None
