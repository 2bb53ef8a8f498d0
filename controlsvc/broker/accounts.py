"""Broker accounts of enclosures, created and removed by the service.

Only when ``[MQTT] password_file`` names the broker's password file: the account is written
there (``controlsvc.broker.password_file``: atomic, locked, mosquitto 2.0 hashes), then the broker
rereads it on ``SIGHUP`` to the pid in ``[MQTT] reload_pid_file`` (when set; otherwise an
external watcher such as ``deploy/systemd/jaxmba-broker-reload.path`` reloads it). Without a
password file, accounts are managed outside the service (``jaxmba-ctl provision``) and
registering an enclosure through the API is refused with a 409 that says so.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from controlsvc.broker.errors import BrokerError
from controlsvc.broker.password_file import (
    add_or_update_account,
    generate_password,
    remove_account,
)
from controlsvc.config.sections import MqttSettings
from controlsvc.domain.errors import Conflict, Unavailable

log = logging.getLogger(__name__)

__all__ = ["AccountsNotManaged", "create_account", "manages_accounts", "remove_enclosure_account"]


class AccountsNotManaged(Conflict):
    """The service does not manage broker accounts (``[MQTT] password_file`` is empty)."""


NOT_MANAGED = (
    "the service does not manage broker accounts ([MQTT] password_file is empty): create the"
    " enclosure's account on the broker (e.g. `jaxmba-ctl provision`), or set password_file to"
    " the broker's password file"
)


def manages_accounts(mqtt: MqttSettings) -> bool:
    return bool(mqtt.password_file)


def _reload(mqtt: MqttSettings) -> None:
    """SIGHUP the broker so it rereads the password file (when we know its pid)."""
    if not mqtt.reload_pid_file:
        return
    path = Path(mqtt.reload_pid_file)
    try:
        pid = int(path.read_text(encoding="ascii").strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        # The account is written: the broker picks it up at its next reload or restart.
        log.warning("could not reload the broker (pid file %s): %s", path, exc)
        raise Unavailable(
            f"the account was written to {mqtt.password_file} but the broker could not be told"
            f" to reload it (pid file {path}: {exc}); reload the broker"
        ) from exc


def create_account(mqtt: MqttSettings, username: str) -> str:
    """A new random password for ``username`` in the broker's password file (replacing any
    previous one), with the broker reloaded; returns the password (shown once)."""
    if not manages_accounts(mqtt):
        raise AccountsNotManaged(NOT_MANAGED)
    password = generate_password()
    try:
        add_or_update_account(mqtt.password_file, username, password)
    except (BrokerError, OSError) as exc:
        log.error(  # noqa: TRY400 - the reason is enough
            "cannot write broker account %s to %s: %s", username, mqtt.password_file, exc
        )
        raise Unavailable(f"cannot write the broker's password file: {exc}") from exc
    _reload(mqtt)
    return password


def remove_enclosure_account(mqtt: MqttSettings, username: str) -> bool:
    """Remove ``username`` from the broker's password file (and reload); True if it was there.

    Without a password file there is nothing the service can do: False. A client connected
    with the account stays connected until it disconnects (mosquitto 2.0 does not kick it).
    """
    if not manages_accounts(mqtt):
        return False
    try:
        removed = remove_account(mqtt.password_file, username)
    except (BrokerError, OSError) as exc:
        log.error(  # noqa: TRY400 - the reason is enough
            "cannot remove broker account %s from %s: %s", username, mqtt.password_file, exc
        )
        raise Unavailable(f"cannot write the broker's password file: {exc}") from exc
    if removed:
        _reload(mqtt)
    return removed
