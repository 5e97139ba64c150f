"""The clinic's Google Workspace connection and what syncing with it needs to remember.

The refresh token is the key to the clinic's mailbox and calendar, so it is encrypted like patient data. The
PKCE code verifier lives server-side between the redirect to Google and the callback: it must never travel
through the browser, or PKCE protects nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String, Text
from sqlmodel import Field, SQLModel

from models.crypto import EncryptedText
from models.enums import GoogleConnectionStatus
from models.types import UTCDateTime, utcnow


class GoogleConnection(SQLModel, table=True):
    """One connected Google account (the clinic connects one; a reconnect updates the same row)."""

    id: int | None = Field(default=None, primary_key=True)
    account_email: str = Field(max_length=320, unique=True)
    refresh_token: str = Field(
        sa_column=Column(EncryptedText("googleconnection.refresh_token"), nullable=False)
    )
    scopes: str = Field(sa_column=Column(Text, nullable=False))  # space-separated, as granted
    status: str = Field(default=GoogleConnectionStatus.CONNECTED, sa_type=String(16), index=True)
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    access_token: str | None = Field(
        default=None, sa_column=Column(EncryptedText("googleconnection.access_token"), nullable=True)
    )
    access_token_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    connected_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class OAuthState(SQLModel, table=True):
    """An authorization request in flight: its `state`, the browser session it belongs to, its verifier."""

    id: int | None = Field(default=None, primary_key=True)
    state_hash: str = Field(max_length=64, unique=True)  # SHA-256 of the state sent to Google
    session_hash: str = Field(max_length=64)  # SHA-256 of the browser's session cookie
    # The connect ticket that started it: unique, so a ticket starts one sign-in and a second use is refused.
    ticket_id: str | None = Field(default=None, max_length=64, unique=True, index=True)
    code_verifier: str = Field(sa_column=Column(EncryptedText("oauthstate.code_verifier"), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncCursor(SQLModel, table=True):
    """Where an incremental sync left off, e.g. the People API sync token for contacts import."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    token: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    full_sync_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
