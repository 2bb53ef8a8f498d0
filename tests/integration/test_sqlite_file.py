"""The SQLite database file and its -wal/-shm files are readable by their owner only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from controlsvc.store.db import make_engine


@pytest.fixture(autouse=True)
def _permissive_umask() -> Iterator[None]:
    """The usual umask 022, which leaves new files world-readable (0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_through(path: Path) -> None:
    engine = make_engine(f"sqlite+pysqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:  # a connection open: -wal and -shm exist
            conn.execute(text("SELECT x FROM t")).all()
            side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
            assert all(p.exists() for p in side)
            assert {str(p): _mode(p) for p in side} == {str(p): 0o600 for p in side}
    finally:
        engine.dispose()


def test_a_new_database_file_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "jaxmba.sqlite"
    _write_through(path)
    assert _mode(path) == 0o600


def test_a_database_file_made_readable_before_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "jaxmba.sqlite"
    path.touch(mode=0o644)
    path.chmod(0o644)
    _write_through(path)
    assert _mode(path) == 0o600
