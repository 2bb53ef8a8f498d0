"""Alembic, driven from the service settings (the only way tables are created)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from controlsvc.config.settings import Settings

MIGRATIONS_ENV_VAR = "JAXMBA_MIGRATIONS_DIR"


def migrations_dir() -> Path:
    override = os.environ.get(MIGRATIONS_ENV_VAR)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    directory = migrations_dir()
    # stdout is looked up now: Alembic's default is the sys.stdout of when it was imported.
    cfg = Config(str(directory / "alembic.ini"), stdout=sys.stdout)
    cfg.set_main_option("script_location", str(directory))
    # '%' must be doubled: the value goes through ConfigParser interpolation.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["skip_logging_config"] = True
    return cfg


def config_for(settings: Settings) -> Config:
    return alembic_config(settings.database.sqlalchemy_url().render_as_string(hide_password=False))


def upgrade(cfg: Config, revision: str = "head") -> None:
    command.upgrade(cfg, revision)


def downgrade(cfg: Config, revision: str) -> None:
    command.downgrade(cfg, revision)


def head_revision(cfg: Config) -> str | None:
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(cfg: Config, engine: Engine) -> bool:
    return current_revision(engine) == head_revision(cfg)
