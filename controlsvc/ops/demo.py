"""`jaxmba-service demo`: the whole system on one machine, for a first look.

Embedded Mosquitto (per-enclosure accounts, ACL, tcp_nodelay, raised queues) on a free or the
configured port, a migrated SQLite database, an administrator, the bridge, N enclosure agents
recording the test pattern, and the API in the foreground. Ctrl-C stops everything; a second run
reuses the database, the accounts, the recordings and (when free) the port.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from controlsvc.broker import OPERATOR_USER, add_or_update_account
from controlsvc.config.settings import Settings
from controlsvc.files import atomic_write
from controlsvc.ops.embedded import EmbeddedBroker
from controlsvc.ops.runner import bridge_running, ensure_port_free, serve_gunicorn_apart
from controlsvc.ops.supervisor import supervised
from controlsvc.store.db import Database

log = logging.getLogger(__name__)

DEFAULT_ADMIN_EMAIL = "admin@example.org"
ADMIN_EMAIL_ENV = "JAXMBA_DEMO_ADMIN_EMAIL"
ADMIN_PASSWORD_ENV = "JAXMBA_DEMO_ADMIN_PASSWORD"  # noqa: S105 - a variable name, not a password
PRIVATE_MODE = 0o600
# Small frames keep N encoders within a 2-core laptop; real cameras set their own size.
DEMO_WIDTH, DEMO_HEIGHT, DEMO_FPS = 320, 240, 15
# A dead agent is started again after this pause (doubling while it keeps dying): long enough
# to see the enclosure go lost, short enough to see it come back.
AGENT_RESTART_S = 5.0
# The agent's production reserve (GiBs) would refuse to record on a small laptop disk.
DEMO_DISK_RESERVE_BYTES = 256 * 1024 * 1024
# The agent's --log-level knows no CRITICAL.
_AGENT_LEVELS = {"CRITICAL": "ERROR"}


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def admin_file(self) -> Path:
        return self.root / "admin.json"

    @property
    def agents(self) -> Path:
        return self.root / "agents"

    @property
    def recordings(self) -> Path:
        return self.root / "recordings"

    def agent_config(self, eid: str) -> Path:
        return self.agents / f"{eid}.toml"

    def agent_state(self, eid: str) -> Path:
        return self.agents / eid


def demo_log_level(verbose: int, configured: str) -> str:
    """Quiet by default (warnings); ``-v`` the configured level; ``-vv`` DEBUG."""
    if verbose <= 0:
        return "WARNING"
    return configured if verbose == 1 else "DEBUG"


# The mails stay visible when all else is quiet: the console mailer is how the demo hands out
# invite and password-reset links.
QUIET_DEMO_LEVELS = {"controlsvc.mailer.delivery": logging.INFO}


def quiet_demo_logging() -> None:
    for name, level in QUIET_DEMO_LEVELS.items():
        logging.getLogger(name).setLevel(level)


def public_url(host: str, port: int) -> str:
    """Where the demo's browser users reach it (also the base of the links it mails)."""
    shown_host = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host  # noqa: S104
    return f"http://{shown_host}:{port}"


def enclosure_ids(count: int) -> list[str]:
    return [f"demo-{i:02d}" for i in range(1, count + 1)]


def ensure_admin(settings: Settings, paths: DemoPaths) -> tuple[str, str]:
    """The demo administrator: from the environment, from an earlier run, or new."""
    from sqlalchemy import select

    from controlsvc.domain import passwords
    from controlsvc.store.models import User
    from controlsvc.store.users import create_user
    from schemas.enums import Role

    stored: dict[str, str] = {}
    if paths.admin_file.exists():
        stored = json.loads(paths.admin_file.read_text(encoding="utf-8"))
    email = os.environ.get(ADMIN_EMAIL_ENV) or stored.get("email") or DEFAULT_ADMIN_EMAIL
    password = (
        os.environ.get(ADMIN_PASSWORD_ENV)
        or (stored.get("password") if stored.get("email") == email else None)
        or secrets.token_urlsafe(12)
    )
    db = Database(settings.database.sqlalchemy_url())
    try:
        with db.session() as session:
            user = session.scalar(select(User).where(User.email == email.lower()))
            if user is None:
                create_user(session, email=email, password=password, role=Role.ADMIN)
            elif not passwords.verify_password(user.password_hash, password):
                # The demo owns this account: make the printed password true again.
                user.password_hash = passwords.hash_password(password)
    finally:
        db.dispose()
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write(
        paths.admin_file,
        json.dumps({"email": email, "password": password}, indent=2) + "\n",
        mode=PRIVATE_MODE,
    )
    return email, password


def agent_password(paths: DemoPaths, eid: str) -> str:
    """Each demo enclosure keeps its broker password across runs (in its 0600 state dir)."""
    secret_file = paths.agent_state(eid) / "broker-password"
    if secret_file.exists():
        return secret_file.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(18)
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(secret_file, password + "\n", mode=PRIVATE_MODE)
    return password


