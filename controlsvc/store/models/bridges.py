"""Each bridge's heartbeat, so the API (which has no MQTT subscription of its own for this) can
tell whether any bridge is alive: ``/api/health`` and the UI's banner."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
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
