"""Database plumbing: the declarative base, engines and sessions (no Flask here)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic_core import from_json, to_json
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so migrations can drop what they created on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
log = logging.getLogger(__name__)

# The SQLite file holds password hashes and the token denylist: its owner's only. SQLite gives
# the -wal and -shm files it creates the mode of the database file.
SQLITE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# SQLite writers wait this long for the lock instead of failing at once.
SQLITE_BUSY_TIMEOUT_MS = 15_000
# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
PING_IDLE_S = 1.0
_IDLE_SINCE = "jaxmba.idle_since"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC as a UTC column reads it back (a naive value is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_dumps(value: Any) -> str:
    """JSON columns' serializer: pydantic-core's encoder, ~6x faster than ``json.dumps`` (the
    bridge writes two status documents per message). Values are plain JSON data already."""
    return to_json(value).decode("utf-8")


def json_loads(text: str | bytes) -> Any:
    """JSON columns' deserializer: pydantic-core's parser, 3-4x faster than ``json.loads``
    (the sessions' timer reads two parts of a thousand statuses twice a second). A document
    it refuses that ``json.loads`` takes (a lone surrogate escape, which PostgreSQL's ``json``
    type stores) is read by ``json.loads``."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


def make_engine(url: URL | str, *, echo: bool = False) -> Engine:
    """An engine with the per-backend settings the service relies on."""
    url = URL.create("sqlite") if url == "" else url
    if isinstance(url, str):
        from sqlalchemy.engine import make_url

        url = make_url(url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            private_sqlite_file(Path(url.database))
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=json_dumps,
            json_deserializer=json_loads,
            connect_args={"check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if url.database and url.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        echo=echo,
        pool_size=10,
        max_overflow=20,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
        # INSERTs in multi-row VALUES pages and UPDATEs in execute_batch pages: one round trip
        # per 100 rows instead of one per row (the hottest UPDATEs of many rows, the bridge's,
        # are one statement each: ``controlsvc.store.bulk_rows``).
        executemany_mode="values_plus_batch",
    )
    _ping_idle_connections(engine)
    return engine


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file (and its directory) readable by its owner only, and take group
    and other access away from one made before (and from its -wal and -shm files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never open a file that exists: closing any descriptor of a file drops every POSIX lock
    # this process holds on it, SQLite's included. Its open connections would lose their locks
    # unknowingly, and another process could then checkpoint and reset the WAL under them
    # ("database disk image is malformed"). stat and chmod go by path and open nothing.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        try:
            mode = file.stat().st_mode & 0o7777
        except FileNotFoundError:
            continue
        if not mode & 0o077:
            continue
        try:
            file.chmod(mode & SQLITE_FILE_MODE)
        except PermissionError as exc:
            log.warning("%s is mode %o and cannot be made private: %s", file, mode, exc)
        else:
            log.info("%s was mode %o: made it %o", file, mode, mode & SQLITE_FILE_MODE)


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections idle longer than ``PING_IDLE_S``.

    ``pool_pre_ping`` pings on every check-out: a round trip on every request and every bridge
    batch, where a connection used a moment ago is as good as proven. A stale one (the server
    restarted) fails its ping, and the pool replaces it; one that goes stale within the second
    fails its statement instead, which the pool notices and replaces all connections made
    before it (a read request is then tried again once, anything else answers 503).
    """

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is not None and time.monotonic() - idle_since < PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(str(exc)) from exc  # the pool retries, afresh
            raise


def is_down(exc: BaseException) -> bool:
    """An error that says the database cannot be reached (not that this data is bad): a
    server restart or a terminated connection, which the pool recovers from by itself."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Database:
    """An engine plus a session factory; one per process."""

    def __init__(self, url: URL | str, *, echo: bool = False) -> None:
        self.engine = make_engine(url, echo=echo)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error."""
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
