"""Leases: which one of several bridges runs a job that must run in one place (the timers).

A lease is a row (``bridge_leases``) naming its holder until ``expires_at``. Taking and renewing
are one statement, an upsert whose condition (the holder is us, or the lease has run out) the
database checks under the row's lock, so of two bridges racing for it exactly one gets it.
Times are the database's own (``now()`` on PostgreSQL): bridges on hosts whose clocks disagree
still agree on when a lease ran out. SQLite runs on one host, so its times come from Python.

Plain row, not ``pg_advisory_lock``: a session-level lock would not survive PgBouncer's
transaction pooling (docs/scale.md), would be lost silently with its connection, and says
nothing to an operator reading the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, func

from controlsvc.store.db import UTCDateTime, utcnow
from controlsvc.store.models.bridges import BridgeLease

__all__ = ["TIMERS", "LeaseView", "release", "take", "view"]

TIMERS = "timers"  # the session driver and housekeeping
# A released lease expires at this moment: long past in any clock.
_RELEASED = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LeaseView:
    """A lease as stored: who holds it, since when, until when (database clock)."""

    name: str
    holder: str
    term: int
    acquired_at: datetime
    expires_at: datetime


def _now(session: Session) -> ColumnElement[Any] | datetime:
    """The database's clock where it has one all bridges share."""
    if session.get_bind().dialect.name == "postgresql":
        return func.now()
    return utcnow()


def take(session: Session, name: str, holder: str, ttl_s: float) -> int | None:
    """Take or renew lease ``name`` for ``holder`` until ``ttl_s`` from now (committed by the
    caller). Returns the lease's term when ``holder`` has it, None while another holds it."""
    now = _now(session)
    expires = now + timedelta(seconds=ttl_s)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, BridgeLease.__table__)
    upsert = insert(table).values(
        name=name,
        holder=holder,
        term=1,
        acquired_at=now,
        renewed_at=now,
        expires_at=expires,
    )
    new = upsert.excluded
    ours = table.c.holder == new.holder
    stmt = upsert.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={
            "holder": new.holder,
            "term": case((ours, table.c.term), else_=table.c.term + 1),
            "acquired_at": case((ours, table.c.acquired_at), else_=new.acquired_at),
            "renewed_at": new.renewed_at,
            "expires_at": new.expires_at,
        },
        where=ours | (table.c.expires_at < new.renewed_at),
    ).returning(table.c.term)
    term = session.execute(stmt).scalar_one_or_none()
    return None if term is None else int(term)


def release(session: Session, name: str, holder: str) -> bool:
    """Give lease ``name`` up if ``holder`` has it, so another bridge takes it at its next try
    instead of after the lease runs out (committed by the caller)."""
    result = session.execute(
        update(BridgeLease)
        .where(BridgeLease.name == name, BridgeLease.holder == holder)
        .values(expires_at=literal(_RELEASED, UTCDateTime()))
    )
    return bool(getattr(result, "rowcount", 0))


def view(session: Session, name: str) -> LeaseView | None:
    """Lease ``name`` as stored (None: never taken)."""
    row = session.scalars(select(BridgeLease).where(BridgeLease.name == name)).one_or_none()
    if row is None:
        return None
    return LeaseView(row.name, row.holder, row.term, row.acquired_at, row.expires_at)
