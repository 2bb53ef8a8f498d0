"""A PostgreSQL server for tests: the one in $JAXMBA_TEST_DATABASE_URL, else the local server on
127.0.0.1:5432, else a throwaway cluster made with `initdb`. Each test run gets fresh databases."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

TEST_URL_ENV = "JAXMBA_TEST_DATABASE_URL"
DEFAULT_SERVER_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# A throwaway cluster gets this long to accept connections.
INITDB_START_TIMEOUT_S = 30


class NoPostgres(RuntimeError):
    """No server answered and none could be started; the message says why."""


def _answers(url: URL) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        return False
    return True


def pg_bin(name: str) -> str | None:
    """The path of a PostgreSQL program (Debian keeps the server's off PATH), or None."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def as_postgres_user(workdir: Path) -> list[str]:
    """The command prefix that runs a server program on ``workdir`` (initdb, postgres and
    pgbouncer refuse to run as root: as root, use the postgres user and give it ``workdir``)."""
    if os.geteuid() != 0:
        return []
    shutil.chown(workdir, "postgres")
    return ["runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[URL]:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise NoPostgres("no PostgreSQL server answered and initdb/pg_ctl are not installed")
    workdir = Path(tempfile.mkdtemp(prefix="jaxmba-pg-"))
    datadir, port = workdir / "data", _free_port()
    run_as = as_postgres_user(workdir)
    subprocess.run(
        [*run_as, initdb, "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            str(datadir),
            "-l",
            str(workdir / "log"),
            "-w",
            "-o",
            f"-p {port} -c listen_addresses=127.0.0.1 -k {workdir} -F",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=INITDB_START_TIMEOUT_S,
    )
    try:
        yield make_url(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(datadir), "-m", "fast", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[URL]:
    """The URL of a server database (usually `postgres`) that fresh databases are created from."""
    configured = os.environ.get(TEST_URL_ENV)
    if configured:
        url = make_url(configured)
        if not _answers(url):
            raise NoPostgres(f"${TEST_URL_ENV} ({url.render_as_string()}) does not answer")
        yield url
        return
    url = make_url(DEFAULT_SERVER_URL)
    if _answers(url):
        yield url
        return
    with _throwaway_cluster() as url:
        yield url


def create_database(server: URL, prefix: str = "jaxmba_test") -> URL:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.set(database=name)


def drop_database(url: URL) -> None:
    server = url.set(database="postgres")
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while True:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": url.database},
            )
            try:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}"'))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    engine.dispose()
