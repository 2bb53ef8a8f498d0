"""A child process kept running: when it dies, say how (its exit code or the signal that killed
it) and start it again after a pause that doubles while it keeps dying quickly (the demo's
enclosure agents: a lab computer's service manager does the same for the real ones).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

__all__ = ["MAX_RESTART_DELAY_S", "STABLE_AFTER_S", "Supervisor", "describe_exit", "supervised"]

# A child that ran this long before dying is restarted after the first pause again.
STABLE_AFTER_S = 60.0
# The pause never grows past this.
MAX_RESTART_DELAY_S = 60.0
# A child asked to stop gets this long to do so before it is killed.
STOP_TIMEOUT_S = 15.0


def describe_exit(returncode: int) -> str:
    """How a child ended, in words: ``killed by signal SIGKILL (9)``, ``exited with code 3``."""
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by signal {name} ({number})"
    if returncode == 0:
        return "exited with code 0 (it stopped on its own)"
    return f"exited with code {returncode}"


class Supervisor:
    """Runs ``argv``; restarts it ``restart_after_s`` after each unexpected exit (0: never)."""

    def __init__(
        self, argv: list[str], env: dict[str, str], name: str, *, restart_after_s: float
    ) -> None:
        self.argv = argv
        self.env = env
        self.name = name
        self.restart_after_s = restart_after_s
        self.restarts = 0
        self.last_exit: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._watch, name=f"supervise {name}", daemon=True)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._proc = subprocess.Popen(self.argv, env=self.env)  # noqa: S603 - our own argv
            self._started = time.monotonic()
            log.info("started %s (pid %d)", self.name, self._proc.pid)

    def _watch(self) -> None:
        delay = self.restart_after_s
        while not self._stopping.is_set():
            with self._lock:
                proc = self._proc
            if proc is None:
                return
            code = proc.wait()
            _forget_metrics(proc.pid)
            if self._stopping.is_set():
                return
            self.last_exit = describe_exit(code)
            if self.restart_after_s <= 0:
                log.warning("%s (pid %d) died: %s", self.name, proc.pid, self.last_exit)
                return
            if time.monotonic() - self._started >= STABLE_AFTER_S:
                delay = self.restart_after_s
            log.warning(
                "%s (pid %d) died: %s; restarting it in %g s",
                self.name,
                proc.pid,
                self.last_exit,
                delay,
            )
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            self._spawn()
            delay = min(delay * 2, MAX_RESTART_DELAY_S)

    def stop(self) -> None:
        """Stop supervising, then the child (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``)."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %g s: killing it", self.name, STOP_TIMEOUT_S)
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        if proc is not None:
            _forget_metrics(proc.pid)
            log.info("%s stopped (%s)", self.name, describe_exit(proc.returncode))


def _forget_metrics(pid: int) -> None:
    """A dead child's live gauges (queue depth, open streams) must not outlive it."""
    from controlsvc import metrics

    metrics.process_exited(pid)


@contextmanager
def supervised(
    argv: list[str], env: dict[str, str], name: str, *, restart_after_s: float
) -> Iterator[Supervisor]:
    supervisor = Supervisor(argv, env, name, restart_after_s=restart_after_s)
    supervisor.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
