"""The event log behind `GET /api/events`, and the single-use tickets that open an event stream.

`events.id` is the SSE event id: it only grows (SQLite AUTOINCREMENT never reuses an id, even
after a purge emptied the table; PostgreSQL uses a sequence). No foreign keys: the log outlives
the enclosures and commands it mentions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base, utcnow

# 64-bit on PostgreSQL (thousands of events a second for a week pass 2**31 within weeks);
# SQLite only auto-increments INTEGER PRIMARY KEY, which is 64-bit there anyway.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class EventRecord(Base):
    """Something a UI should learn of at once: a state or status change, a command result, ..."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_enclosure_id_id", "enclosure_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    enclosure_id: Mapped[str | None] = mapped_column(String(63), default=None)
    session_id: Mapped[str | None] = mapped_column(String(64), default=None)
    command_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def __repr__(self) -> str:
        return f"<EventRecord {self.id} {self.kind} {self.enclosure_id or ''}>"


class EventTicket(Base):
    """Opens one event stream (`?ticket=`), once, within seconds; only its SHA-256 is stored."""

    __tablename__ = "event_tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
