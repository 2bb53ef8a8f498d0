"""The embedded broker of the development profile: a local Mosquitto that `run` and the demo
configure and start themselves ([MQTT] embedded = true).

It lives in [MQTT] embedded_dir and keeps, across runs: the service and operator passwords
(`credentials.json`, mode 0600), the enclosure accounts the service created (the password file),
retained messages and sessions (persistence), and the port it last used when that port is free
(file `port`; the service's listener is in `service-port`).

Two listeners, as in production: the port enclosures and operators use ([MQTT] port, else the
one used last; client id forced to the user name), and one for the service account alone (any
free port; the settings yielded by ``running`` point at it).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from controlsvc.broker import (
    OPERATOR_USER,
    BrokerConfig,
    LocalBroker,
    probe,
)
from controlsvc.config.settings import Settings
from controlsvc.files import atomic_write

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"
PORT_FILE = "port"  # the enclosures' and operators' listener, reused by the next run if free
SERVICE_PORT_FILE = "service-port"  # the service account's listener, for tools such as jaxmba-ctl
PRIVATE_MODE = 0o600


class EmbeddedBroker:
    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.directory = directory.absolute()
        self.agent_port = 0  # while running: the listener of enclosures and operators

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedBroker:
        return cls(settings, Path(settings.mqtt.embedded_dir))

    # -- persisted credentials and port ----------------------------------------------------------
    def credentials(self) -> dict[str, str]:
        """The service's and operator's passwords, generated once and kept in the directory."""
        path = self.directory / CREDENTIALS_FILE
        stored: dict[str, str] = {}
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
        service_user = self.settings.mqtt.username
        wanted = {
            service_user: self.settings.mqtt.password.get_secret_value()
            or stored.get(service_user)
            or secrets.token_urlsafe(24),
            OPERATOR_USER: stored.get(OPERATOR_USER) or secrets.token_urlsafe(24),
        }
        if wanted != stored:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(wanted, indent=2) + "\n", mode=PRIVATE_MODE)
        return wanted

    def _port(self) -> int:
        if self.settings.mqtt.port:
            return self.settings.mqtt.port
        try:
            last = int((self.directory / PORT_FILE).read_text().strip())
        except (OSError, ValueError):
            return 0
        # Reuse the last port so agents configured earlier find the broker again.
        return 0 if probe("127.0.0.1", last) else last

    @property
    def password_file(self) -> Path:
        return self.directory / "passwd"

    # -- running ---------------------------------------------------------------------------------
    @contextmanager
    def running(self) -> Iterator[Settings]:
        """Start the broker; yield settings whose [MQTT] section points at it; stop it after."""
        accounts = self.credentials()
        broker = LocalBroker(
            self.directory,
            accounts,
            config=BrokerConfig(port=self._port()),
            prefix=self.settings.mqtt.topic_prefix,
            service_user=self.settings.mqtt.username,
            # Enclosure accounts the service created in earlier runs stay valid.
            keep_other_accounts=True,
        )
        broker.start()
        try:
            (self.directory / PORT_FILE).write_text(f"{broker.port}\n")
            (self.directory / SERVICE_PORT_FILE).write_text(f"{broker.service_port}\n")
            self.agent_port = broker.port
            log.info(
                "embedded Mosquitto on %s, the service's listener on %s (files in %s)",
                broker.url,
                broker.service_url,
                self.directory,
            )
            mqtt = self.settings.mqtt.model_copy(
                update={
                    "host": broker.host,
                    "port": broker.service_port,
                    "password": SecretStr(accounts[self.settings.mqtt.username]),
                    "tls": False,
                    "password_file": str(self.password_file),
                    "reload_pid_file": str(broker.config.pid_file),
                }
            )
            yield self.settings.model_copy(update={"mqtt": mqtt})
        finally:
            self.agent_port = 0
            broker.stop()
