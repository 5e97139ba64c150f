"""The suppression list and consent ledger on the real database: what each source of an opt-out suppresses,
what START lifts, that the one check blocks every later send, and that the ledger keeps the evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from messaging import consent, outbox
from messaging.outbox import Outcome
from models import (
    Channel,
    ConsentEvent,
    ConsentOrigin,
    Contact,
    MessageKind,
    MessageStatus,
    OutboundMessage,
    Purpose,
    Suppression,
    session_scope,
)
from models.crypto import get_cipher
from models.db import get_engine
from models.migrate import upgrade
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
    stop = consent.ConsentSource("sms_reply", "test", "STOP please", origin=ConsentOrigin.PATIENT_SMS)
    start = consent.ConsentSource("sms_reply", "test", "START", origin=ConsentOrigin.PATIENT_SMS)
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


def _source(origin: ConsentOrigin, source: str = "staff", words: str | None = None) -> consent.ConsentSource:
    return consent.ConsentSource(source, "test", words, origin=origin)


def test_staff_cannot_lift_a_patients_stop_and_the_refused_attempt_is_in_the_ledger(db: str) -> None:
    contact = _contact()
    stop = _source(ConsentOrigin.PATIENT_SMS, "sms_reply", "STOP")
    staff = _source(ConsentOrigin.STAFF, words="ticked the marketing box on the paper form")
    with session_scope() as session:
        consent.withdraw(session, phone=PHONE, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=stop)
    before = _scopes()
    with pytest.raises(consent.ConsentRefused) as refused, session_scope() as session:
        row = session.get(Contact, contact.id)
        assert row is not None
        consent.set_marketing_consent(session, row, Channel.SMS, granted=True, why=staff)
    assert "texted STOP" in refused.value.reason and "START" in refused.value.reason
    with pytest.raises(consent.ConsentRefused), session_scope() as session:  # `suppress remove` as well
        consent.grant(session, phone=PHONE, contact=None, scopes=consent.OPT_OUT_SCOPES, why=staff)
    with session_scope() as session:
        consent.record_refusal(session, refused.value)
    assert _scopes() == before
    with session_scope() as session:
        assert session.get(Contact, contact.id).sms_marketing_consent_at is None  # type: ignore[union-attr]
        ledger = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()  # type: ignore[arg-type]
        assert [(e.action, e.origin) for e in ledger][-1] == ("refused", "staff")
        assert ledger[-1].wording == "ticked the marketing box on the paper form"
        assert {e.origin for e in ledger if e.action == "withdrawn"} == {"patient_sms"}
        sms = consent.may_send(Channel.SMS, Purpose.MARKETING).refusal(session, PHONE)
    assert sms == "sms_reply"


def test_a_patients_stop_takes_over_a_staff_suppression_so_only_start_lifts_it(db: str) -> None:
    contact = _contact()
    with session_scope() as session:
        consent.withdraw(
            session,
            phone=PHONE,
            contact=contact,
            scopes=consent.OPT_OUT_SCOPES,
            why=_source(ConsentOrigin.STAFF, words="asked at reception"),
        )
        assert not consent.withdraw(  # nothing new is suppressed (no second confirmation) ...
            session,
            phone=PHONE,
            contact=contact,
            scopes=consent.OPT_OUT_SCOPES,
            why=_source(ConsentOrigin.PATIENT_SMS, "sms_reply", "STOP"),
        )
    with session_scope() as session:  # ... but the suppressions are now the patient's own
        assert {s.origin for s in session.exec(select(Suppression)).all()} == {"patient_sms"}
    with pytest.raises(consent.ConsentRefused), session_scope() as session:
        consent.grant(
            session,
            phone=PHONE,
            contact=contact,
            scopes=consent.OPT_OUT_SCOPES[:2],
            why=_source(ConsentOrigin.STAFF, words="said it was fine"),
        )
    with session_scope() as session:
        start = _source(ConsentOrigin.PATIENT_SMS, "sms_reply", "START")
        assert consent.grant(
            session, phone=PHONE, contact=contact, scopes=consent.OPT_OUT_SCOPES[:2], why=start
        )
    assert _scopes() == {("email", "marketing")}


def test_staff_may_lift_what_staff_suppressed(db: str) -> None:
    contact = _contact()
    staff = _source(ConsentOrigin.STAFF, words="asked at reception")
    with session_scope() as session:
        consent.withdraw(session, phone=PHONE, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=staff)
    with session_scope() as session:
        assert consent.grant(session, phone=PHONE, contact=contact, scopes=consent.OPT_OUT_SCOPES, why=staff)
    assert _scopes() == set()


def test_a_suppression_of_everything_on_a_channel_blocks_marketing_there_too(db: str) -> None:
    """What the STOP bug came down to: campaigns asked only about marketing suppressions."""
    with session_scope() as session:
        session.add(
            Suppression(
                address_hash=consent.address_hash(Channel.SMS, PHONE),
                channel=Channel.SMS,
                purpose=Purpose.TRANSACTIONAL,
                reason="sms_reply",
                origin=ConsentOrigin.PATIENT_SMS,
            )
        )
    with session_scope() as session:
        marketing = consent.may_send(Channel.SMS, Purpose.MARKETING)
        assert marketing.refusals(session, [PHONE, "+61400000000"]) == {PHONE: "sms_reply"}
        assert consent.may_send(Channel.EMAIL, Purpose.MARKETING).refusal(session, EMAIL) is None
        confirmation = MessageKind.OPT_OUT_CONFIRMATION
        assert (
            consent.may_send(Channel.SMS, Purpose.TRANSACTIONAL).refusal(session, PHONE, confirmation) is None
        )


def test_an_email_unsubscribe_is_lifted_by_the_patients_resubscribe_not_by_staff(db: str) -> None:
    contact = _contact()
    scopes = [(Channel.EMAIL, Purpose.MARKETING)]
    with session_scope() as session:
        why = _source(ConsentOrigin.PATIENT_EMAIL, "sendgrid_group_unsubscribe")
        consent.withdraw(session, phone=None, contact=contact, scopes=scopes, why=why)
    with pytest.raises(consent.ConsentRefused) as refused, session_scope() as session:
        consent.grant(session, phone=None, contact=contact, scopes=scopes, why=_source(ConsentOrigin.STAFF))
    assert "unsubscribed" in refused.value.reason
    with pytest.raises(consent.ConsentRefused), session_scope() as session:  # nor their SMS START
        why = _source(ConsentOrigin.PATIENT_SMS, "sms_reply", "START")
        consent.grant(session, phone=None, contact=contact, scopes=scopes, why=why)
    with session_scope() as session:
        why = _source(ConsentOrigin.PATIENT_EMAIL, "sendgrid_group_resubscribe")
        assert consent.grant(session, phone=None, contact=contact, scopes=scopes, why=why)
    assert _scopes() == set()


def test_rows_from_before_origins_were_recorded_are_classified_the_safe_way(tmp_path: Path) -> None:
    """Migration 0005: staff rows stay staff's, a bounce the provider's, and every other (a reply, an
    unsubscribe, anything unrecognised) the patient's own, so staff cannot lift an old STOP either."""
    url = f"sqlite:///{tmp_path / 'before.db'}"
    upgrade(url, "0004")
    reasons = {
        "staff": "sms",
        "sendgrid_bounce": "email",
        "sms_reply": "sms",
        "sendgrid_unsubscribe": "email",
    }
    reasons |= {"something_old": "sms"}
    at = "2026-01-01 00:00:00"
    with get_engine(url).begin() as connection:
        for i, (reason, channel) in enumerate(reasons.items()):
            values = {"h": f"hash{i}", "c": channel, "r": reason, "at": at}
            connection.execute(
                text(
                    "INSERT INTO suppression (address_hash, channel, purpose, reason, created_at)"
                    " VALUES (:h, :c, 'marketing', :r, :at)"
                ),
                values,
            )
            connection.execute(
                text(
                    "INSERT INTO consentevent (address_hash, channel, purpose, action, source, actor, at)"
                    " VALUES (:h, :c, 'marketing', 'withdrawn', :r, 'old', :at)"
                ),
                values,
            )
    upgrade(url, "0005")
    expected = {
        "staff": "staff",
        "sendgrid_bounce": "provider",
        "sms_reply": "patient_sms",
        "sendgrid_unsubscribe": "patient_email",
        "something_old": "patient_sms",
    }
    with get_engine(url).connect() as connection:
        assert dict(connection.execute(text("SELECT reason, origin FROM suppression")).all()) == expected
        assert dict(connection.execute(text("SELECT source, origin FROM consentevent")).all()) == expected
    get_engine(url).dispose()
