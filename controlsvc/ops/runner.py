"""Process wiring for `run`, `gunicorn_run` and `bridge`.

`run` on one machine: an embedded Mosquitto when [MQTT] embedded is on, the bridge as a child
process (started again when it dies), and the API under gunicorn (threaded workers, so SSE
streams don't pin a process each) in a process of its own. Ctrl-C or SIGTERM stops all of
them, API first, broker last.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from controlsvc.config.settings import Settings
from controlsvc.domain.errors import ConfigError
from controlsvc.ops.supervisor import describe_exit, supervised

log = logging.getLogger(__name__)

# A bridge that died is started again after this long (doubling while it keeps dying).
BRIDGE_RESTART_S = 5.0
# Signals the API's process gets from the one that started it (SIGHUP: gunicorn reloads).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# gunicorn's default 30 s worker timeout is about silent workers; SSE keeps them busy, not silent.
GUNICORN_WORKER_TIMEOUT_S = 60
GUNICORN_GRACEFUL_TIMEOUT_S = 10
# The longest request line gunicorn reads (its 414 is plain text): above the API's own limit,
# controlsvc.api.errors.MAX_URI_BYTES, which answers a problem+json 414 first.
GUNICORN_REQUEST_LINE_BYTES = 8190


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from controlsvc.ops.app import create_app

        return create_app(self._settings)


def gunicorn_options(settings: Settings, host: str, port: int, workers: int) -> dict[str, Any]:
    from controlsvc import metrics

    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": settings.service.threads,
        "timeout": GUNICORN_WORKER_TIMEOUT_S,
        "graceful_timeout": GUNICORN_GRACEFUL_TIMEOUT_S,
        # One line per request at INFO and DEBUG (quiet below, e.g. the demo without -v).
        "accesslog": "-" if settings.service.log_level in ("DEBUG", "INFO") else None,
        "errorlog": "-",
        "loglevel": settings.service.log_level.lower(),
        "limit_request_line": GUNICORN_REQUEST_LINE_BYTES,
        **_gunicorn_json_logs(settings),
        "proc_name": "jaxmba-api",
        # End a stopping worker's event streams at once instead of after the graceful timeout.
        "post_worker_init": gunicorn_post_worker_init,
        "child_exit": metrics.gunicorn_child_exit,
    }


def _gunicorn_json_logs(settings: Settings) -> dict[str, Any]:
    """With [SERVICE] log_format = json, gunicorn's own loggers (errors, access) write JSON
    lines too."""
    if settings.service.log_format != "json":
        return {}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    logger = {"level": settings.service.log_level, "handlers": ["json"], "propagate": False}
    return {
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "schemas.logs.JsonFormatter", "process": "api"}},
            "handlers": {"json": handler},
            "loggers": {"gunicorn.error": logger, "gunicorn.access": logger},
            # gunicorn merges this over its own defaults, whose root names their handler
            "root": {"level": settings.service.log_level, "handlers": ["json"]},
        }
    }


def ensure_port_free(host: str, port: int) -> None:
    """Refuse at once, with the reason, when another process holds the API's port."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another process uses "
                "it? choose another with --port or [SERVICE] port)"
            ) from None


def serve_gunicorn(settings: Settings, *, host: str, port: int, workers: int) -> None:
    from controlsvc import metrics

    ensure_port_free(host, port)
    metrics.setup_process(settings)
    log.info("API listening on http://%s:%d (%d workers)", host, port, workers)
    _Gunicorn(settings, gunicorn_options(settings, host, port, workers)).run()


def _serve_api(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    log_process: str,
    log_levels: Mapping[str, int],
) -> None:
    """The API's process (started by :func:`serve_gunicorn_apart`): a fresh interpreter, so
    it sets up the logging the starting process has, then runs gunicorn."""
    from controlsvc.ops.cli_support import configure_logging

    configure_logging(settings.service.log_level, settings.service.log_format, log_process)
    for name, level in log_levels.items():
        logging.getLogger(name).setLevel(level)
    serve_gunicorn(settings, host=host, port=port, workers=workers)


