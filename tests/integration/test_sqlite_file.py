"""The development profile's SQLite file: made private without breaking SQLite's locks.

Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
included. ``private_sqlite_file`` once opened and closed the database file while this process
had connections on it: their locks were gone, another process (a ``create_admin`` run, the
bridge) then checkpointed and reset the WAL under them, and the database read as "disk image is
malformed" (seen in the full test run). These tests prove the locks survive it.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from controlsvc.store.db import SQLITE_FILE_MODE, private_sqlite_file

# SQLite's SHARED lock range in the database file (os_unix.c: PENDING_BYTE + 2, 510 bytes).
SHARED_FIRST, SHARED_SIZE = 0x40000002, 510

_PROBE = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
ask = struct.pack("hhqqi", fcntl.F_WRLCK, 0, int(sys.argv[2]), int(sys.argv[3]), 0)
print("locked" if struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, ask))[0] != fcntl.F_UNLCK
      else "free")
"""


def _held_by_another_process(path: Path) -> bool:
    """Does some other process (this one, seen from a child) hold a lock on SQLite's range?"""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), str(SHARED_FIRST), str(SHARED_SIZE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return out == "locked"


def test_an_open_connection_keeps_its_locks(tmp_path):
    path = tmp_path / "jaxmba.sqlite"
    private_sqlite_file(path)  # new: created private
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        connection.commit()
        connection.execute("SELECT * FROM t").fetchall()
        assert _held_by_another_process(path)  # a WAL connection holds a SHARED lock
        private_sqlite_file(path)  # again, as a second Database on the same file does
        assert _held_by_another_process(path), "private_sqlite_file dropped SQLite's locks"
    finally:
        connection.close()


def test_new_file_is_private_and_an_old_one_is_made_private(tmp_path):
    new = tmp_path / "new" / "jaxmba.sqlite"
    private_sqlite_file(new)
    assert stat.S_IMODE(new.stat().st_mode) & 0o077 == 0
    old = tmp_path / "old.sqlite"
    sqlite3.connect(old).close()
    old.chmod(0o644)
    private_sqlite_file(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o644 & SQLITE_FILE_MODE
