"""Saved session templates: what a session records (enclosures and prefixes, duration,
settings), kept to start the same session again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base, utcnow
from controlsvc.store.models.enclosures import BigId


class SessionTemplate(Base):
    __tablename__ = "session_templates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # [{"id": enclosure id, "file_prefix": prefix}, ...] in the order given
    enclosures: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    duration_s: Mapped[int] = mapped_column(BigInteger)
    fragment_hourly: Mapped[bool] = mapped_column(default=False)
    segment_minutes: Mapped[int | None] = mapped_column(default=None)
    target_fps: Mapped[int | None] = mapped_column(default=None)
    apply_filter: Mapped[bool] = mapped_column(default=False)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    # kept as it was then, so the record outlives the account
    created_by: Mapped[str | None] = mapped_column(String(320), default=None)
