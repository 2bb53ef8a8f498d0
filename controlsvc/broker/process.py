"""Run one ``mosquitto`` process from a config file: start it and wait until it listens, reload
it, stop it cleanly. ``LocalBroker`` builds on this; tests also run the shipped production config
with it."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from controlsvc.broker.errors import (
    BrokerAlreadyRunning,
    BrokerError,
    BrokerStartError,
    MosquittoNotInstalled,
    PortInUseError,
)

__all__ = [
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "MosquittoProcess",
    "find_free_port",
    "mosquitto_binary",
    "probe",
    "running_broker_pid",
]

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0  # a broker with a large persistence file takes a moment to load it
STOP_TIMEOUT_S = 10.0  # SIGTERM makes mosquitto save its persistence file before exiting
RELOAD_TIMEOUT_S = 5.0  # SIGHUP is handled on the broker's next loop turn, normally within ms
POLL_INTERVAL_S = 0.02  # how often start-up and reload are checked
PROBE_TIMEOUT_S = 1.0  # one MQTT CONNECT/CONNACK exchange on loopback
LOG_TAIL_LINES = 30  # broker log lines quoted in a start-up error
LOG_TAIL_BYTES = 64 * 1024  # read no more than this from the end of a long-running broker's log

# Where Debian and Homebrew put the binary when /usr/sbin is not on PATH (ordinary users).
_FALLBACK_BINARIES = (
    "/usr/sbin/mosquitto",
    "/usr/local/sbin/mosquitto",
    "/opt/homebrew/sbin/mosquitto",
)
_RUNNING_RE = re.compile(r"mosquitto version \S+ running")
_RELOADING = "Reloading config."
_ADDRESS_IN_USE = "Address already in use"
# find_free_port: ports picked at random from here up to the ephemeral range (if it leaves at
# least the span), a few tries, else any free port the kernel gives.
CHOSEN_PORTS_FROM = 20000
CHOSEN_PORTS_MIN_SPAN = 2000
CHOSEN_PORT_TRIES = 20
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
_OPENING_RE = re.compile(r"Opening ipv[46] listen socket on port (\d+)")
# MQTT 3.1.1 CONNECT: clean session, keepalive 60 s, empty client id, no credentials. Any broker
# answers it with a CONNACK (refused here, since anonymous clients are not allowed): proof that
# the broker's event loop is turning, not just that a socket accepts connections.
_PROBE_CONNECT = (
    bytes((0x10, 0x0C, 0x00, 0x04)) + b"MQTT" + bytes((0x04, 0x02, 0x00, 0x3C, 0x00, 0x00))
)
_CONNACK = 0x20


def mosquitto_binary(explicit: str | os.PathLike[str] | None = None) -> str:
    """Path of the ``mosquitto`` broker binary; ``MosquittoNotInstalled`` says how to get it."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise MosquittoNotInstalled(f"mosquitto binary {str(path)!r} does not exist or cannot run")
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _FALLBACK_BINARIES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise MosquittoNotInstalled(
        "mosquitto is not installed (looked on PATH and in "
        + ", ".join(_FALLBACK_BINARIES)
        + "); install the Debian package: sudo apt-get install mosquitto mosquitto-clients"
    )


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody uses right now, below the kernel's ephemeral range where it can.

    A port from that range may meanwhile become the source port of any outgoing connection (a
    client reconnecting, a database connection), and a broker started again on its port (after
    kill -9, or the demo's next run) would find it in use. Below the range only an explicit
    bind takes it. Another process may still take it first.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = ephemeral_port_range()[0]
    if low - CHOSEN_PORTS_FROM >= CHOSEN_PORTS_MIN_SPAN:
        for _ in range(CHOSEN_PORT_TRIES):
            port = CHOSEN_PORTS_FROM + secrets.randbelow(low - CHOSEN_PORTS_FROM)
            if _bindable(family, host, port):
                return port
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        picked: int = sock.getsockname()[1]
        return picked


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands out as source ports (Linux's default where it cannot say)."""
    try:
        low, high = Path(EPHEMERAL_RANGE_FILE).read_text(encoding="ascii").split()
        return int(low), int(high)
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE


def _bindable(family: socket.AddressFamily, host: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when an MQTT broker answers a CONNECT on ``host:port`` with a CONNACK."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_PROBE_CONNECT)
            first = sock.recv(1)
    except OSError:
        return False
    return first == bytes((_CONNACK,))


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    return True


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def running_broker_pid(pid_file: Path, conf_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive and was started with ``conf_file``."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid > 0 and _pid_alive(pid) and str(conf_file) in _cmdline(pid):
        return pid
    return None


def _terminate_at_exit(popen: subprocess.Popen[bytes]) -> None:
    """Safety net run at interpreter exit for a broker nobody stopped: no orphaned brokers."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


class _LogReader:
    """Text a file gained since a given moment (the file may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except FileNotFoundError:
            self.offset = 0

    def new_text(self) -> str:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class MosquittoProcess:
    """A ``mosquitto -c conf_file`` child process.

    ``ports`` are the config's listeners on ``host``; the first must be plain MQTT (it is the
    one probed after start and reload). ``log_file`` is the config's
    ``log_dest file`` (None when it logs to stderr) and ``output_file`` receives the process's
    stdout and stderr, where mosquitto reports errors that happen before its log is open.
    The config must log at level ``information``: start and reload wait for the broker's
    "running" and "Reloading config." lines.
    """

    def __init__(
        self,
        conf_file: Path,
        *,
        ports: Sequence[int],
        output_file: Path,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        pid_file: Path | None = None,
        binary: str | os.PathLike[str] | None = None,
    ) -> None:
        if not ports:
            raise ValueError("MosquittoProcess needs at least one port to wait for")
        self.conf_file = Path(conf_file)
        self.ports = tuple(ports)
        self.host = host
        self.log_file = log_file
        self.output_file = output_file
        self.pid_file = pid_file
        self._binary = binary
        self._popen: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], MosquittoProcess] | None = None
        self._readers = [_LogReader(output_file)]
        if log_file is not None:
            self._readers.insert(0, _LogReader(log_file))

    # -- state ------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the broker's log file and of its stderr."""
        parts = []
        for path in [r.path for r in self._readers]:
            try:
                with path.open("rb") as handle:
                    size = handle.seek(0, os.SEEK_END)
                    handle.seek(max(0, size - LOG_TAIL_BYTES))
                    text = handle.read().decode("utf-8", errors="replace")
            except FileNotFoundError:
                continue
            tail = text.splitlines()[-lines:]
            if tail:
                parts.append(f"[{path.name}]\n" + "\n".join(tail))
        return "\n".join(parts)

    def _new_text(self) -> str:
        return "\n".join(reader.new_text() for reader in self._readers)

    def _mark(self) -> None:
        for reader in self._readers:
            reader.mark()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Launch the broker; return once it logged "running" and the first port accepts.

        Raises ``PortInUseError`` when a port is taken, ``BrokerAlreadyRunning`` when the pid file
        names a live broker of this config, and ``BrokerStartError`` (with the log tail) when
        the broker exits or does not listen within ``timeout`` seconds.
        """
        if self.running:
            raise BrokerError(f"mosquitto is already running (pid {self.pid})")
        binary = mosquitto_binary(self._binary)
        self._check_stale_pid_file()
        self._mark()
        self.output_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.output_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as output:
            self._popen = subprocess.Popen(  # noqa: S603 (our own binary and config path)
                [binary, "-c", str(self.conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.conf_file.parent,
                # Its own session: a Ctrl-C in the terminal reaches us, and we stop the broker
                # last, after the service has said goodbye through it.
                start_new_session=True,
            )
        self._finalizer = weakref.finalize(self, _terminate_at_exit, self._popen)
        try:
            self._wait_until_listening(timeout)
        except BaseException:
            self._discard()
            raise
        logger.info(
            "mosquitto running (pid %d) on %s port %s, config %s",
            self._popen.pid,
            self.host,
            ", ".join(map(str, self.ports)),
            self.conf_file,
        )

    def _check_stale_pid_file(self) -> None:
        if self.pid_file is None:
            return
        pid = running_broker_pid(self.pid_file, self.conf_file)
        if pid is not None:
            raise BrokerAlreadyRunning(
                f"a mosquitto started with {self.conf_file} is still running as pid {pid}"
                f" (an earlier run did not stop it); stop it with: kill {pid}",
                pid=pid,
            )
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()  # stale: its broker died without cleaning up

    def _wait_until_listening(self, timeout: float) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self._popen.poll()
            text = self._new_text()
            if code is not None:
                self._raise_exited(code, text)
            # "running" is logged once every listener is open; a TCP connect to the first one
            # (plain MQTT; the others may be TLS, where a bare connect logs an OpenSSL error)
            # confirms it is reachable on the configured address.
            if _RUNNING_RE.search(text) and _accepts(self.host, self.ports[0]):
                return
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"mosquitto (config {self.conf_file}) did not listen on {self.host} port"
                    f" {', '.join(map(str, self.ports))} within {timeout:g} s",
                    log_tail=self.log_tail(),
                )
            time.sleep(POLL_INTERVAL_S)

    def _raise_exited(self, code: int, text: str) -> None:
        tail = self.log_tail()
        if _ADDRESS_IN_USE in text:
            before = text[: text.index(_ADDRESS_IN_USE)]
            opened = _OPENING_RE.findall(before)
            port = int(opened[-1]) if opened else self.ports[0]
            raise PortInUseError(
                f"port {port} on {self.host} is already in use by another process; choose"
                " another port (or 0 for any free one) or stop the other process",
                host=self.host,
                port=port,
                log_tail=tail,
            )
        raise BrokerStartError(
            f"mosquitto exited with code {code} during start-up (config {self.conf_file})",
            log_tail=tail,
        )

    def reload(self, timeout: float = RELOAD_TIMEOUT_S) -> None:
        """Make the broker reread its password and ACL files (SIGHUP); return once it did.

        mosquitto 2.0 rechecks connected clients against the new password file: a client whose
        account was removed, or whose password changed, is disconnected. Every later message is
        checked against the new ACL.
        """
        popen = self._require_running()
        self._mark()
        popen.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while _RELOADING not in self._new_text():
            if popen.poll() is not None:
                raise BrokerStartError(
                    f"mosquitto exited with code {popen.returncode} while reloading",
                    log_tail=self.log_tail(),
                )
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not log a reload within {timeout:g} s")
            time.sleep(POLL_INTERVAL_S)
        # The reload runs to completion in the loop turn that logged it; a CONNACK to a new
        # connection proves that turn is over.
        while not probe(self.host, self.ports[0]):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise BrokerError("mosquitto stopped answering after a reload")
            time.sleep(POLL_INTERVAL_S)
        logger.info("mosquitto (pid %d) reloaded its password and ACL files", popen.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (the broker saves its persistence file), wait, SIGKILL after ``timeout``.

        Returns the exit code, or None if it was not running. Safe to call twice.
        """
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "mosquitto (pid %d) did not stop within %g s; killing it", popen.pid, timeout
                )
                popen.kill()
                popen.wait()
        code = popen.returncode
        logger.info("mosquitto (pid %d) stopped with exit code %s", popen.pid, code)
        self._discard()
        return code

    def kill(self) -> None:
        """SIGKILL without warning (tests: a broker crash; no persistence save)."""
        popen = self._require_running()
        popen.kill()
        popen.wait()
        logger.info("mosquitto (pid %d) killed", popen.pid)
        self._discard()

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._popen is None or self._popen.poll() is not None:
            raise BrokerError("mosquitto is not running")
        return self._popen

    def _discard(self) -> None:
        popen, self._popen = self._popen, None
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
