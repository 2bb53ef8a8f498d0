"""A process whose wall clock is shifted, as on an enclosure computer whose clock is wrong.

libfaketime (Debian ``faketime``) is preloaded into the process itself (with the ``faketime``
wrapper, the wrapper would be the process a test stops, and the agent would outlive it).

Only the wall clock is shifted: a wrong clock never moves ``CLOCK_MONOTONIC``. libfaketime
shifts it too unless told not to, and then every timed wait of a Python 3.11 process hangs:
CPython waits on a lock with ``sem_clockwait(CLOCK_MONOTONIC, deadline)``, which libfaketime
0.9.10 does not intercept, so a deadline computed from the shifted monotonic clock lies years
ahead of the kernel's. The agent's timers (status, the session start, the recorder's frames)
then only run when a message happens to wake it, which looks like an agent defect and is not.
With the monotonic clock left true, libfaketime 0.9.10 breaks ``time.sleep`` instead (EINVAL:
paho-mqtt's reconnect wait raises): ``faketime_site/sitecustomize.py`` makes it wait on an event.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LIBFAKETIME", "shifted_clock"]

LIBFAKETIME: Path | None = next(
    iter(
        sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
        + sorted(Path("/usr/lib").glob("faketime/libfaketime.so.1"))
    ),
    None,
)
"""libfaketime, where installed (``scripts/setup --test`` installs Debian ``faketime``)."""

SITE = Path(__file__).with_name("faketime_site")  # its sitecustomize mends time.sleep
MISSING = "needs libfaketime (Debian faketime; scripts/setup --test installs it)"


def shifted_clock(seconds: int) -> dict[str, str]:
    """The environment that runs a process with its wall clock ``seconds`` ahead (behind if
    negative) and its monotonic clock true (Python processes: ``time.sleep`` mended, see the
    module doc). Raises ``LookupError`` without libfaketime."""
    if LIBFAKETIME is None:
        raise LookupError(MISSING)
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": f"{seconds:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])),
    }
