"""A Mosquitto broker that jaxmba configures and runs itself, in a directory of its own.

Used by the tests, the demo and ``jaxmba-service run`` with the embedded broker::

    with LocalBroker(Path("var/mosquitto"), {"jaxmba_service": pw, "enc-01": pw2}) as broker:
        print(broker.url)            # mqtt://127.0.0.1:<a free port>: enclosures, operators
        print(broker.service_url)    # mqtt://127.0.0.1:<another>: the service account alone

On ``port`` the client id is forced to the user name; the service, which runs many connections
under one account, has ``service_port`` to itself (see ``controlsvc.broker.mosquitto_config``).
The directory holds ``mosquitto.conf``, ``passwd`` (every account but the service's),
``passwd-service`` (the service account), ``acl`` (unless another ACL file is given),
``data/`` (persistence), ``mosquitto.log``, ``mosquitto.out`` (the process's stderr) and
``mosquitto.pid`` while it runs. Every start rewrites the config and password file; the
persistence file is kept, so retained messages and sessions survive ``restart()``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import shlex
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from controlsvc.broker.acl import DEFAULT_PREFIX, OPERATOR_USER, SERVICE_USER, render_acl
from controlsvc.broker.errors import (
    BrokerAlreadyRunning,
    BrokerError,
    BrokerStartError,
    InvalidBrokerSetting,
    PortInUseError,
)
from controlsvc.broker.mosquitto_config import BrokerConfig, render_config
from controlsvc.broker.password_file import (
    add_or_update_account,
    hash_password,
    read_password_file,
    remove_account,
    validate_username,
    write_password_file,
    write_password_hashes,
)
from controlsvc.broker.process import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    MosquittoProcess,
    find_free_port,
    running_broker_pid,
)
from controlsvc.files import atomic_write

__all__ = ["LocalBroker"]

logger = logging.getLogger(__name__)

PORT_RETRIES = 3  # a port picked as free can be taken by someone else before the broker binds
DIRECTORY_MODE = 0o700  # holds the password file and the broker's data
FILE_MODE = 0o600


class LocalBroker:
    """A ``mosquitto`` on loopback with generated config, password file and ACL.

    ``accounts`` maps user names to plaintext passwords (the password file stores hashes).
    Every start rewrites the password file from them; with ``keep_other_accounts`` the accounts
    already in the file that ``accounts`` does not name (e.g. enclosures the service registered
    with ``add_or_update_account`` in an earlier run) are kept, hashes unchanged.
    ``config`` carries the tuning and the ports (0 = any free port, chosen at the first start
    and kept for restarts); paths left unset go into ``directory``. The ACL is
    ``render_acl(prefix, service_user, operator_user)`` unless ``config.acl_file`` names an
    existing file to use as it is (e.g. the shipped ``deploy/mosquitto/acl``).
    """

    def __init__(
        self,
        directory: Path | str,
        accounts: Mapping[str, str] | None = None,
        *,
        config: BrokerConfig | None = None,
        prefix: str = DEFAULT_PREFIX,
        service_user: str = SERVICE_USER,
        operator_user: str = OPERATOR_USER,
        keep_other_accounts: bool = False,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = START_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> None:
        self.directory = Path(directory).absolute()
        self._accounts: dict[str, str] = {}
        for user, password in (accounts or {}).items():
            self._accounts[validate_username(user)] = password
        base = config or BrokerConfig()
        if not {"information", "all"} & set(base.log_types):
            raise InvalidBrokerSetting(
                "LocalBroker needs log type 'information': it waits for the broker's"
                " 'running' and 'Reloading config.' log lines"
            )
        self.prefix = prefix
        self.service_user = service_user
        self._requested_ports = (base.port, base.service_port, base.enclosure_port)
        self._acl_text = (
            render_acl(prefix, service_user, operator_user) if base.acl_file is None else None
        )
        self._config = self._with_paths(base)
        self._keep_other_accounts = keep_other_accounts
        self._binary = binary
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: MosquittoProcess | None = None

    def _with_paths(self, config: BrokerConfig) -> BrokerConfig:
        d = self.directory
        run_as = config.run_as_user
        if run_as is None and os.geteuid() == 0:
            # As root, mosquitto would switch to user "mosquitto", which cannot read our 0600 files.
            run_as = pwd.getpwuid(0).pw_name
        return dataclasses.replace(
            config,
            password_file=config.password_file or d / "passwd",
            service_password_file=config.service_password_file or d / "passwd-service",
            acl_file=config.acl_file or d / "acl",
            persistence_location=config.persistence_location or d / "data",
            log_file=config.log_file or d / "mosquitto.log",
            pid_file=config.pid_file or d / "mosquitto.pid",
            run_as_user=run_as,
        )

    # -- what clients need ------------------------------------------------------------------------
    @property
    def config(self) -> BrokerConfig:
        """The effective config (ports are real numbers once the broker has started)."""
        return self._config

    @property
    def host(self) -> str:
        return self._config.host

    @property
    def port(self) -> int:
        """The main listener's port; 0 until the first ``start()`` picks one."""
        return self._config.port

    @property
    def service_port(self) -> int:
        """The service's listener (the service account only); 0 until the first ``start()``."""
        return self._config.service_port

    def port_for(self, user: str | None) -> int:
        """The listener ``user`` logs in on: the service's own, or the main one."""
        return self.service_port if user == self.service_user else self.port

    @property
    def enclosure_port(self) -> int | None:
        """The enclosure listener's port (client id forced to user name), if configured."""
        return self._config.enclosure_port

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the main listener (enclosures, operators)."""
        return self._url(self.port)

    @property
    def service_url(self) -> str:
        """``mqtt://host:port`` of the service's listener."""
        return self._url(self.service_port)

    def _url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{port}"

    @property
    def accounts(self) -> dict[str, str]:
        """A copy of ``{user: plaintext password}`` of every account."""
        return dict(self._accounts)

    @property
    def conf_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        assert self._config.log_file is not None
        return self._config.log_file

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def operator_sub_command(self, user: str = OPERATOR_USER, topic: str | None = None) -> str:
        """A ``mosquitto_sub`` line an operator can paste to watch the whole tree."""
        password = self._accounts.get(user, "<password>")
        topic = topic or f"{self.prefix}/#"
        return shlex.join(
            ["mosquitto_sub", "-h", self.host, "-p", str(self.port), "-V", "mqttv5",
             "-u", user, "-P", password, "-t", topic, "-v"]
        )  # fmt: skip

    def log_tail(self, lines: int = 30) -> str:
        if self._process is None:
            return ""
        return self._process.log_tail(lines)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> LocalBroker:
        """Write the files and start the broker; return once it accepts connections.

        A port given as 0 is picked free (retrying if another process takes it first). Raises
        ``MosquittoNotInstalled``, ``PortInUseError`` (a fixed port is taken),
        ``BrokerAlreadyRunning`` or ``BrokerStartError`` (with the broker's log tail).
        """
        if self.running:
            raise BrokerError(f"the broker in {self.directory} is already running")
        self._check_not_running_elsewhere()
        self._prepare_directory()
        attempts = PORT_RETRIES if 0 in self._requested_ports else 1
        for attempt in range(1, attempts + 1):
            self._pick_ports()
            process = self._write_files()
            try:
                process.start(self.start_timeout)
            except PortInUseError as exc:
                if attempt == attempts or exc.port not in self._picked_ports():
                    raise
                logger.info("port %d was taken before mosquitto bound it; picking again", exc.port)
                self._forget_picked_ports()
                continue
            self._process = process
            break
        return self

    def _check_not_running_elsewhere(self) -> None:
        """Refuse to rewrite the files of a broker an earlier run left behind."""
        assert self._config.pid_file is not None
        pid = running_broker_pid(self._config.pid_file, self.conf_file)
        if pid is not None:
            raise BrokerAlreadyRunning(
                f"a broker started from {self.directory} is still running as pid {pid} (an"
                f" earlier run did not stop it); stop it with: kill {pid}",
                pid=pid,
            )

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
        if self._config.persistence and self._config.persistence_location is not None:
            self._config.persistence_location.mkdir(
                parents=True, exist_ok=True, mode=DIRECTORY_MODE
            )

    def _ports(self) -> tuple[int, int, int | None]:
        return self._config.port, self._config.service_port, self._config.enclosure_port

    def _picked_ports(self) -> set[int]:
        """The ports chosen by ``_pick_ports`` (requested as 0), not given by the caller."""
        return {
            port
            for requested, port in zip(self._requested_ports, self._ports(), strict=True)
            if requested == 0 and port is not None
        }

    def _pick_ports(self) -> None:
        taken: set[int] = {p for p in self._ports() if p}
        chosen: list[int | None] = []
        for port in self._ports():
            if port == 0:
                port = find_free_port(self.host)
                while port in taken:
                    port = find_free_port(self.host)
                taken.add(port)
            chosen.append(port)
        port, service_port, enclosure_port = chosen
        assert port is not None
        assert service_port is not None
        self._config = dataclasses.replace(
            self._config, port=port, service_port=service_port, enclosure_port=enclosure_port
        )

    def _forget_picked_ports(self) -> None:
        requested_port, requested_service, requested_enclosure = self._requested_ports
        self._config = dataclasses.replace(
            self._config,
            port=self._config.port if requested_port else 0,
            service_port=self._config.service_port if requested_service else 0,
            enclosure_port=self._config.enclosure_port if requested_enclosure else 0,
        )

    def _write_files(self) -> MosquittoProcess:
        config = self._config
        assert config.password_file is not None
        assert config.service_password_file is not None
        assert config.acl_file is not None
        self._write_password_file(config.password_file)
        service = {u: pw for u, pw in self._accounts.items() if u == self.service_user}
        write_password_file(config.service_password_file, service)
        if self._acl_text is not None:
            atomic_write(config.acl_file, self._acl_text, mode=FILE_MODE)
        elif not config.acl_file.is_file():
            raise BrokerStartError(f"ACL file {config.acl_file} does not exist")
        atomic_write(self.conf_file, render_config(config), mode=FILE_MODE)
        ports = [config.port, config.service_port]
        ports += [config.enclosure_port] if config.enclosure_port else []
        return MosquittoProcess(
            self.conf_file,
            ports=ports,
            host=config.host,
            log_file=config.log_file,
            output_file=self.directory / "mosquitto.out",
            pid_file=config.pid_file,
            binary=self._binary,
        )

    def _write_password_file(self, path: Path) -> None:
        """Every account but the service's (which only its own listener knows)."""
        accounts = {u: pw for u, pw in self._accounts.items() if u != self.service_user}
        if not (self._keep_other_accounts and path.exists()):
            write_password_file(path, accounts)
            return
        hashes = read_password_file(path)
        hashes.pop(self.service_user, None)
        kept = [user for user in hashes if user not in accounts]
        hashes.update({user: hash_password(pw) for user, pw in accounts.items()})
        write_password_hashes(path, hashes)
        if kept:
            logger.info("kept %d other account(s) in %s", len(kept), path)

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: the broker saves retained messages and sessions); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            process.stop(self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for tests. Only what the last autosave wrote survives."""
        process, self._process = self._require_process(), None
        process.kill()

    def restart(self) -> None:
        """Stop cleanly and start again on the same ports, keeping the persistence file."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: reread the password and ACL files; return once the broker has done so."""
        self._require_process().reload()

    def _require_process(self) -> MosquittoProcess:
        if self._process is None or not self._process.running:
            raise BrokerError(f"the broker in {self.directory} is not running")
        return self._process

    # -- accounts ---------------------------------------------------------------------------------
    def set_account(self, user: str, password: str, *, reload: bool = True) -> None:
        """Add or change an account; a running broker applies it once reloaded (by default, now).

        A changed password disconnects the connections that used the old one.
        """
        validate_username(user)
        if self.running:
            add_or_update_account(self._password_file_of(user), user, password)
        self._accounts[user] = password
        if reload and self.running:
            self.reload()

    def remove_account(self, user: str, *, reload: bool = True) -> bool:
        """Remove an account; True if it existed. With ``reload`` (the default) a running broker
        disconnects the account's open connections and refuses new ones at once."""
        known = self._accounts.pop(user, None) is not None
        if self.running:
            remove_account(self._password_file_of(user), user)
            if reload:
                self.reload()
        return known

    def _password_file_of(self, user: str) -> Path:
        config = self._config
        path = config.service_password_file if user == self.service_user else config.password_file
        assert path is not None
        return path

    # -- context manager --------------------------------------------------------------------------
    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid {self.pid}" if self.running else "stopped"
        return f"<LocalBroker {self.url} {state} in {self.directory}>"
