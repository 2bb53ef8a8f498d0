"""``jaxmba-agent``: run the enclosure agent, check the enclosure, write a config file.

::

    jaxmba-agent run --config /etc/jaxmba-agent/agent.toml
    jaxmba-agent run --enclosure-id enc-01 --broker mqtt://enc-01:pw@127.0.0.1:1883 \\
                     --recordings /tmp/rec --camera testpattern
    jaxmba-agent check --config /etc/jaxmba-agent/agent.toml
    jaxmba-agent init-config /etc/jaxmba-agent/agent.toml --enclosure-id enc-01 --broker ...
    jaxmba-agent --version

Exit codes: 0 stopped cleanly; 1 ``check`` found a problem (or an unexpected error);
2 bad configuration or usage; 75 a ``restart_agent`` command under systemd (any exit
restarts it with ``Restart=always``; outside systemd the agent executes itself again);
78 the broker refused the credentials.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click

from enclosure_agent import __version__
from enclosure_agent.config import AgentConfig, Overrides, load_config
from enclosure_agent.errors import AgentError, ConfigError
from schemas.logs import LogFormat, configure_logging

__all__ = ["EXIT_CONFIG", "EXIT_REFUSED", "EXIT_RESTART", "main"]

EXIT_FAILURE = 1
EXIT_CONFIG = 2  # click's own code for usage errors too
EXIT_RESTART = 75  # EX_TEMPFAIL: "restart me" (restart_agent under systemd)
EXIT_REFUSED = 78  # EX_CONFIG: the broker refused our credentials; fix the config
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("enclosure_agent.cli")


def _config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="TOML config file (see deploy/agent/jaxmba-agent.example.toml).",
        ),
        click.option("--enclosure-id", help="Overrides agent.enclosure_id."),
        click.option("--broker", help="mqtt[s]://user:password@host:port (overrides broker.url)."),
        click.option(
            "--recordings",
            type=click.Path(file_okay=False, path_type=Path),
            help="Recording root directory (overrides recording.root).",
        ),
        click.option("--camera", help="Camera source (overrides camera.source)."),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Journal and outbox directory (overrides agent.state_dir).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load(
    config_path: Path | None,
    enclosure_id: str | None,
    broker: str | None,
    recordings: Path | None,
    camera: str | None,
    state_dir: Path | None,
) -> AgentConfig:
    overrides = Overrides(enclosure_id, broker, recordings, camera, state_dir)
    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        click.echo(f"jaxmba-agent: bad configuration\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _setup_logging(level: str, enclosure_id: str, log_format: LogFormat = "text") -> None:
    configure_logging(
        logging.WARNING,
        log_format,
        text_format=LOG_FORMAT.replace("%(name)s", f"[{enclosure_id}] %(name)s"),
        process="agent",
        static={"enclosure_id": enclosure_id},
    )
    logging.getLogger("enclosure_agent").setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jaxmba-agent")
def cli() -> None:
    """The jaxmba enclosure agent: records video, reports health, obeys commands over MQTT."""


@cli.command()
@_config_options
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Overrides agent.log_level.",
)
def run(log_level: str | None, **options: Any) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    config = _load(**options)
    _setup_logging(
        (log_level or config.agent.log_level).upper(), config.enclosure_id, config.agent.log_format
    )
    config_path: Path | None = options["config_path"]
    if config_path is not None and (config_path.stat().st_mode & 0o077):
        log.warning(
            "%s is readable by others but holds the broker password: chmod 600", config_path
        )

    from enclosure_agent.agent import Agent, ExitReason

    try:
        agent = Agent(config)
    except (AgentError, OSError) as exc:
        click.echo(f"jaxmba-agent: cannot start: {exc}", err=True)
        sys.exit(EXIT_FAILURE)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reason = agent.run()
    if reason is ExitReason.REFUSED:
        click.echo(
            f"jaxmba-agent: the broker refused the credentials of {config.enclosure_id}"
            f" at {config.broker.parsed.redacted()}",
            err=True,
        )
        sys.exit(EXIT_REFUSED)
    if reason is ExitReason.RESTART:
        _restart()


def _restart() -> None:
    """Under systemd exit 75 (Restart=always starts us again); otherwise execute ourselves."""
    logging.shutdown()
    if os.environ.get("INVOCATION_ID"):
        sys.exit(EXIT_RESTART)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606


@cli.command()
@_config_options
def check(**options: Any) -> None:
    """Check camera, disk, state directory, clock and broker; exit 1 if anything fails."""
    config = _load(**options)
    from enclosure_agent.checks import config_private, run_checks

    failed = False
    config_path: Path | None = options["config_path"]
    results = run_checks(config)
    if config_path is not None:
        results = itertools.chain([config_private(config_path)], results)
    for result in results:
        click.echo(result.line())
        failed |= not result.ok
    sys.exit(EXIT_FAILURE if failed else 0)


@cli.command("init-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--enclosure-id", required=True, help="This enclosure's id.")
@click.option("--broker", required=True, help="mqtt[s]://enclosure-id:password@host:port")
@click.option(
    "--recordings",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Recording root directory.",
)
@click.option("--camera", default="testpattern", show_default=True, help="Camera source.")
@click.option(
    "--state-dir",
    default=Path("/var/lib/jaxmba-agent"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init_config(
    path: Path,
    enclosure_id: str,
    broker: str,
    recordings: Path,
    camera: str,
    state_dir: Path,
    force: bool,
) -> None:
    """Write a commented config file (mode 0600: it holds the broker password)."""
    from enclosure_agent.config import validate_config
    from enclosure_agent.configfile import render_config, write_config

    text = render_config(
        enclosure_id=enclosure_id,
        broker_url=broker,
        state_dir=str(state_dir),
        recordings=str(recordings),
        camera=camera,
    )
    try:
        validate_config(tomllib.loads(text))
    except ConfigError as exc:
        click.echo(f"jaxmba-agent: bad configuration\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        write_config(path, text, overwrite=force)
    except (FileExistsError, OSError) as exc:
        click.echo(f"jaxmba-agent: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"wrote {path} (mode 600)")


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    cli.main(args=argv, prog_name="jaxmba-agent")
