"""Tables, states, settings and the database session factory. Imports nothing else of ours."""

from models.audit import AuditLog
from models.crm import Booking, Contact
from models.db import get_engine, session_scope
from models.enums import BookingStatus, Channel, InboxStatus, MessageKind, MessageStatus, Purpose
from models.inbox import WebhookEvent
from models.outbox import OutboundMessage, OutboundMessageEvent
from models.settings import Settings, get_settings

__all__ = [
    "AuditLog",
    "Booking",
    "BookingStatus",
    "Channel",
    "Contact",
    "InboxStatus",
    "MessageKind",
    "MessageStatus",
    "OutboundMessage",
    "OutboundMessageEvent",
    "Purpose",
    "Settings",
    "WebhookEvent",
    "get_engine",
    "get_settings",
    "session_scope",
]
