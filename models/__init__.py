"""Tables, states, settings and the database session factory. Imports nothing else of ours."""

from models.access_audit import AccessAudit
from models.alerts import OpsAlert
from models.audit import AuditLog
from models.campaign import Campaign, ContactTag
from models.consent import ConsentEvent, Suppression
from models.crm import Booking, Contact
from models.cryptokey import CryptoKey
from models.db import get_engine, session_scope
from models.enums import (
    BookingStatus,
    CampaignStatus,
    Channel,
    ConsentAction,
    ConsentOrigin,
    GoogleConnectionStatus,
    InboxStatus,
    MessageKind,
    MessageStatus,
    Purpose,
    StaffAttention,
    StaffRole,
    StaffTaskKind,
    StaffTaskStatus,
)
from models.google import GoogleConnection, OAuthState, SyncCursor
from models.inbox import WebhookEvent
from models.outbox import DeliveryReceipt, OutboundMessage, OutboundMessageEvent
from models.reconciliation import WixReconciliation
from models.settings import Settings, get_settings
from models.staff import StaffMember
from models.staff_task import StaffTask
from models.webhook_outcome import WebhookOutcome

__all__ = [
    "AccessAudit",
    "AuditLog",
    "Booking",
    "BookingStatus",
    "Campaign",
    "CampaignStatus",
    "Channel",
    "ConsentAction",
    "ConsentEvent",
    "ConsentOrigin",
    "Contact",
    "ContactTag",
    "CryptoKey",
    "DeliveryReceipt",
    "GoogleConnection",
    "GoogleConnectionStatus",
    "InboxStatus",
    "MessageKind",
    "MessageStatus",
    "OAuthState",
    "OpsAlert",
    "OutboundMessage",
    "OutboundMessageEvent",
    "Purpose",
    "Settings",
    "StaffAttention",
    "StaffMember",
    "StaffRole",
    "StaffTask",
    "StaffTaskKind",
    "StaffTaskStatus",
    "Suppression",
    "SyncCursor",
    "WebhookEvent",
    "WebhookOutcome",
    "WixReconciliation",
    "get_engine",
    "get_settings",
    "session_scope",
]
