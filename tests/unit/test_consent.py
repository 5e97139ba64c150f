"""The suppression list and consent ledger on the real database: what each source of an opt-out suppresses,
what START lifts, that the one check blocks every later send, and that the ledger keeps the evidence."""

from __future__ import annotations

import pytest
from sqlmodel import select

from flows import consent, outbox
from flows.outbox import Outcome
from models import (
    Channel,
    ConsentEvent,
    Contact,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    Suppression,
    session_scope,
)
from models.crypto import get_cipher
from models.types import utcnow

pytestmark = pytest.mark.db

PHONE, EMAIL = "+61412345678", "alex@example.com"


def _contact() -> Contact:
    cipher = get_cipher()
    with session_scope() as session:
        contact = Contact(
            first_name="Alex",
            phone=PHONE,
            phone_hash=cipher.blind_index("phone", PHONE),
            email=EMAIL,
            email_hash=cipher.blind_index("email", EMAIL),
        )
        session.add(contact)
        session.flush()
        return contact


def _message(contact: Contact, kind: MessageKind = MessageKind.CONFIRMATION, key: str = "m1") -> int:
    with session_scope() as session:
        message = OutboundMessage(
            idempotency_key=key,
            channel=Channel.SMS,
            purpose=Purpose.TRANSACTIONAL,
            kind=kind,
            contact_id=contact.id,
            recipient=PHONE,
            body="Hi Alex",
        )
        session.add(message)
        session.flush()
        return message.id  # type: ignore[return-value]


def _scopes() -> set[tuple[str, str]]:
    with session_scope() as session:
        return {(s.channel, s.purpose) for s in session.exec(select(Suppression)).all()}


def test_a_blocked_send_suppresses_sms_and_marketing_and_blocks_the_next_message(db: str) -> None:
    contact = _contact()
    first = _message(contact)
    claimed = outbox.claim(first)
    assert not isinstance(claimed, str)
    outbox.record_many([Outcome(first, MessageStatus.BLOCKED, "provider result blocked", "mobilemessage")])

    assert _scopes() == {("sms", "transactional"), ("sms", "marketing"), ("email", "marketing")}
    with session_scope() as session:
        [event] = {e.source for e in session.exec(select(ConsentEvent)).all()}
    assert event == "provider_blocked"

    later = _message(contact, key="m2")
    assert outbox.claim(later) == MessageStatus.SUPPRESSED
    confirmation = _message(contact, MessageKind.OPT_OUT_CONFIRMATION, key="m3")
    assert not isinstance(outbox.claim(confirmation), str)  # the one message an opted-out number may get


def test_start_lifts_sms_only_and_the_ledger_keeps_both_changes_with_their_words(db: str) -> None:
    contact = _contact()
    stop = consent.ConsentSource("sms_reply", "test", "STOP please")
    start = consent.ConsentSource("sms_reply", "test", "START")
    with session_scope() as session:
        assert consent.withdraw(
            session, phone=PHONE, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=stop
        )
        assert not consent.withdraw(  # a second STOP changes nothing (and sends no second confirmation)
            session, phone=PHONE, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=stop
        )
    with session_scope() as session:
        sms_only = consent.OPT_OUT_SCOPES[:2]
        assert consent.grant(session, phone=PHONE, contact=contact, scopes=sms_only, why=start)
    assert _scopes() == {("email", "marketing")}  # marketing email needs consent of its own
    with session_scope() as session:
        ledger = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()  # type: ignore[arg-type]
        assert [(e.action, e.wording) for e in ledger][-2:] == [("granted", "START")] * 2
        assert ledger[0].wording == "STOP please" and ledger[0].at <= utcnow()
        raw = session.exec(select(ConsentEvent.address_hash)).first()
    assert raw == get_cipher().blind_index("phone", PHONE)  # found by keyed hash, never stored in clear