def serve_gunicorn_apart(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    log_process: str = "api",
    log_levels: Mapping[str, int] | None = None,
) -> None:
    """The API under gunicorn in a process of its own, until it stops; this process's SIGTERM,
    SIGINT and SIGHUP are passed on to it.

    gunicorn's arbiter reaps every child of its process (``waitpid(-1)``), so in the process
    that also keeps the bridge, the broker and the demo's agents it took their exit status:
    an agent killed by SIGKILL was read as "exited with code 0", or its death went unseen.
    """
    ensure_port_free(host, port)
    context = multiprocessing.get_context("spawn")  # fork would copy this process's threads
    api = context.Process(
        target=_serve_api,
        args=(settings, host, port, workers, log_process, dict(log_levels or {})),
        name="jaxmba-api",
    )
    api.start()
    pid = api.pid

    def forward(signum: int, _frame: object) -> None:
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {number: signal.signal(number, forward) for number in FORWARDED_SIGNALS}
    try:
        api.join()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    code = api.exitcode
    if code:
        log.error("the API (pid %s) %s", pid, describe_exit(code))
        raise SystemExit(code if code > 0 else 1)


def run_bridge(settings: Settings) -> None:
    from controlsvc import metrics
    from controlsvc.bridge.service import run as run_bridge_service
    from controlsvc.ops.gc_policy import tune_gc

    metrics.setup_process(settings)
    tune_gc()
    run_bridge_service(settings)


def gunicorn_post_worker_init(worker: Any) -> None:
    """gunicorn ``post_worker_init``: the worker has loaded the app; end its event streams at
    once on SIGTERM, and tune its collector."""
    from controlsvc.api import event_feed
    from controlsvc.ops.gc_policy import tune_gc

    event_feed.gunicorn_post_worker_init(worker)
    tune_gc()


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment for a child `jaxmba-service` that must see this process's settings."""
    env = dict(os.environ)
    env["FLASK_CONFIG"] = settings.profile.value
    env["JAXMBA_SERVICE_LOG_LEVEL"] = settings.service.log_level
    env["JAXMBA_SERVICE_LOG_FORMAT"] = settings.service.log_format
    env["JAXMBA_MQTT_HOST"] = settings.mqtt.host
    env["JAXMBA_MQTT_PORT"] = str(settings.mqtt.port)
    env["JAXMBA_MQTT_USERNAME"] = settings.mqtt.username
    env["JAXMBA_MQTT_PASSWORD"] = settings.mqtt.password.get_secret_value()
    env["JAXMBA_DATABASE_URL"] = settings.database.sqlalchemy_url().render_as_string(
        hide_password=False
    )
    env["JAXMBA_SECRETS_SECRET_KEY"] = settings.secrets.secret_key.get_secret_value()
    env["JAXMBA_SECRETS_JWT_SECRET_KEY"] = settings.secrets.jwt_secret_key.get_secret_value()
    return env


def service_argv(settings: Settings) -> list[str]:
    """`jaxmba-service` as a child process, with the configuration file this one read."""
    argv = [sys.executable, "-m", "controlsvc"]
    if settings.config_path:
        argv += ["--config", str(Path(settings.config_path).resolve())]
    return argv


@contextmanager
def bridge_running(settings: Settings) -> Iterator[None]:
    """The bridge in a child process, started again when it dies (its death logged with its
    exit code or signal): the API alone takes commands nobody delivers."""
    argv = [*service_argv(settings), "bridge"]
    with supervised(argv, settings_env(settings), "bridge", restart_after_s=BRIDGE_RESTART_S):
        yield


@contextmanager
def embedded_broker(settings: Settings) -> Iterator[Settings]:
    """Start the local Mosquitto when [MQTT] embedded is on; yield settings pointing at it."""
    if not settings.mqtt.embedded:
        yield settings
        return
    from controlsvc.ops.embedded import EmbeddedBroker

    broker = EmbeddedBroker.from_settings(settings)
    with broker.running() as effective:
        yield effective


def run_service(
    settings: Settings, *, host: str, port: int, workers: int, with_bridge: bool
) -> None:
    from controlsvc import metrics

    ensure_port_free(host, port)
    # Before any child starts: the bridge inherits the multiprocess metrics directory.
    metrics.setup_process(settings)
    with embedded_broker(settings) as effective:
        if not with_bridge:
            serve_gunicorn(effective, host=host, port=port, workers=workers)
            return
        with bridge_running(effective):
            serve_gunicorn_apart(effective, host=host, port=port, workers=workers)
