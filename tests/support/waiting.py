"""Wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0  # generous: CI machines stall; a passing wait returns at once anyway
DEFAULT_INTERVAL_S = 0.02


def wait_for(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = DEFAULT_INTERVAL_S,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises ``AssertionError`` with ``message`` (a string, or a callable for a message built at
    failure time, e.g. with the state observed last) after ``timeout`` seconds. Exceptions from
    ``predicate`` propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g} s)")
        time.sleep(interval)
