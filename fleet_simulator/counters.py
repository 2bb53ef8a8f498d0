"""What a fleet has done so far: running totals per loop, and the summed snapshot callers read.

Each ``LoopCounters`` is only written by its loop's thread; readers take ``FleetCounters``
snapshots (integers read under the GIL, so a snapshot is consistent enough for progress and
benchmarks, which wait for totals to settle anyway).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FleetCounters", "LoopCounters"]


@dataclass(slots=True)
class LoopCounters:
    """Totals since the fleet started, for the enclosures of one loop."""

    connects: int = 0  # CONNACKs that accepted the connection
    connect_refused: int = 0  # CONNACKs that refused it (bad credentials, not authorised...)
    connect_errors: int = 0  # TCP connection attempts that failed or timed out
    reconnects: int = 0  # connections made again after an unexpected loss
    disconnects_unexpected: int = 0  # connections lost without us asking
    births: int = 0  # times an enclosure reached ready (state init, status, subscribe, ready)
    states_sent: int = 0
    statuses_sent: int = 0
    statuses_acked: int = 0  # statuses the broker acknowledged (PUBACK success)
    events_sent: int = 0
    acks_sent: Counter[str] = field(default_factory=Counter)  # by result
    publish_refused: int = 0  # PUBACKs with a failure reason (e.g. not authorised by the ACL)
    commands_received: int = 0
    commands_invalid: int = 0
    desired_received: int = 0
    desired_invalid: int = 0
    kills: int = 0


@dataclass(frozen=True, slots=True)
class FleetCounters:
    """A snapshot of the whole fleet: totals summed over loops, and gauges counted now."""

    enclosures: int
    connected: int  # enclosures with an accepted connection now
    ready: int  # enclosures that finished their birth and are connected now
    recording: int  # enclosures recording now
    connects: int
    connect_refused: int
    connect_errors: int
    reconnects: int
    disconnects_unexpected: int
    births: int
    states_sent: int
    statuses_sent: int
    statuses_acked: int
    events_sent: int
    acks_sent: dict[str, int]
    publish_refused: int
    commands_received: int
    commands_invalid: int
    desired_received: int
    desired_invalid: int
    kills: int
    errors: int  # exceptions caught in the loops (each one is logged)

    @classmethod
    def total(
        cls, loops: list[LoopCounters], *, gauges: dict[str, Any], errors: int
    ) -> FleetCounters:
        sums: dict[str, Any] = {}
        for f in dataclasses.fields(LoopCounters):
            if f.name == "acks_sent":
                acks: Counter[str] = Counter()
                for c in loops:
                    acks.update(c.acks_sent)
                sums["acks_sent"] = dict(sorted(acks.items()))
            else:
                sums[f.name] = sum(getattr(c, f.name) for c in loops)
        return cls(**gauges, **sums, errors=errors)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
