"""Shared fixtures: clean environment, fresh databases on SQLite and PostgreSQL, app, client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from controlsvc.config.settings import Settings
from controlsvc.store import migrate
from controlsvc.store.db import Database
from controlsvc.store.models import Base
from tests.support.auth import Auth
from tests.support.postgres import (
    TEST_URL_ENV,
    NoPostgres,
    create_database,
    drop_database,
    postgres_server,
)

BACKENDS = ["sqlite", "postgres"]
TEST_SECRET = "0" * 64


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No JAXMBA_* or FLASK_CONFIG from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if (key.startswith("JAXMBA_") and key != TEST_URL_ENV) or key == "FLASK_CONFIG":
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters (the real ones take ~0.5 s per hash on a small CI machine)."""
    from argon2 import PasswordHasher

    from controlsvc.domain import passwords

    monkeypatch.setattr(
        passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[URL]:
    try:
        with postgres_server() as url:
            yield url
    except NoPostgres as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")


def _migrated(url: URL) -> URL:
    migrate.upgrade(migrate.alembic_config(url.render_as_string(hide_password=False)))
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[URL]:
    """A migrated database, fresh for this test run, on each backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "jaxmba.sqlite"
        yield _migrated(make_url(f"sqlite+pysqlite:///{path}"))
        return
    server: URL = request.getfixturevalue("pg_server")
    url = create_database(server)
    try:
        yield _migrated(url)
    finally:
        drop_database(url)


def _empty_tables(db: Database) -> None:
    """Every row gone and the ids counting from 1 again, for the next test. DELETE (children
    first), not TRUNCATE: a TRUNCATE of the 22 tables takes ~50 ms on PostgreSQL (new files for
    each), DELETE of a test's few rows ~4 ms, a minute over the suite."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        for name in tables:
            conn.execute(text(f"DELETE FROM {name}"))
        if db.engine.dialect.name == "postgresql":
            sequences = conn.scalars(
                text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
            ).all()
            for sequence in sequences:
                conn.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})


@pytest.fixture
def database(db_url: URL) -> Iterator[Database]:
    db = Database(db_url)
    try:
        yield db
    finally:
        _empty_tables(db)
        db.dispose()


@pytest.fixture
def settings(db_url: URL, tmp_path: Path) -> Settings:
    return Settings(
        profile="test",  # type: ignore[arg-type]
        database={"url": db_url.render_as_string(hide_password=False)},  # type: ignore[arg-type]
        secrets={"secret_key": TEST_SECRET, "jwt_secret_key": TEST_SECRET},  # type: ignore[arg-type]
        mail={"backend": "console"},  # type: ignore[arg-type]
        # No token cache: it needs a broker (tests/integration/test_token_cache.py has one).
        # No summary cache: tests read what they just wrote (test_summary_cache.py has it).
        service={  # type: ignore[arg-type]
            "public_url": "http://testserver",
            "token_check_cache_s": 0,
            "summary_cache_s": 0,
        },
    )


@pytest.fixture
def app(settings: Settings, database: Database) -> Flask:
    from controlsvc.ops.app import create_app

    return create_app(settings, database=database)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def auth(app: Flask, client: FlaskClient) -> Auth:
    """Create users, log in, get tokens and the mails sent (tests/support/auth.py)."""
    return Auth(app, client)
