"""Which bridge of several runs the timers: the holder of the ``timers`` lease.

Every bridge writes what it receives (the shared subscription decides who gets what), but the
timers (liveness, command time-outs, re-publishing, purging, and the whole session driver)
run in one bridge only: the one holding the lease (``controlsvc.store.leases``). It renews the
lease every ``ttl / 3``; if it dies, another takes the lease once it has run out (``ttl``
after the last renewal) and carries on from the database. A bridge stopped cleanly gives the
lease up, so another takes it at its next tick.

Correctness does not depend on the lease: every timer step is idempotent and takes its rows
with ``SKIP LOCKED``, so two bridges that both believe they lead (one paused past its lease)
do no harm. The lease keeps the work, the alerts and the mails in one place.

A bridge believes it leads only until ``ttl`` after it *sent* its last successful renewal, by
its own monotonic clock: the database counts the lease from when it ran the statement, which
is later, so the bridge stops first. When the database is away, renewals fail and the lease
lapses here too; it is taken again once the database is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from controlsvc.bridge.stats import BridgeStats, LogThrottle
from controlsvc.store import leases
from controlsvc.store.db import Database

log = logging.getLogger(__name__)

__all__ = ["Leadership"]


class Leadership:
    """This bridge's claim on lease ``name``: ``refresh()`` each tick, ``leads`` to ask."""

    def __init__(
        self,
        database: Database,
        holder: str,
        *,
        ttl_s: float,
        name: str = leases.TIMERS,
        stats: BridgeStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._stats = stats
        self.holder = holder
        self.name = name
        self.ttl_s = ttl_s
        self.renew_every_s = ttl_s / 3
        self._clock = clock
        self._valid_until = float("-inf")
        self._next_try = float("-inf")
        self.term: int | None = None  # the lease's term while this bridge holds it
        self._throttle = LogThrottle(60.0)

    @property
    def leads(self) -> bool:
        return self._clock() < self._valid_until

    def refresh(self) -> bool:
        """Take or renew the lease when due; True while this bridge holds it."""
        started = self._clock()
        if started < self._next_try:
            return self._report(self.leads)
        self._next_try = started + self.renew_every_s
        return self._report(self._renew(started))

    def _report(self, leads: bool) -> bool:
        if self._stats is not None:
            self._stats.leads = leads
        return leads

    def _renew(self, started: float) -> bool:
        try:
            with self._db.sessionmaker() as session:
                term = leases.take(session, self.name, self.holder, self.ttl_s)
                session.commit()
        except Exception as exc:  # the database is away: the lease lapses on its own
            if self._throttle.allow("renew") is not None:
                log.warning(
                    "bridge lease %r: cannot renew: %s: %s", self.name, type(exc).__name__, exc
                )
            if not self.leads:
                self._lost()
            return self.leads
        if term is None:  # another bridge holds it
            self._valid_until = float("-inf")
            self._lost()
            return False
        self._valid_until = started + self.ttl_s
        if term != self.term:
            log.info("this bridge (%s) runs the timers now (lease term %d)", self.holder, term)
        self.term = term
        return True

    def _lost(self) -> None:
        if self.term is not None:
            log.warning("this bridge (%s) no longer runs the timers", self.holder)
        self.term = None

    def release(self) -> None:
        """Give the lease up (a clean stop), so another bridge takes it at its next tick."""
        held = self.term is not None
        self._valid_until = float("-inf")
        self.term = None
        self._report(False)
        if not held:
            return
        try:
            with self._db.sessionmaker() as session:
                leases.release(session, self.name, self.holder)
                session.commit()
        except Exception as exc:  # the lease runs out instead
            log.warning("cannot give up the bridge lease: %s: %s", type(exc).__name__, exc)
