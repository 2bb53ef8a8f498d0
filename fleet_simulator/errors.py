"""Errors of the fleet simulator.

::

    SimulatorError              base of everything the simulator raises on purpose
    ├── AccountsError           an accounts file that cannot be read or written (file, line)
    ├── FleetNotReady           enclosures that did not finish their birth in time (names them)
    └── UnknownEnclosure        (also KeyError) an id that is not part of this fleet
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["AccountsError", "FleetNotReady", "SimulatorError", "UnknownEnclosure"]

SHOWN_IDS = 10  # ids quoted in an error message; the rest are counted


class SimulatorError(Exception):
    """Base of every error the simulator raises on purpose."""


class AccountsError(SimulatorError):
    """An accounts file (``eid:password`` lines) that cannot be read or written."""


class FleetNotReady(SimulatorError):
    """Some enclosures did not reach ``ready`` within the timeout."""

    def __init__(self, missing: Sequence[str], total: int, timeout: float) -> None:
        shown = ", ".join(missing[:SHOWN_IDS])
        more = f" and {len(missing) - SHOWN_IDS} more" if len(missing) > SHOWN_IDS else ""
        super().__init__(
            f"{len(missing)} of {total} simulated enclosures were not ready after {timeout:g} s:"
            f" {shown}{more}"
        )
        self.missing = list(missing)


class UnknownEnclosure(SimulatorError, KeyError):
    """An enclosure id that this fleet does not simulate."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown enclosure"
