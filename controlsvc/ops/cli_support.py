"""What the `jaxmba-service` commands share: exit codes, the aliased click group, the state
of one invocation (`state()`: the config path and the settings it loads), `fail`, logging setup."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click

from controlsvc.config.settings import (
    Settings,
    load_settings,
)

log = logging.getLogger(__name__)


EXIT_CONFIG = 2
EXIT_FAILURE = 1


# The original's names for our commands (its Celery workers did what the bridge does).
ALIASES = {"start_workers": "bridge"}


class AliasedGroup(click.Group):
    """Accepts `create-admin` for `create_admin` (and the reverse), and the original's names
    (`ALIASES`); help lists one name."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd_name = ALIASES.get(cmd_name.replace("-", "_"), cmd_name)
        return (
            super().get_command(ctx, cmd_name)
            or super().get_command(ctx, cmd_name.replace("-", "_"))
            or super().get_command(ctx, cmd_name.replace("_", "-"))
        )

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else name), cmd, rest


@dataclass
class CliState:
    config_path: Path | None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


TEXT_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", log_format: str = "text", process: str = "") -> None:
    """Root logging to stderr, as text or JSON lines ([SERVICE] log_format)."""
    from schemas.logs import configure_logging as configure

    configure(
        getattr(logging, level, logging.INFO),
        "json" if log_format == "json" else "text",
        text_format=TEXT_LOG_FORMAT,
        process=process,
    )


def state() -> CliState:
    obj = click.get_current_context().obj
    assert isinstance(obj, CliState)
    return obj


def require_schema(settings: Settings, db: Any) -> None:
    from controlsvc.store import migrate

    cfg = migrate.config_for(settings)
    if not migrate.is_up_to_date(cfg, db.engine):
        fail(
            "the database schema is not up to date: run `jaxmba-service db upgrade`",
            EXIT_FAILURE,
        )
