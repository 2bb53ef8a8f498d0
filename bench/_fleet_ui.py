"""A simulated fleet behind the real stack, for the fleet view in a browser (the UI test and
``bench/ui_fleet.py`` share it).

``fleet_stack(count, status_interval_s)`` starts a ``Stack`` (broker, PostgreSQL, bridge, API
under gunicorn with its event streams), ``count`` simulated enclosures (``fleet_simulator``)
until every one is ``idle``, and gives them locations as a lab would: rooms of 500, racks of 50,
and every hundredth enclosure with no location.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from _support import ADMIN_EMAIL, ADMIN_PASSWORD, Stack, start_fleet  # noqa: E402

from fleet_simulator import Fleet, fleet_accounts  # noqa: E402

__all__ = ["ADMIN_EMAIL", "ADMIN_PASSWORD", "FleetStack", "fleet_stack", "location_of"]

ID_PREFIX = "ui"
ROOM_SIZE = 500
RACK_SIZE = 50
FLEET_START_S = 300.0
IDLE_TIMEOUT_S = 300.0


def location_of(index: int) -> str | None:
    """The location of the ``index``-th enclosure (0-based): "Room R/Rack X", or None."""
    if index % 100 == 99:
        return None
    return f"Room {1 + index // ROOM_SIZE}/Rack {chr(ord('A') + (index % ROOM_SIZE) // RACK_SIZE)}"


@dataclass
class FleetStack:
    stack: Stack
    fleet: Fleet
    ids: list[str]
    base: str
    before: Any = None  # what ``before_fleet`` returned

    @property
    def locations(self) -> dict[str, str | None]:
        return {eid: location_of(i) for i, eid in enumerate(self.ids)}


@contextlib.contextmanager
def fleet_stack(
    count: int,
    status_interval_s: float,
    *,
    keep: bool = False,
    before_fleet: Callable[[Stack], Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[FleetStack]:
    """``before_fleet(stack)`` runs once the stack is up, before the fleet starts: e.g. a paho
    client of this process (paho's ``select()`` loop cannot watch a socket numbered above
    1,024, and the fleet's 2,000 connections take those numbers)."""
    accounts = fleet_accounts(count, ID_PREFIX)
    ids = list(accounts)
    with Stack(status_interval_s=status_interval_s, keep=keep, env=env) as stack:
        broker = stack.broker(accounts)
        stack.database()
        stack.bridge()
        base = stack.api()
        before = before_fleet(stack) if before_fleet is not None else None
        fleet = Fleet(broker.host, broker.port, accounts, status_interval_s=status_interval_s)
        start_fleet(fleet, timeout=FLEET_START_S)
        try:
            stack.wait_db(
                "SELECT count(*) FROM enclosures WHERE state = 'idle'",
                lambda n: n == count,
                IDLE_TIMEOUT_S,
                f"all {count} enclosures idle",
            )
            _set_locations(stack, ids)
            yield FleetStack(stack, fleet, ids, base, before)
        finally:
            fleet.stop()


def _set_locations(stack: Stack, ids: list[str]) -> None:
    """As an edit through the API would: ``edited_at`` moves (the summary's ETag with it)."""
    from sqlalchemy import text

    from controlsvc.store.db import utcnow

    assert stack.engine is not None
    now = utcnow()
    with stack.engine.begin() as conn:
        conn.execute(
            text("UPDATE enclosures SET location = :location, edited_at = :now WHERE id = :id"),
            [{"id": eid, "location": location_of(i), "now": now} for i, eid in enumerate(ids)],
        )


def login(page: Any, base: str) -> None:
    """Log in as the stack's admin; returns once the fleet's heading is there."""
    page.goto(f"{base}/")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
