"""Tables of the JABS layer: the integer ids the original clients use, and legacy devices.

The original clients put integer ids in paths and bodies; ours are strings. Each enclosure and
session gets one integer the first time the layer shows it (or the one it had in an imported
JABS database), never reused (SQLite AUTOINCREMENT, a PostgreSQL sequence).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base, utcnow
from controlsvc.store.models.enclosures import ID_LENGTH
from controlsvc.store.models.sessions import SESSION_ID_LENGTH

HOSTNAME_LENGTH = 255


class JabsEnclosure(Base):
    """An enclosure's JABS id; for a legacy device also its host name and credentials."""

    __tablename__ = "jabs_enclosures"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE"), unique=True
    )
    # Set when an admin registered it as a legacy device: the `name` its heartbeats carry
    # (lower case). Heartbeats of unregistered names are refused.
    hostname: Mapped[str | None] = mapped_column(String(HOSTNAME_LENGTH), unique=True, default=None)
    # SHA-256 of the device's token (None: only accepted from [JABS] heartbeat_networks).
    token_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    registered_at: Mapped[datetime | None] = mapped_column(default=None)
    # The last live-view keep-alive of the original UI (GET device/stream/{id}).
    stream_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JabsSession(Base):
    """A session's JABS id."""

    __tablename__ = "jabs_sessions"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_LENGTH), ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
