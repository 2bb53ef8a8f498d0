"""Recording sessions: the session, each enclosure's part in it, the segments that prove it, the
gaps in it, the alerts raised while it ran, and the ``desired`` version of every enclosure.

All session state is here (nothing in a bridge's memory), so a restarted bridge takes the
decisions up where the previous one left them.
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
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base, utcnow
from controlsvc.store.models.enclosures import ID_LENGTH, BigId

SESSION_ID_LENGTH = 64
STATUS_LENGTH = 32  # completed_with_failures
MESSAGE_LENGTH = 500


class RecordingSession(Base):
    """One session on many enclosures (``SessionStatus`` in ``status``)."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_status", "status"),
        Index("ix_sessions_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(SESSION_ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH), default="scheduled")
    duration_s: Mapped[int] = mapped_column(BigInteger)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    target_fps: Mapped[int | None] = mapped_column(default=None)
    fragment_hourly: Mapped[bool] = mapped_column(default=False)
    segment_minutes: Mapped[int | None] = mapped_column(default=None)
    apply_filter: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    # The last session.progress event (the timer sends one every few seconds while it runs).
    progress_at: Mapped[datetime | None] = mapped_column(default=None)


class SessionEnclosure(Base):
    """One enclosure's part in a session (``SessionEnclosureStatus`` in ``state``)."""

    __tablename__ = "session_enclosures"
    __table_args__ = (
        UniqueConstraint(
            "session_id", "enclosure_id", name="uq_session_enclosures_session_id_enclosure_id"
        ),
        Index("ix_session_enclosures_enclosure_id_state", "enclosure_id", "state"),
        Index("ix_session_enclosures_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_LENGTH), ForeignKey("sessions.id", ondelete="CASCADE")
    )
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE")
    )
    file_prefix: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(STATUS_LENGTH), default="pending")
    message: Mapped[str | None] = mapped_column(String(MESSAGE_LENGTH), default=None)
    state_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    starting_at: Mapped[datetime | None] = mapped_column(default=None)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    # Since when the enclosure has been lost or offline while active (None: reachable).
    lost_since: Mapped[datetime | None] = mapped_column(default=None)
    # Progress: closed segments (the proof) plus the open one as the status reports it.
    segments: Mapped[int] = mapped_column(default=0)
    frames: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    segments_s: Mapped[float] = mapped_column(default=0.0)
    live_s: Mapped[float] = mapped_column(default=0.0)
    live_frames: Mapped[int] = mapped_column(BigInteger, default=0)
    last_frame_at: Mapped[datetime | None] = mapped_column(default=None)
    gap_s: Mapped[float] = mapped_column(default=0.0)
    gaps: Mapped[int] = mapped_column(default=0)

    @property
    def recorded_s(self) -> float:
        return self.segments_s + self.live_s


@dataclass(slots=True, eq=False)
class SessionEnclosureRow:
    """The columns of a ``SessionEnclosure``, same names and types, as a plain object: what the
    bridge's writer changes when agents' events arrive (``store.session_enclosure_rows``)."""

    id: int
    session_id: str
    enclosure_id: str
    file_prefix: str
    state: str
    message: str | None
    state_changed_at: datetime | None
    starting_at: datetime | None
    confirmed_at: datetime | None
    stopped_at: datetime | None
    lost_since: datetime | None
    segments: int
    frames: int
    bytes: int
    segments_s: float
    live_s: float
    live_frames: int
    last_frame_at: datetime | None
    gap_s: float
    gaps: int
    # The values as read, in the order of ``session_enclosure_rows.WRITTEN``.
    loaded: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def recorded_s(self) -> float:
        return self.segments_s + self.live_s


class SessionSegment(Base):
    """One finished segment file: the evidence from ``segment_closed``, stored once per path."""

    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint(
            "session_id", "enclosure_id", "path", name="uq_segments_session_id_enclosure_id_path"
        ),
        Index("ix_segments_session_id_started_at", "session_id", "started_at"),
        Index("ix_segments_enclosure_id_started_at", "enclosure_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_LENGTH), ForeignKey("sessions.id", ondelete="CASCADE")
    )
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1024))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    frames: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    sidecar_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionGap(Base):
    """Time an enclosure did not record within its session (crash, outage, stalled camera)."""

    __tablename__ = "gaps"
    __table_args__ = (
        UniqueConstraint("enclosure_id", "event_id", name="uq_gaps_enclosure_id_event_id"),
        Index("ix_gaps_session_id_enclosure_id", "session_id", "enclosure_id"),
        Index("ix_gaps_enclosure_id_started_at", "enclosure_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_LENGTH), ForeignKey("sessions.id", ondelete="CASCADE")
    )
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE")
    )
    # The agent event that reported it, or a key of the service's own ("final:<session>").
    event_id: Mapped[str] = mapped_column(String(128))
    cause: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    gap_s: Mapped[float]


class Alert(Base):
    """An alert condition on an enclosure (one open per enclosure and kind at a time)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_enclosure_id_kind_recovered_at", "enclosure_id", "kind", "recovered_at"),
        Index("ix_alerts_pending", "notify_pending"),
        Index("ix_alerts_raised_at_id", "raised_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    enclosure_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), default=None)
    session_id: Mapped[str | None] = mapped_column(String(SESSION_ID_LENGTH), default=None)
    message: Mapped[str] = mapped_column(String(MESSAGE_LENGTH))
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)
    recovered_at: Mapped[datetime | None] = mapped_column(default=None)
    # Repeats of the condition while open (counted, not mailed again: rate limit).
    occurrences: Mapped[int] = mapped_column(default=1)
    # Notifications (mail, MQTT) still to send: "raised", "recovered" or None.
    notify_pending: Mapped[str | None] = mapped_column(String(16), default="raised")
    notified_at: Mapped[datetime | None] = mapped_column(default=None)
    mailed: Mapped[bool] = mapped_column(default=False)
    # Acknowledged: someone has seen it (shared by every user and browser tab). The email is
    # kept as it was then, so the record outlives the account.
    acked_at: Mapped[datetime | None] = mapped_column(default=None)
    acked_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    acked_by: Mapped[str | None] = mapped_column(String(320), default=None)

    @property
    def recovered(self) -> bool:
        return self.recovered_at is not None

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None


class DesiredVersion(Base):
    """The latest ``desired`` document of an enclosure; ``version`` only grows."""

    __tablename__ = "desired_versions"

    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    session_id: Mapped[str | None] = mapped_column(String(SESSION_ID_LENGTH), default=None)
    document: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The version the broker acknowledged last (below ``version``: the bridge publishes it).
    published_version: Mapped[int] = mapped_column(BigInteger, default=0)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
