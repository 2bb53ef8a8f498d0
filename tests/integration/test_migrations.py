"""Alembic is the only way tables are made: the models and the migrations must agree, and every
revision must go down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url

from controlsvc.store import migrate
from controlsvc.store.db import make_engine
from controlsvc.store.models import Base
from tests.support.postgres import create_database, drop_database


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request, tmp_path) -> Iterator[URL]:
    """An empty database of its own (the shared test databases stay at head)."""
    if request.param == "sqlite":
        yield make_url(f"sqlite+pysqlite:///{tmp_path / 'migrations.sqlite'}")
        return
    url = create_database(request.getfixturevalue("pg_server"), prefix="jaxmba_migrations")
    try:
        yield url
    finally:
        drop_database(url)


def _config(url: URL):
    return migrate.alembic_config(url.render_as_string(hide_password=False))


def _differences(url: URL) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "render_as_batch": True}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _tables(url: URL) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_models_and_migrations_agree(fresh_url):
    migrate.upgrade(_config(fresh_url))
    assert _differences(fresh_url) == []
    assert _tables(fresh_url) >= {t.name for t in Base.metadata.sorted_tables}


def test_upgrade_downgrade_upgrade(fresh_url):
    cfg = _config(fresh_url)
    engine = make_engine(fresh_url)
    try:
        migrate.upgrade(cfg)
        assert migrate.is_up_to_date(cfg, engine)
        migrate.downgrade(cfg, "base")
        assert migrate.current_revision(engine) is None
        assert _tables(fresh_url) <= {"alembic_version"}
        migrate.upgrade(cfg)
        assert migrate.current_revision(engine) == migrate.head_revision(cfg)
    finally:
        engine.dispose()
    assert _differences(fresh_url) == []


def test_each_revision_steps_down_and_up(fresh_url):
    cfg = _config(fresh_url)
    revisions = list(ScriptDirectory.from_config(cfg).walk_revisions("base", "heads"))
    assert revisions, "no migrations found"
    assert len(ScriptDirectory.from_config(cfg).get_heads()) == 1, "migrations must not branch"
    migrate.upgrade(cfg)
    for _ in revisions:
        migrate.downgrade(cfg, "-1")
    migrate.upgrade(cfg)
    assert _differences(fresh_url) == []
