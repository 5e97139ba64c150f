"""States the CRM's rows move through. Stored as plain strings so migrations never fight enum types."""

from __future__ import annotations

from enum import StrEnum


class ConsentAction(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"  # a grant that would have overridden the patient's own opt-out; nothing changed


class ConsentOrigin(StrEnum):
    """Who made a consent change. The patient's own word outranks everyone else's (`messaging/consent.py`)."""

    PATIENT_SMS = "patient_sms"  # the patient's text (STOP, START), or their STOP reported by the provider
    PATIENT_EMAIL = "patient_email"  # the patient's unsubscribe, spam report, resubscribe (SendGrid's links)
    PROVIDER = "provider"  # a provider's finding about the address (a bounce, an invalid address)
    STAFF = "staff"  # clinic staff, with a note of what the patient said
    IMPORT = "import"  # records brought in from elsewhere

    @property
    def is_patient(self) -> bool:
        return self in {ConsentOrigin.PATIENT_SMS, ConsentOrigin.PATIENT_EMAIL}


class StaffAttention(StrEnum):
    """Why a booking needs a person: set by SMS triage, cleared by staff."""

    CANCEL_REQUESTED = "cancel_requested"
    RESCHEDULE_REQUESTED = "reschedule_requested"
    REPLY_NEEDS_REVIEW = "reply_needs_review"


class InboxStatus(StrEnum):
    RECEIVED = "received"  # verified and committed; not yet handed to Prefect
    DISPATCHED = "dispatched"  # a flow run exists for it
    PROCESSED = "processed"  # the flow applied it
    FAILED = "failed"  # the flow gave up; `last_error` says why


class BookingStatus(StrEnum):
    """Wix Bookings v2 `booking.status` values."""

    CREATED = "CREATED"
    CONFIRMED = "CONFIRMED"
    PENDING = "PENDING"
    WAITING_LIST = "WAITING_LIST"
    CANCELED = "CANCELED"
    DECLINED = "DECLINED"

    @property
    def is_active(self) -> bool:
        return self in {BookingStatus.CREATED, BookingStatus.CONFIRMED, BookingStatus.PENDING}

    @property
    def is_accepted(self) -> bool:
        """The clinic has taken the booking (a PENDING request may still be declined); reminders need this."""
        return self in {BookingStatus.CREATED, BookingStatus.CONFIRMED}


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    OPS = "ops"  # staff notifications shown in the Prefect UI (an artifact); email copies are EMAIL rows


class Purpose(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class MessageKind(StrEnum):
    CONFIRMATION = "confirmation"
    REQUEST_RECEIVED = "request_received"
    RESCHEDULE = "reschedule"
    CANCELLATION = "cancellation"
    DECLINED = "declined"
    REMINDER = "reminder"
    REPLY = "reply"  # an answer to a patient's SMS (thanks, what happens next, help text)
    OPT_OUT_CONFIRMATION = "opt_out_confirmation"  # the one message a suppressed number may still get
    STAFF_NOTIFICATION = "staff_notification"
    CAMPAIGN = "campaign"


class MessageStatus(StrEnum):
    PENDING = "pending"  # waiting to be sent (first try, or a retry after a provider outage)
    SENDING = "sending"  # claimed by a sender; the provider may or may not have it
    SENT = "sent"  # the provider accepted it
    SANDBOXED = "sandboxed"  # sandbox mode: recorded, nothing left the machine
    DELIVERED = "delivered"
    BLOCKED = "blocked"  # the provider refused the recipient (opted out)
    FAILED = "failed"  # permanent failure; `last_error` says why
    DROPPED = "dropped"  # its deadline passed, or the booking changed, before it could be sent
    SUPPRESSED = "suppressed"  # the recipient opted out of this channel and purpose
    BOUNCED = "bounced"  # the receiving mail server refused it (or SendGrid dropped it)

    @property
    def is_final(self) -> bool:
        return self not in {MessageStatus.PENDING, MessageStatus.SENDING}


class GoogleConnectionStatus(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # Google refused the refresh token (invalid_grant): someone must reconnect
    REVOKED = "revoked"  # staff disconnected it (`avatar-crm google disconnect`)


class CampaignStatus(StrEnum):
    PREVIEWED = "previewed"  # a dry run: counted and previewed, nothing sent
    SCHEDULED = "scheduled"  # waiting for its send time
    SENDING = "sending"
    TESTING = "testing"  # A/B variants sent to the test group; waiting for the result
    AWAITING_CHOICE = "awaiting_choice"  # no significant winner: a person must choose
    SENT = "sent"
    FAILED = "failed"


class StaffRole(StrEnum):
    RECEPTION = "reception"  # today's bookings, the staff task queue, a patient's phone on request
    MARKETER = "marketer"  # campaigns: counts only, never a patient
    OPS = "ops"  # inbox events, failed runs, suppressions and consent, the KPIs
    ADMIN = "admin"  # staff and roles, the Google connection, keys and secrets status, the audit log


class StaffTaskKind(StrEnum):
    """What a person at the front desk must do about a patient (the console's task queue)."""

    CANCEL_REQUESTED = "cancel_requested"  # the patient asked to cancel: call them
    RESCHEDULE_REQUESTED = "reschedule_requested"  # the patient asked to move: call them
    REPLY_NEEDS_REVIEW = "reply_needs_review"  # a reply the system could not read with confidence
    MESSAGE_FAILED = "message_failed"  # a message to the patient failed for good


class StaffTaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
