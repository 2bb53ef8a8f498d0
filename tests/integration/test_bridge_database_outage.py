"""The bridge when its database connections die (a server restart, pg_terminate_backend): the
session driver logs the outage in one line and carries on; a traceback is for bugs only.
(The API's side: tests/integration/test_db_connections.py.)"""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from controlsvc.bridge import Bridge
from controlsvc.config.settings import Settings
from controlsvc.store import db as db_module
from controlsvc.store.db import Database
from tests.integration.bridge_fixtures import bridge_settings, broker  # noqa: F401 (fixture)
from tests.support.broker import mosquitto_factory  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.parametrize("db_url", ["postgres"], indirect=True),
]


def terminate_connections(url: URL) -> int:
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": url.database},
                ).scalar_one()
            )
    finally:
        server.dispose()


@pytest.fixture
def kill_connections(
    db_url: URL, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], None]]:
    """Terminate every connection to the test database; pooled ones are then handed out as they
    are (no ping), so the next statement meets a dead connection."""
    monkeypatch.setattr(db_module, "PING_IDLE_S", 3600.0)

    def kill() -> None:
        assert terminate_connections(db_url) > 0, "nothing to terminate: the test proves nothing"

    yield kill
    database.engine.dispose()  # what a test left dead does not reach the next one


def test_session_driver_logs_lost_database_connections_without_a_traceback(
    settings: Settings,
    broker,
    database: Database,
    kill_connections: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = Bridge(bridge_settings(settings, broker), database)  # not started: no threads
    bridge.sessions.run_once()  # leaves a connection in the pool
    kill_connections()
    logger = "controlsvc.bridge.ticker"  # the one timer logs what its tasks raise
    with caplog.at_level(logging.WARNING, logger=logger):
        bridge.sessions.run_once()
    warnings = [r for r in caplog.records if r.name == logger]
    assert warnings, "no statement failed: the test proves nothing"
    assert "OperationalError" in warnings[0].getMessage()
    assert [r.exc_info for r in warnings] == [None] * len(warnings)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=logger):
        bridge.sessions.run_once()  # the pool has replaced the connection
    assert [r for r in caplog.records if r.name == logger] == []
