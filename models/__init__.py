"""Tables, states, settings and the database session factory. Imports nothing else of ours."""

from models.audit import AuditLog
from models.consent import ConsentEvent, Suppression
from models.crm import Booking, Contact
from models.db import get_engine, session_scope
from models.enums import (
    BookingStatus,
    Channel,
    ConsentAction,
    InboxStatus,
    MessageKind,
    MessageStatus,
    Purpose,
    StaffAttention,
)
from models.inbox import WebhookEvent
from models.outbox import DeliveryReceipt, OutboundMessage, OutboundMessageEvent
from models.settings import Settings, get_settings

__all__ = [
    "AuditLog",
    "Booking",
    "BookingStatus",
    "Channel",
    "ConsentAction",
    "ConsentEvent",
    "Contact",
    "DeliveryReceipt",
    "InboxStatus",
    "MessageKind",
    "MessageStatus",
    "OutboundMessage",
    "OutboundMessageEvent",
    "Purpose",
    "Settings",
    "StaffAttention",
    "Suppression",
    "WebhookEvent",
    "get_engine",
    "get_settings",
    "session_scope",
]
