"""``provision ENCLOSURE``: the enclosure's broker account and a ready agent config file.

1. The id is checked against the contract (``schemas.ids``) before anything is touched.
2. A new random password goes into the Mosquitto password file (``controlsvc.broker``; the file
   is edited atomically under a lock, other accounts keep their hashes).
3. The agent config (``enclosure_agent.configfile``) is written with mode 0600; its broker URL
   carries the password, which is shown nowhere else.
4. With a pid file, the broker is sent SIGHUP so it rereads the password file.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from controlsvc.broker import BrokerError, add_or_update_account, generate_password
from controlsvc.ctl.errors import ProvisionError
from controlsvc.ctl.mqtt import parse_broker_url
from enclosure_agent.configfile import render_config, write_config
from schemas.ids import validate_enclosure_id

__all__ = ["Provisioned", "provision"]


@dataclass(frozen=True, slots=True)
class Provisioned:
    enclosure_id: str
    config_file: Path
    password_file: Path
    new_account: bool
    reloaded_pid: int | None


def _check_id(eid: str) -> str:
    try:
        return validate_enclosure_id(eid)
    except ValueError as exc:
        raise ProvisionError(str(exc), exit_code=2) from exc


def _agent_url(broker_url: str, eid: str, password: str) -> str:
    target = parse_broker_url(broker_url)
    if target.username or target.password:
        raise ProvisionError(
            "--broker-url must not carry credentials (the enclosure's own are generated): "
            "give mqtt[s]://host:port",
            exit_code=2,
        )
    scheme = "mqtts" if target.tls else "mqtt"
    return f"{scheme}://{eid}:{quote(password, safe='')}@{target.host}:{target.port}"


def _reload(pid_file: Path) -> int:
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError) as exc:
        raise ProvisionError(
            f"the account is written, but the broker's pid file {pid_file} is unreadable "
            f"({exc}); reload the broker yourself (systemctl reload mosquitto)"
        ) from exc
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise ProvisionError(
            f"the account is written, but the broker (pid {pid}) could not be reloaded "
            f"({exc.strerror}); reload it yourself (systemctl reload mosquitto)"
        ) from exc
    return pid


def provision(
    eid: str,
    *,
    password_file: Path,
    broker_url: str,
    recordings: str,
    camera: str = "testpattern",
    out: Path | None = None,
    state_dir: str,
    reload_pid_file: Path | None = None,
    force: bool = False,
) -> Provisioned:
    eid = _check_id(eid)
    password = generate_password()
    agent_url = _agent_url(broker_url, eid, password)
    config_file = out or Path(f"{eid}.toml")
    if config_file.exists() and not force:
        raise ProvisionError(f"{config_file} exists; use --force to replace it", exit_code=2)
    text = render_config(
        enclosure_id=eid,
        broker_url=agent_url,
        state_dir=state_dir,
        recordings=recordings,
        camera=camera,
    )
    try:
        new_account = add_or_update_account(password_file, eid, password)
    except BrokerError as exc:
        raise ProvisionError(f"cannot update {password_file}: {exc}") from exc
    except OSError as exc:
        raise ProvisionError(f"cannot update {password_file}: {exc.strerror or exc}") from exc
    try:
        write_config(config_file, text, overwrite=True)
    except OSError as exc:
        raise ProvisionError(
            f"the account is written, but {config_file} could not be: {exc.strerror or exc}"
        ) from exc
    pid = _reload(reload_pid_file) if reload_pid_file is not None else None
    return Provisioned(eid, config_file, password_file, new_account, pid)
