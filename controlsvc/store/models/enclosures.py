"""Enclosures: the registry row with its live state and latest status, state transitions,
status history, and the durable events the agents report.

The latest status lives on the enclosure row (one row lock covers the stale-message check and
the derived state); every status also goes to ``status_history`` (purged after
``[SERVICE] status_history_days``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key for the big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Room for every enclosure id (63) plus slack; enum values are short words.
ID_LENGTH = 64
ENUM_LENGTH = 16
SUMMARY_ERROR_LENGTH = 80  # the fleet summary's error text is cut to this


class Enclosure(Base):
    __tablename__ = "enclosures"
    # Every status moves ``last_seen_at``/``silent_after`` and rewrites ``status``. With no index
    # on those and free room in each page (fillfactor), PostgreSQL updates the row in place
    # (a HOT update: no index entries written): the bridge's ingest is twice as fast. The
    # liveness timer scans the live enclosures through ``ix_enclosures_state`` instead.
    __table_args__ = (
        Index("ix_enclosures_state", "state"),
        {"postgresql_with": {"fillfactor": 40}},
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(200), default=None)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    # True when an administrator registered it (POST /api/enclosures), False when it appeared
    # by connecting with an account made outside the service.
    registered: Mapped[bool] = mapped_column(default=False)
    # The service created its broker account in [MQTT] password_file (and removes it on retire).
    broker_account_managed: Mapped[bool] = mapped_column(default=False)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
    # Expected online: losing it raises an ``enclosure_lost`` alert even outside sessions.
    expected_online: Mapped[bool] = mapped_column(default=False, server_default=false())

    # Derived state (EnclosureState) and what the agent said (Lifecycle).
    state: Mapped[str] = mapped_column(String(ENUM_LENGTH), default="offline")
    state_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    state_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    lifecycle: Mapped[str | None] = mapped_column(String(ENUM_LENGTH), default=None)
    lifecycle_at: Mapped[datetime | None] = mapped_column(default=None)
    # The agent's connection number (within its boot) of that lifecycle message, if it said.
    lifecycle_connection: Mapped[int | None] = mapped_column(default=None)
    boot_id: Mapped[str | None] = mapped_column(String(64), default=None)
    agent_version: Mapped[str | None] = mapped_column(String(64), default=None)
    status_interval_s: Mapped[float | None] = mapped_column(default=None)
    # When the last live (not retained) message from it arrived, and when its silence means lost.
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    silent_after: Mapped[datetime | None] = mapped_column(default=None)

    # The latest status heartbeat (the newest by boot_id/seq) and its identity.
    status: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    status_boot_id: Mapped[str | None] = mapped_column(String(64), default=None)
    status_seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    status_at: Mapped[datetime | None] = mapped_column(default=None)
    status_received_at: Mapped[datetime | None] = mapped_column(default=None)
    # What the fleet summary shows of that status (``store.fleet_summary.status_values``),
    # kept beside it as plain columns: 2,000 rows read without parsing 2,000 documents.
    summary_disk_free_pct: Mapped[float | None] = mapped_column(default=None)
    summary_clock_offset_s: Mapped[float | None] = mapped_column(default=None)
    summary_fps: Mapped[float | None] = mapped_column(default=None)
    summary_error: Mapped[str | None] = mapped_column(String(SUMMARY_ERROR_LENGTH), default=None)
    # The session that status says is being recorded ('' recording without one, None not
    # recording): the bridge's fleet topic reads it every tick for the whole fleet.
    summary_recording: Mapped[str | None] = mapped_column(String(64), default=None)
    # When name, location, notes or expected_online last changed through the API: part of the
    # fleet summary's validator (its ETag).
    edited_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def retired(self) -> bool:
        return self.retired_at is not None


@dataclass(slots=True, eq=False)
class EnclosureRow:
    """The columns of an ``Enclosure`` that the bridge's ingest reads or writes, same names and
    types, as a plain object (``controlsvc.store.enclosure_rows`` reads and writes them)."""

    id: str
    retired_at: datetime | None
    state: str
    state_reason: str | None
    state_changed_at: datetime | None
    lifecycle: str | None
    lifecycle_at: datetime | None
    lifecycle_connection: int | None
    boot_id: str | None
    agent_version: str | None
    status_interval_s: float | None
    last_seen_at: datetime | None
    silent_after: datetime | None
    status: dict[str, Any] | None
    status_boot_id: str | None
    status_seq: int | None
    status_at: datetime | None
    status_received_at: datetime | None
    summary_disk_free_pct: float | None
    summary_clock_offset_s: float | None
    summary_fps: float | None
    summary_error: str | None
    summary_recording: str | None
    # The values as read, in the order of INGEST_COLUMNS: what ``write_back`` compares with.
    loaded: tuple[Any, ...] = field(default=(), repr=False)
    # Changes of the derived state made on this copy (``enclosure_transitions`` rows), stored
    # by ``write_back`` with the columns: a fan-out changes a thousand at once.
    transitions: list[dict[str, Any]] = field(default_factory=list, repr=False)


class EnclosureTransition(Base):
    """One change of an enclosure's derived state: when, from what, to what, and why."""

    __tablename__ = "enclosure_transitions"
    __table_args__ = (Index("ix_enclosure_transitions_enclosure_id_at", "enclosure_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE")
    )
    at: Mapped[datetime]
    from_state: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    to_state: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    reason: Mapped[str] = mapped_column(String(200))


class StatusRecord(Base):
    """A status heartbeat kept for history; (enclosure, boot_id, seq) is stored once."""

    __tablename__ = "status_history"
    __table_args__ = (
        UniqueConstraint(
            "enclosure_id", "boot_id", "seq", name="uq_status_history_enclosure_id_boot_id_seq"
        ),
        Index("ix_status_history_enclosure_id_at", "enclosure_id", "at"),
        Index("ix_status_history_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE")
    )
    boot_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]
    received_at: Mapped[datetime]
    status: Mapped[dict[str, Any]] = mapped_column(JSON)


class AgentEvent(Base):
    """A durable fact from an agent's outbox (``enc/{eid}/events``), stored once per event id.

    Keyed by (enclosure, event_id) rather than event_id alone, so a misbehaving enclosure
    cannot shadow another's events by reusing their ids.
    """

    __tablename__ = "agent_events"
    __table_args__ = (
        UniqueConstraint("enclosure_id", "event_id", name="uq_agent_events_enclosure_id_event_id"),
        Index("ix_agent_events_session_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    session_id: Mapped[str | None] = mapped_column(String(64), default=None)
    at: Mapped[datetime]
    received_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
