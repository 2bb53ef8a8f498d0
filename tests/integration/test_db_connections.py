"""Pooled PostgreSQL connections that die: replaced before use when idle; when not, a read is
retried once on a fresh connection and a write answers 503."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from controlsvc.store import db as db_module
from controlsvc.store.db import Database


@pytest.fixture
def pg(database: Database) -> Database:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("connection pinging is PostgreSQL's")
    return database


def _backend_pid(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate_others(database: Database) -> None:
    """End every other session on the database: all the pool holds is dead."""
    # A connection of its own (not from the pool): the pooled ones are what gets killed.
    engine = db_module.make_engine(database.engine.url)
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        engine.dispose()


def test_an_idle_connection_that_died_is_replaced_before_use(pg, monkeypatch):
    pid = _backend_pid(pg)
    _terminate_others(pg)
    monkeypatch.setattr(db_module, "PING_IDLE_S", 0.0)  # every connection counts as idle
    assert _backend_pid(pg) != pid  # the ping failed, the pool connected afresh


def test_a_connection_used_a_moment_ago_is_not_pinged(pg):
    _backend_pid(pg)
    pings: list[object] = []
    dialect = pg.engine.dialect
    original = dialect.do_ping
    dialect.do_ping = lambda conn: pings.append(conn) or original(conn)  # type: ignore[method-assign]
    try:
        _backend_pid(pg)
    finally:
        dialect.do_ping = original  # type: ignore[method-assign]
    assert pings == []


def test_a_read_on_a_connection_that_just_died_is_retried_on_a_fresh_one(pg, app, client, auth):
    headers = auth.headers(auth.create("viewer@example.com", role="viewer"))
    assert client.get("/api/enclosures", headers=headers).status_code == 200
    _terminate_others(pg)  # within PING_IDLE_S: not pinged, the statement fails
    response = client.get("/api/enclosures", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["items"] == []
    _terminate_others(pg)
    assert client.head("/api/enclosures", headers=headers).status_code == 200


def test_a_write_on_a_connection_that_just_died_is_a_503_then_recovers(pg, app, client, auth):
    headers = auth.headers(auth.create("leaving@example.com", role="viewer"))
    assert client.get("/api/users/me", headers=headers).status_code == 200
    _terminate_others(pg)
    response = client.post("/api/auth/logout", headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "try again" in response.get_json()["detail"]
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
