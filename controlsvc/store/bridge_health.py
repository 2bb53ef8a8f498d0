"""Whether a bridge is alive, judged from the heartbeat rows the bridges write.

Every running bridge refreshes its ``bridge_heartbeats`` row every ``BEAT_S`` and marks it
stopped when it stops cleanly. The API reads the rows (``bridge_view``): a bridge whose last beat
is older than ``DOWN_AFTER_S`` is dead (kill -9, a hung process, a host that went away). The
retained ``service/state`` and its Will say the same to MQTT clients; the database is what
every API worker can read without a subscription of its own. Plain functions on a ``Session``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controlsvc.store.models.bridges import BridgeHeartbeat

__all__ = ["BEAT_S", "DOWN_AFTER_S", "BridgeView", "beat", "bridge_view", "purge", "stopped"]

BEAT_S = 5.0  # a bridge refreshes its row this often
DOWN_AFTER_S = 3 * BEAT_S  # one or two late beats (a busy database) are not yet an outage
RETENTION = timedelta(days=7)  # rows of bridges gone this long are deleted


@dataclass(frozen=True, slots=True)
class BridgeView:
    """What ``/api/health`` says about the bridges."""

    ok: bool  # at least one bridge is alive
    since: datetime | None  # up: start of the oldest live bridge; down: when the last one went
    running: int  # live bridges
    detail: str | None  # why it is not ok


def beat(
    session: Session, bridge_id: str, *, version: str, started_at: datetime, now: datetime
) -> None:
    """Record that ``bridge_id`` is alive at ``now`` (flush only)."""
    row = session.get(BridgeHeartbeat, bridge_id)
    if row is None:
        session.add(
            BridgeHeartbeat(
                bridge_id=bridge_id, version=version, started_at=started_at, beat_at=now
            )
        )
    else:
        row.version = version
        row.started_at = started_at
        row.beat_at = now
        row.stopped_at = None
    session.flush()


def stopped(session: Session, bridge_id: str, now: datetime) -> None:
    """Record a clean stop of ``bridge_id`` (flush only)."""
    row = session.get(BridgeHeartbeat, bridge_id)
    if row is not None:
        row.stopped_at = now
        session.flush()


def bridge_view(session: Session, now: datetime, down_after_s: float = DOWN_AFTER_S) -> BridgeView:
    """Is any bridge alive at ``now``, and since when is it up or down?"""
    rows = session.scalars(select(BridgeHeartbeat)).all()
    if not rows:
        return BridgeView(False, None, 0, "no bridge has run yet")
    deadline = now - timedelta(seconds=down_after_s)
    live = [r for r in rows if r.stopped_at is None and r.beat_at >= deadline]
    if live:
        return BridgeView(True, min(r.started_at for r in live), len(live), None)
    gone = max((r.stopped_at or r.beat_at) for r in rows)
    silent = [r for r in rows if r.stopped_at is None]
    if silent and max(r.beat_at for r in silent) >= gone:
        detail = f"no bridge heartbeat for more than {down_after_s:g} s"
    else:
        detail = "the bridge was stopped"
    return BridgeView(False, gone, 0, detail)


def purge(session: Session, before: datetime) -> int:
    """Delete the rows of bridges not heard of since ``before``; how many."""
    result = session.execute(delete(BridgeHeartbeat).where(BridgeHeartbeat.beat_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
