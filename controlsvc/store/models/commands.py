"""Commands sent to enclosures and what became of them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from controlsvc.store.db import Base, utcnow
from controlsvc.store.models.enclosures import ENUM_LENGTH, ID_LENGTH


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_enclosure_id_created_at", "enclosure_id", "created_at"),
        # The bridge's timers: unsettled commands by deadline (time-outs, re-publishing).
        Index("ix_commands_state_deadline_at", "state", "deadline_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    enclosure_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("enclosures.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(ENUM_LENGTH), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    deadline_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The enclosure's derived state when the command was accepted by the API.
    enclosure_state: Mapped[str | None] = mapped_column(String(ENUM_LENGTH), default=None)
    # How many times it was handed to the broker (the bridge re-publishes lost ones).
    publish_count: Mapped[int] = mapped_column(default=0)
