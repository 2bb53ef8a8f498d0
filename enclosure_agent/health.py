"""Health of the enclosure computer: system figures (psutil), disk, clock synchronisation.

* ``system_status(recording_root)``: uptime, load, RAM, disk of the recording volume,
  temperature where the OS reports one, OS release and host name.
* ``ntp_synchronized()``: ``timedatectl show -p NTPSynchronized`` where systemd answers,
  else the kernel's ``adjtimex`` clock state, else ``None`` (unknown).
* ``ClockMonitor``: the offset of the local clock from the service's, estimated from the
  ``at`` of fresh ``service/state`` messages, flagged above a threshold once per excursion;
  ``service_now()`` is the service's time as this enclosure best knows it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import platform
import shutil
import socket
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psutil

from enclosure_agent import __version__
from schemas.status import ClockStatus, SystemStatus
from schemas.types import utc_now

__all__ = [
    "ClockMonitor",
    "DiskSpace",
    "disk_space",
    "ntp_synchronized",
    "system_status",
]

log = logging.getLogger(__name__)

TIMEDATECTL_TIMEOUT_S = 2.0  # systemd answers in milliseconds; a hung D-Bus must not hang us
NTP_CACHE_S = 60.0  # synchronisation changes slowly; asking every heartbeat costs a process
OFFSET_SAMPLES = 9  # the estimate is the least delayed of the last samples
# A local clock step (wall clock moved against the monotonic clock) larger than this makes the
# samples taken before it meaningless: they are dropped.
CLOCK_STEP_S = 1.0
SKEW_CLEAR_RATIO = 0.5  # an excursion ends when the offset is back below half the threshold
TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"
TIMEX_BUFFER_BYTES = 512  # struct timex is ~208 bytes on 64-bit Linux; all zero = read only
_TEMPERATURE_SENSORS = (
    "coretemp",
    "k10temp",
    "cpu_thermal",
    "cpu-thermal",
    "soc_thermal",
    "acpitz",
)


@dataclass(frozen=True, slots=True)
class DiskSpace:
    total_bytes: int
    free_bytes: int


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent (the recording root may not exist yet)."""
    candidate = path.absolute()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return candidate


def disk_space(path: Path) -> DiskSpace:
    """Total and free bytes (for an unprivileged user) of the volume holding ``path``."""
    usage = shutil.disk_usage(existing_ancestor(path))
    return DiskSpace(usage.total, usage.free)


@functools.cache
def _os_release() -> str:
    pretty = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.partition("=")[2].strip().strip('"')
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty} ({kernel})" if pretty else kernel


def _temperature_c() -> float | None:
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return None
    try:
        sensors = reader()
    except (OSError, RuntimeError):
        return None
    for name in (*_TEMPERATURE_SENSORS, *sensors):
        readings = sensors.get(name)
        if readings:
            return float(readings[0].current)
    return None


def system_status(recording_root: Path) -> SystemStatus:
    """The ``system`` part of the status heartbeat."""
    memory = psutil.virtual_memory()
    disk = disk_space(recording_root)
    load_1, load_5, load_15 = os.getloadavg()
    return SystemStatus(
        uptime_s=max(0.0, time.time() - psutil.boot_time()),
        load_1=load_1,
        load_5=load_5,
        load_15=load_15,
        ram_total_bytes=memory.total,
        ram_free_bytes=memory.available,
        disk_total_bytes=disk.total_bytes,
        disk_free_bytes=disk.free_bytes,
        temperature_c=_temperature_c(),
        agent_version=__version__,
        os_release=_os_release(),
        hostname=socket.gethostname(),
    )


def _timedatectl() -> bool | None:
    binary = shutil.which("timedatectl")
    if binary is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 (fixed arguments, binary from PATH)
            [binary, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=TIMEDATECTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    answer = done.stdout.strip().lower()
    if done.returncode != 0 or answer not in ("yes", "no"):
        return None
    return answer == "yes"


def _adjtimex() -> bool | None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None or platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        buffer = ctypes.create_string_buffer(TIMEX_BUFFER_BYTES)  # modes = 0: only read
        state = int(libc.adjtimex(buffer))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


_ntp_cache: tuple[float, bool | None] | None = None


def ntp_synchronized(*, fresh: bool = False) -> bool | None:
    """Whether the OS says its clock is NTP-synchronised; None when it cannot tell."""
    global _ntp_cache
    now = time.monotonic()
    if not fresh and _ntp_cache is not None and now - _ntp_cache[0] < NTP_CACHE_S:
        return _ntp_cache[1]
    answer = _timedatectl()
    if answer is None:
        answer = _adjtimex()
    _ntp_cache = (now, answer)
    return answer


class ClockMonitor:
    """Estimates ``local - service`` clock offset from fresh ``service/state`` messages.

    A sample is ``received_at - at``: the true offset plus the time the message spent on its
    way, which is never negative. So the estimate is the smallest of the last samples (as NTP's
    clock filter picks the least delayed one): a copy delivered late (queued while the agent
    was away, held in a stalled connection) only adds a larger sample and cannot move it.
    A step of the local clock (seen against the monotonic clock) drops the older samples.

    ``sample`` returns the offset when an excursion above ``threshold_s`` begins (the caller
    emits one ``clock_skew`` event), else None. The excursion ends when the estimate falls
    below half the threshold.
    """

    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self._samples: deque[float] = deque(maxlen=OFFSET_SAMPLES)
        self._last: tuple[datetime, float] | None = None  # local wall and monotonic times
        self._assumed: float | None = None
        self.skewed = False

    def assume(self, offset_s: float) -> None:
        """Use ``offset_s`` (measured by an earlier run) until the first sample arrives."""
        self._assumed = offset_s

    @property
    def offset_s(self) -> float | None:
        if not self._samples:
            return self._assumed
        return min(self._samples)

    @property
    def known(self) -> bool:
        return self.offset_s is not None

    def service_now(self, local: datetime | None = None) -> datetime:
        """The service's time at local time ``local`` (default now); the local time itself
        while no offset is known."""
        local = local or utc_now()
        offset = self.offset_s
        return local if offset is None else local - timedelta(seconds=offset)

    def sample(
        self, service_at: datetime, received_at: datetime, received_monotonic: float | None = None
    ) -> float | None:
        if received_monotonic is not None:
            if self._last is not None:
                wall = (received_at - self._last[0]).total_seconds()
                if abs(wall - (received_monotonic - self._last[1])) > CLOCK_STEP_S:
                    log.info("the local clock was stepped; earlier clock samples dropped")
                    self._samples.clear()
            self._last = (received_at, received_monotonic)
        self._samples.append((received_at - service_at).total_seconds())
        offset = self.offset_s
        assert offset is not None
        if not self.skewed and abs(offset) > self.threshold_s:
            self.skewed = True
            log.warning(
                "clock skew: local clock is %+.3f s off the service's (threshold %.3g s)",
                offset,
                self.threshold_s,
            )
            return offset
        if self.skewed and abs(offset) < self.threshold_s * SKEW_CLEAR_RATIO:
            self.skewed = False
            log.info("clock skew over: offset now %+.3f s", offset)
        return None

    def status(self) -> ClockStatus:
        return ClockStatus(
            ntp_synchronized=ntp_synchronized(), offset_s=self.offset_s, skewed=self.skewed
        )