def agent_config_text(
    settings: Settings, paths: DemoPaths, eid: str, password: str, port: int
) -> str:
    broker = f"mqtt://{eid}:{password}@{settings.mqtt.host}:{port}"
    return "\n".join(
        [
            "# Written by `jaxmba-service demo` at each start (holds the broker password).",
            "version = 1",
            "",
            "[agent]",
            f"enclosure_id = {json.dumps(eid)}",
            f"log_format = {json.dumps(settings.service.log_format)}",
            f"state_dir = {json.dumps(str(paths.agent_state(eid).absolute()))}",
            "",
            "[broker]",
            f"url = {json.dumps(broker)}",
            f"topic_prefix = {json.dumps(settings.mqtt.topic_prefix)}",
            "",
            "[camera]",
            'source = "testpattern"',
            f"width = {DEMO_WIDTH}",
            f"height = {DEMO_HEIGHT}",
            f"fps = {DEMO_FPS}",
            "",
            "[recording]",
            f"root = {json.dumps(str(paths.recordings.absolute()))}",
            f"disk_reserve_bytes = {DEMO_DISK_RESERVE_BYTES}",
            "",
            "[status]",
            f"interval_s = {settings.service.status_interval_s}",
            "",
        ]
    )


def prepare_agents(settings: Settings, paths: DemoPaths, ids: list[str], port: int) -> None:
    """Broker accounts and config files for the demo enclosures (the broker is running;
    ``port`` is its listener for enclosures)."""
    password_file = Path(settings.mqtt.password_file)
    for eid in ids:
        password = agent_password(paths, eid)
        add_or_update_account(password_file, eid, password)
        atomic_write(
            paths.agent_config(eid),
            agent_config_text(settings, paths, eid, password, port),
            mode=PRIVATE_MODE,
        )
    reload_broker(settings)


def reload_broker(settings: Settings) -> None:
    import signal

    pid_file = Path(settings.mqtt.reload_pid_file)
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGHUP)


def banner(settings: Settings, email: str, password: str, ids: list[str], broker_port: int) -> str:
    base = settings.service.public_url.rstrip("/")
    operator = json.loads(
        (Path(settings.mqtt.embedded_dir) / "credentials.json").read_text(encoding="utf-8")
    )[OPERATOR_USER]
    return f"""
  jaxmba demo is starting: {len(ids)} enclosures ({", ".join(ids)}) recording a test pattern

    Web UI / API   {base}/
    Swagger UI     {base}/swaggerui/
    Login          {email}  /  {password}
    jaxmba-ctl     .venv/bin/jaxmba-ctl --url {base} login --email {email}
    Watch MQTT     mosquitto_sub -h {settings.mqtt.host} -p {broker_port} -V mqttv5 \\
                     -u {OPERATOR_USER} -P '{operator}' -t '{settings.mqtt.topic_prefix}/#' -v
    Recordings     {Path(settings.mqtt.embedded_dir).parent.absolute()}/demo/recordings

  Ctrl-C stops everything.
"""


@contextmanager
def agents_running(
    settings: Settings, paths: DemoPaths, ids: list[str], *, restart_after_s: float
) -> Iterator[None]:
    """The agents, each restarted ``restart_after_s`` after it dies (its log says how it
    died), as a lab computer's service manager would restart a real one."""
    with ExitStack() as stack:
        env = dict(os.environ)
        for eid in ids:
            argv = [
                sys.executable,
                "-m",
                "enclosure_agent",
                "run",
                "--config",
                str(paths.agent_config(eid)),
                "--log-level",
                _AGENT_LEVELS.get(settings.service.log_level, settings.service.log_level),
            ]
            stack.enter_context(
                supervised(argv, env, f"agent {eid}", restart_after_s=restart_after_s)
            )
        yield


def run_demo(
    settings: Settings,
    *,
    count: int,
    host: str,
    port: int,
    workers: int,
    restart_agents_after_s: float = AGENT_RESTART_S,
    quiet: bool = True,
) -> None:
    """Everything, until Ctrl-C; ``quiet``: the demo's default logging (see
    :func:`quiet_demo_logging`), which the API's process gets too."""
    ensure_port_free(host, port)
    quiet_levels = QUIET_DEMO_LEVELS if quiet else {}
    # Invite and reset links point at this demo's port, whatever [SERVICE] public_url says.
    settings = settings.model_copy(
        update={
            "service": settings.service.model_copy(update={"public_url": public_url(host, port)})
        }
    )
    paths = DemoPaths(Path(settings.mqtt.embedded_dir).parent / "demo")
    ids = enclosure_ids(count)
    email, password = ensure_admin(settings, paths)
    embedded = EmbeddedBroker.from_settings(settings)
    with embedded.running() as effective:
        prepare_agents(effective, paths, ids, embedded.agent_port)
        with (
            bridge_running(effective),
            agents_running(effective, paths, ids, restart_after_s=restart_agents_after_s),
        ):
            print(banner(effective, email, password, ids, embedded.agent_port), flush=True)
            serve_gunicorn_apart(
                effective, host=host, port=port, workers=workers, log_levels=quiet_levels
            )
