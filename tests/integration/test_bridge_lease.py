"""The timers' lease (``controlsvc.store.leases``, ``controlsvc.bridge.leadership``): one holder
at a time, renewed by it, taken over once it ran out or was given up, lapsing on its own when
the database cannot be reached."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from controlsvc.bridge.leadership import Leadership
from controlsvc.bridge.stats import BridgeStats
from controlsvc.store import leases
from controlsvc.store.db import Base, Database

NAME = leases.TIMERS


def _take(database: Database, holder: str, ttl_s: float = 30.0) -> int | None:
    with database.sessionmaker() as session:
        term = leases.take(session, NAME, holder, ttl_s)
        session.commit()
    return term


def _release(database: Database, holder: str) -> bool:
    with database.sessionmaker() as session:
        done = leases.release(session, NAME, holder)
        session.commit()
    return done


def test_one_holder_at_a_time_and_each_handover_starts_a_term(database):
    assert _take(database, "host-a/bridge-1") == 1
    assert _take(database, "host-b/bridge-2") is None  # held
    assert _take(database, "host-a/bridge-1") == 1  # renewed: the same term
    assert not _release(database, "host-b/bridge-2")  # not its lease to give
    assert _take(database, "host-b/bridge-2") is None
    assert _release(database, "host-a/bridge-1")
    assert _take(database, "host-b/bridge-2") == 2
    assert _take(database, "host-a/bridge-1") is None
    with database.sessionmaker() as session:
        lease = leases.view(session, NAME)
    assert lease is not None
    assert (lease.holder, lease.term) == ("host-b/bridge-2", 2)
    assert lease.expires_at > lease.acquired_at


def test_a_lease_that_ran_out_is_taken_over(database):
    assert _take(database, "a", ttl_s=-1) == 1  # renewed last a second before it ran out
    assert _take(database, "b") == 2
    assert _take(database, "a") is None


def test_of_bridges_racing_for_a_free_lease_exactly_one_gets_it(database):
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    holders = [f"bridge-{i}" for i in range(8)]
    start = threading.Barrier(len(holders))
    got: dict[str, int | None] = {}

    def race(holder: str) -> None:
        start.wait()
        got[holder] = _take(database, holder)

    threads = [threading.Thread(target=race, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [h for h, term in got.items() if term is not None]
    assert len(got) == len(holders)
    assert len(winners) == 1, got
    assert got[winners[0]] == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_leadership_renews_hands_over_on_release_and_reports_it(database):
    clock = _Clock()
    stats_a, stats_b = BridgeStats(), BridgeStats()
    a = Leadership(database, "a", ttl_s=9, stats=stats_a, clock=clock)
    b = Leadership(database, "b", ttl_s=9, stats=stats_b, clock=clock)
    assert a.refresh()
    assert a.term == 1
    assert not b.refresh()
    assert b.term is None
    assert (stats_a.snapshot()["leads"], stats_b.snapshot()["leads"]) == (True, False)
    clock.now = 2.0  # before a's next renewal is due: no statement, same answer
    assert a.refresh()
    assert not b.refresh()
    a.release()
    assert not a.leads
    assert not stats_a.snapshot()["leads"]
    clock.now = 3.5  # b's next try (every ttl / 3)
    assert b.refresh()
    assert b.term == 2
    assert stats_b.snapshot()["leads"]
    clock.now = 6.5
    assert not a.refresh()


def test_leadership_lapses_when_the_database_is_away_and_returns_with_it(tmp_path: Path):
    database = Database(f"sqlite+pysqlite:///{tmp_path / 'lease.sqlite'}")
    Base.metadata.create_all(database.engine)
    clock = _Clock()
    a = Leadership(database, "a", ttl_s=9, clock=clock)
    try:
        assert a.refresh()
        with database.engine.begin() as conn:  # every statement on the lease fails now
            conn.execute(text("ALTER TABLE bridge_leases RENAME TO away"))
        clock.now = 3.0
        assert a.refresh(), "still within the lease it renewed at 0"
        clock.now = 8.9
        assert a.leads
        clock.now = 9.0  # ttl after the last renewal was sent: it may have run out
        assert not a.refresh()
        assert a.term is None
        with database.engine.begin() as conn:
            conn.execute(text("ALTER TABLE away RENAME TO bridge_leases"))
        clock.now = 12.0
        assert a.refresh(), "its own lease, taken again"
    finally:
        database.dispose()
