"""`jaxmba-service`: the operator's entry point (the original's commands, plus `bridge`).

Commands keep the original's underscore names (`create_admin`); hyphenated aliases
(`create-admin`) work too. Errors are one clear line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.exc import OperationalError

from controlsvc import __version__
from controlsvc.config.settings import (
    CONFIG_ENV_VAR,
    PROFILE_ENV_VAR,
    Profile,
    Settings,
    default_config_path,
    load_settings,
)
from controlsvc.domain.errors import ConfigError, JaxmbaError
from controlsvc.ops.cli_support import (
    EXIT_CONFIG,
    AliasedGroup,
    CliState,
    configure_logging,
    fail,
    require_schema,
    state,
)
from controlsvc.ops.jabs_commands import JABS_COMMANDS

log = logging.getLogger(__name__)


@click.group(cls=AliasedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jaxmba-service")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config file (default: ${CONFIG_ENV_VAR} or ./jax-mba-service.config).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """JAX Mouse Behavior Analysis control service."""
    ctx.obj = CliState(config_path)


def _target_path() -> Path:
    return state().config_path or default_config_path()


# --- config and secrets ---------------------------------------------------------------------


@cli.command("init_config")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option(
    "--profile",
    type=click.Choice([p.value for p in Profile]),
    default=None,
    help=f"Defaults to write (default: ${PROFILE_ENV_VAR} or dev).",
)
def init_config(force: bool, profile: str | None) -> None:
    """Write a fresh config file (mode 0600), then generate its secrets."""
    from controlsvc.config.configfile import fill_secrets, render_template, write_private

    path = _target_path()
    if path.exists() and not force:
        fail(f"{path} exists; use --force to overwrite it")
    chosen = Profile(profile or os.environ.get(PROFILE_ENV_VAR, "").lower() or "dev")
    write_private(path, render_template(chosen))
    fill_secrets(path, ["secret_key", "jwt_secret_key"], rotate=False)
    click.echo(f"wrote {path} ({chosen.value} profile, secrets generated, mode 0600)")


@cli.command("migrate_config")
@click.argument(
    "source", type=click.Path(dir_okay=False, path_type=Path), default=None, required=False
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def migrate_config(source: Path | None, force: bool) -> None:
    """Convert an original JABS config (SOURCE, default: the config path) into this service's.

    [DATABASE] is kept, [MAIN] and [EMAIL] are mapped, the JABS layer is enabled, and what has
    no counterpart is listed. Converting in place keeps the original as SOURCE.jabs (0600).
    """
    from controlsvc.compat.jabs.config import convert, is_original
    from controlsvc.config.configfile import fill_secrets, write_private

    target = _target_path()
    source = source or target
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{source}: cannot be read ({exc.strerror})", EXIT_CONFIG)
    if not is_original(text, str(source)):
        fail(f"{source} is not an original JABS config (no [MAIN] or [EMAIL] section)", EXIT_CONFIG)
    conversion = convert(text, source=str(source))
    if target.exists() and target.resolve() != source.resolve() and not force:
        fail(f"{target} exists; use --force to overwrite it")
    if target.resolve() == source.resolve():
        backup = source.with_name(source.name + ".jabs")
        write_private(backup, text)
        click.echo(f"kept the original as {backup}")
    write_private(target, conversion.text)
    filled = fill_secrets(target, ["secret_key", "jwt_secret_key"], rotate=False)
    load_settings(target, profile=Profile.PROD)  # refuses what it cannot run with
    click.echo(f"wrote {target} (mode 0600)")
    for line in conversion.mapped:
        click.echo(f"  mapped {line}")
    for name in filled:
        click.echo(f"  generated [SECRETS] {name} (empty in the original)")
    for line in conversion.unmapped:
        click.echo(f"  no counterpart: {line} (left out)")


@cli.command("create_secrets")
@click.option("--rotate", is_flag=True, help="Replace existing secrets too (logs everyone out).")
def create_secrets(rotate: bool) -> None:
    """Fill empty secret keys with random hex."""
    from controlsvc.config.configfile import fill_secrets

    path = _target_path()
    if not path.exists():
        fail(f"{path}: no such config file (create one with `jaxmba-service init_config`)")
    changed = fill_secrets(path, ["secret_key", "jwt_secret_key"], rotate=rotate)
    if changed:
        click.echo(f"{path}: new {', '.join(changed)}")
    else:
        click.echo(f"{path}: every secret is already set (use --rotate to replace them)")


# --- users ----------------------------------------------------------------------------------


@cli.command("create_admin")
@click.option("--email", help="The administrator's email (prompted when missing).")
@click.option("--password", help="The password (prompted when missing; prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(email: str | None, password: str | None, password_stdin: bool) -> None:
    """Create an administrator account (the first user)."""
    from controlsvc.store.db import Database
    from controlsvc.store.users import create_user
    from schemas.enums import Role

    if password and password_stdin:
        fail("give either --password or --password-stdin, not both")
    if email is None:
        email = click.prompt("Email")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    assert email is not None
    assert password is not None
    settings = state().settings()
    db = Database(settings.database.sqlalchemy_url())
    try:
        require_schema(settings, db)
        with db.session() as session:
            user = create_user(session, email=email, password=password, role=Role.ADMIN)
            click.echo(f"created administrator {user.email} (id {user.id})")
    finally:
        db.dispose()


for _command in JABS_COMMANDS:
    cli.add_command(_command)


# --- database -------------------------------------------------------------------------------


@cli.group("db", cls=AliasedGroup)
def db_group() -> None:
    """Database migrations (Alembic)."""


def _alembic() -> Any:
    from controlsvc.store import migrate

    return migrate.config_for(state().settings())


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade to REVISION (default: head)."""
    from alembic import command

    command.upgrade(_alembic(), revision)
    click.echo(f"database at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade to REVISION (e.g. -1, or base)."""
    from alembic import command

    command.downgrade(_alembic(), revision)
    click.echo(f"database at {revision}")


@db_group.command("current")
def db_current() -> None:
    """Show the current revision."""
    from alembic import command

    command.current(_alembic(), verbose=False)


@db_group.command("history")
def db_history() -> None:
    """List the revisions."""
    from alembic import command

    command.history(_alembic())


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the revision does.")
@click.option("--autogenerate/--empty", default=True, help="Compare models with the database.")
def db_revision(message: str, autogenerate: bool) -> None:
    """Create a new revision (developers)."""
    from alembic import command

    command.revision(_alembic(), message=message, autogenerate=autogenerate)


# --- serving --------------------------------------------------------------------------------


def _prepare_database(settings: Settings, migrate_now: bool) -> None:
    from controlsvc.store import migrate
    from controlsvc.store.db import Database

    db = Database(settings.database.sqlalchemy_url())
    try:
        cfg = migrate.config_for(settings)
        if migrate.is_up_to_date(cfg, db.engine):
            return
        if not migrate_now:
            fail("the database schema is not up to date: run `jaxmba-service db upgrade`")
        log.info("upgrading the database schema to head")
        migrate.upgrade(cfg)
    finally:
        db.dispose()


@cli.command("run")
@click.option("--host", default=None, help="Bind address (default [SERVICE] host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Bind port.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="API processes.")
@click.option("--bridge/--no-bridge", default=True, help="Also run the MQTT bridge.")
@click.option(
    "--migrate/--no-migrate",
    default=None,
    help="Upgrade the database first (default: yes in dev/test, no in prod).",
)
def run(
    host: str | None, port: int | None, workers: int | None, bridge: bool, migrate: bool | None
) -> None:
    """Run the service on one machine: the API (and the MQTT bridge, and an embedded broker
    when [MQTT] embedded is on)."""
    from controlsvc.ops.runner import run_service

    settings = state().settings()
    configure_logging(settings.service.log_level, settings.service.log_format, "service")
    migrate_now = settings.profile is not Profile.PROD if migrate is None else migrate
    _prepare_database(settings, migrate_now)
    run_service(
        settings,
        host=host or settings.service.host,
        port=settings.service.port if port is None else port,
        workers=workers or settings.service.workers,
        with_bridge=bridge,
    )


@cli.command("gunicorn_run")
@click.option("--host", default=None, help="Bind address (default [SERVICE] host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Bind port.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes.")
def gunicorn_run(host: str | None, port: int | None, workers: int | None) -> None:
    """Run only the API under gunicorn (threaded workers; SSE streams need threads)."""
    from controlsvc.ops.runner import serve_gunicorn

    settings = state().settings()
    configure_logging(settings.service.log_level, settings.service.log_format, "api")
    _prepare_database(settings, migrate_now=False)
    serve_gunicorn(
        settings,
        host=host or settings.service.host,
        port=settings.service.port if port is None else port,
        workers=workers or settings.service.workers,
    )


@cli.command("runserver")
@click.option("--host", default=None, help="Bind address (default [SERVICE] host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Bind port.")
@click.option("--reload/--no-reload", default=False, help="Restart on code changes.")
def runserver(host: str | None, port: int | None, reload: bool) -> None:
    """Run the API on Flask's development server (never in production)."""
    from controlsvc.ops.app import create_app

    settings = state().settings()
    configure_logging(settings.service.log_level, settings.service.log_format, "api")
    _prepare_database(settings, migrate_now=settings.profile is not Profile.PROD)
    app = create_app(settings)
    app.run(
        host=host or settings.service.host,
        port=settings.service.port if port is None else port,
        debug=settings.profile is Profile.DEV,
        use_reloader=reload,
        threaded=True,
    )


@cli.command("bridge")
def bridge_cmd() -> None:
    """Run only the MQTT bridge (telemetry ingest, liveness, commands, sessions)."""
    from controlsvc.ops.runner import run_bridge

    settings = state().settings()
    configure_logging(settings.service.log_level, settings.service.log_format, "bridge")
    _prepare_database(settings, migrate_now=False)
    run_bridge(settings)


@cli.command("demo")
@click.option(
    "--enclosures",
    "count",
    type=click.IntRange(0, 64),
    default=4,
    show_default=True,
    help="Simulated enclosures (agents recording a test pattern).",
)
@click.option("--host", default=None, help="Bind address (default [SERVICE] host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Bind port.")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more: -v the service's log ([SERVICE] log_level), -vv everything at DEBUG "
    "(default: warnings, and the mails the demo would send).",
)
@click.option(
    "--restart-agents-after",
    "restart_after",
    type=click.FloatRange(0, 3600),
    default=5.0,
    show_default=True,
    help="Seconds before an agent that died is started again (its death is logged with its "
    "exit code or signal); 0: leave it dead.",
)
def demo(
    count: int, host: str | None, port: int | None, verbose: int, restart_after: float
) -> None:
    """The whole system on this machine: embedded broker, database, admin, bridge, agents, API."""
    from controlsvc.ops.demo import demo_log_level, quiet_demo_logging, run_demo

    settings = state().settings()
    if not settings.mqtt.embedded:
        fail("the demo needs [MQTT] embedded = true (the dev profile's default)")
    level = demo_log_level(verbose, settings.service.log_level)
    settings = settings.model_copy(
        update={"service": settings.service.model_copy(update={"log_level": level})}
    )
    configure_logging(level, settings.service.log_format, "demo")
    if not verbose:
        quiet_demo_logging()
    _prepare_database(settings, migrate_now=True)
    run_demo(
        settings,
        count=count,
        host=host or settings.service.host,
        port=settings.service.port if port is None else port,
        workers=settings.service.workers,
        restart_agents_after_s=restart_after,
        quiet=not verbose,
    )


@cli.command("shell")
def shell() -> None:
    """A Python shell inside the application context (`app`, `db`, `session`, `models`)."""
    import code

    from controlsvc.api.web import database
    from controlsvc.ops.app import create_app
    from controlsvc.store import models

    settings = state().settings()
    app = create_app(settings)
    with app.app_context():
        db = database()
        with db.sessionmaker() as session:
            banner = f"jaxmba-service {__version__} shell ({settings.profile.value} profile)"
            code.interact(
                banner=banner,
                local={"app": app, "db": db, "session": session, "models": models},
                exitmsg="",
            )


# --- tests ----------------------------------------------------------------------------------


def _pytest(args: tuple[str, ...]) -> NoReturn:
    env = dict(os.environ)
    env.setdefault(PROFILE_ENV_VAR, Profile.TEST.value)
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", *args], env=env))  # noqa: S603


@cli.command("test", context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def test(pytest_args: tuple[str, ...]) -> None:
    """Run the test suite (arguments go to pytest)."""
    _pytest(pytest_args)


@cli.command("test_xml", context_settings={"ignore_unknown_options": True})
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("test-results/junit.xml"),
    show_default=True,
    help="Where to write the JUnit XML report.",
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def test_xml(output: Path, pytest_args: tuple[str, ...]) -> None:
    """Run the test suite and write a JUnit XML report (for CI)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    _pytest((f"--junitxml={output}", *pytest_args))


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="jaxmba-service", standalone_mode=True)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except JaxmbaError as exc:
        fail(str(exc))
    except OperationalError as exc:
        fail(f"the database cannot be reached: {exc.orig}")


if __name__ == "__main__":
    main()
