"""Recording sessions written straight into the database, for tests that need one to exist."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure


def add_session(
    s: Session,
    sid: str,
    parts: Mapping[str, str | None],
    *,
    start: datetime,
    name: str | None = None,
    status: str = "running",
    duration_s: int = 3600,
) -> None:
    """Session ``sid`` from ``start`` for ``duration_s``, and its enclosures' rows (enclosure
    id -> state; None: the model's default), file prefix ``m-{id}``; flushed, not committed."""
    s.add(
        RecordingSession(
            id=sid,
            name=name or sid,
            status=status,
            duration_s=duration_s,
            start_at=start,
            end_at=start + timedelta(seconds=duration_s),
            created_at=start,
        )
    )
    s.flush()
    for eid, state in parts.items():
        part = SessionEnclosure(session_id=sid, enclosure_id=eid, file_prefix=f"m-{eid}")
        if state is not None:
            part.state = state
        s.add(part)
    s.flush()
