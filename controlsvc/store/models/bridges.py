"""Each bridge's heartbeat, so the API (which has no MQTT subscription of its own for this) can
tell whether any bridge is alive: ``/api/health`` and the UI's banner; and the lease that lets
one bridge of several run the timers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base


class BridgeHeartbeat(Base):
    """One row per bridge (host and client id), refreshed every few seconds while it runs."""

    __tablename__ = "bridge_heartbeats"

    bridge_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)

    def __repr__(self) -> str:
        return f"<BridgeHeartbeat {self.bridge_id} {self.beat_at.isoformat()}>"


class BridgeLease(Base):
    """A named lease one bridge holds at a time (``timers``: the session driver and housekeeping).

    ``expires_at`` is in the database's clock, never a bridge's, so a bridge host whose clock
    runs ahead cannot think another's lease has run out. ``term`` grows by one each time the
    lease changes hands."""

    __tablename__ = "bridge_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    term: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<BridgeLease {self.name} {self.holder} term {self.term}>"
