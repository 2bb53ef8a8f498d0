"""What an enclosure's messages mean: its derived state, and whether a message is news.

Pure functions, no I/O (``controlsvc.store.enclosures`` applies them to the database).

Derived state (``derive_state``)::

    lifecycle None / disconnected   -> offline   (never seen, or clean shutdown)
    lifecycle lost (the Will)        -> lost      (at once; reason "connection lost")
    init / ready, status has a fault -> error
    init / ready, status recording   -> recording
    init / ready                     -> idle
    silence > lost_after x interval  -> lost      (``enclosures.mark_silent``, the bridge's timer)

Staleness (the bridge may see messages twice, late, or out of order). Messages are ordered by
``bounded_at``: the claimed ``at`` corrected by the clock skew the enclosure reports, and never
more than ``FUTURE_TOLERANCE_S`` after the message arrived (the claimed ``at`` is kept in the
stored status and the history):

- status (``judge_status``): same ``boot_id`` and ``seq`` not above the stored one -> duplicate
  or stale, unless the stored ``seq`` is more than ``SEQ_BACKLOG`` above it and its ``at`` is
  newer (one status with a huge ``seq``, a corrupted counter or forged, cannot make the boot's
  next ones stale); another ``boot_id`` replaces the stored status only when its ``at`` is
  newer.
- state (``judge_lifecycle``): within a boot messages apply in arrival order, except one of
  an older connection than the stored one (a Will replayed late); a message of another boot
  older than the stored lifecycle is stale (typically the previous run's Will). A Will followed
  in the same batch by its enclosure's newer connection or boot is superseded
  (``superseded_wills``): the replay after a broker restart writes no 0-second ``lost``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from schemas.enums import EnclosureState, Lifecycle

__all__ = [
    "LIVE_STATES",
    "FUTURE_TOLERANCE_S",
    "REASON_MAX",
    "SEQ_BACKLOG",
    "Liveness",
    "Verdict",
    "bounded_at",
    "clip_reason",
    "clock_skew",
    "derive_state",
    "judge_lifecycle",
    "judge_status",
    "recording_session",
    "status_cause",
    "status_fault",
    "status_signature",
    "superseded_wills",
]

LIVE_STATES = frozenset({EnclosureState.IDLE, EnclosureState.RECORDING, EnclosureState.ERROR})
REASON_MAX = 200  # the transitions table's reason column
# How far a message's time (corrected by its enclosure's reported skew) may run ahead of its
# arrival: unflagged skew (the agents flag 2 s) plus jitter. Beyond, it counts as sent at this
# bound, so one message "from the future" cannot make those after it look stale for longer.
FUTURE_TOLERANCE_S = 5.0
# How far a status of one boot may arrive behind the newest stored (redelivered, reordered): a
# seq further behind, and newer, means the stored seq was not the agent's count.
SEQ_BACKLOG = 1000
# A reported clock offset beyond this is not believed (and cannot overflow a datetime).
MAX_OFFSET_S = 10 * 365 * 86400.0


@dataclass(frozen=True, slots=True)
class Liveness:
    """How long an enclosure may stay silent before it counts as lost."""

    status_interval_s: float = 5.0
    lost_after_intervals: float = 3.0

    def silence_limit(self, interval_s: float | None = None) -> timedelta:
        """``lost_after_intervals`` x the enclosure's interval (else the default one)."""
        return timedelta(seconds=(interval_s or self.status_interval_s) * self.lost_after_intervals)


class Verdict(StrEnum):
    """What a received message is, compared with what is stored."""

    NEW = "new"  # newer than what is stored: applied
    DUPLICATE = "duplicate"  # the same message again (QoS 1 redelivery, retained replay)
    STALE = "stale"  # older than what is stored (out of order, a previous boot)


def clip_reason(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


def status_fault(status: Mapping[str, Any] | None) -> str | None:
    """The fault a status reports (``last_error``, a camera error, a disconnected camera)."""
    if not status:
        return None
    if status.get("last_error"):
        return str(status["last_error"])
    camera = status.get("camera") or {}
    if camera.get("error"):
        return f"camera: {camera['error']}"
    if camera and not camera.get("connected", True):
        return f"camera {camera.get('source') or ''} not connected".replace("  ", " ")
    return None


def clock_skew(status: Mapping[str, Any] | None) -> float | None:
    """The clock offset (enclosure - service, s) when the status says it is skewed, else None."""
    clock = (status or {}).get("clock") or {}
    offset = clock.get("offset_s")
    if not clock.get("skewed") or not isinstance(offset, int | float):
        return None
    return float(offset)


def bounded_at(claimed: datetime, received_at: datetime, offset_s: float | None) -> datetime:
    """When a message was sent, by the service's clock, as far as can be told: its claimed
    ``at`` less the enclosure's measured skew (``offset_s``, enclosure - service), never later
    than ``FUTURE_TOLERANCE_S`` after it arrived (``received_at``, the service's clock)."""
    at = claimed
    if offset_s is not None and math.isfinite(offset_s) and abs(offset_s) <= MAX_OFFSET_S:
        at = claimed - timedelta(seconds=offset_s)
    return min(at, received_at + timedelta(seconds=FUTURE_TOLERANCE_S))


def status_cause(status: Mapping[str, Any] | None) -> str | None:
    """What the status gives as a likely cause of not recording: its fault (the agent's own
    words), else a skewed clock; None when it reports neither."""
    fault = status_fault(status)
    if fault is not None:
        return f"the enclosure reports: {fault}"
    offset = clock_skew(status)
    if offset is not None:
        return f"the enclosure's clock is {offset:+.1f} s off the service's"
    return None


def recording_session(status: Mapping[str, Any] | None) -> str | None:
    """The session being recorded ('' if recording without one), else None."""
    if not status:
        return None
    recording = status.get("recording")
    if isinstance(recording, Mapping):
        return str(recording.get("session_id") or "")
    if (status.get("camera") or {}).get("recording"):
        return ""
    return None


def derive_state(
    lifecycle: Lifecycle | str | None, status: Mapping[str, Any] | None
) -> tuple[EnclosureState, str]:
    """The state shown to users and a human reason, from the lifecycle and the latest status.

    ``status`` is the stored (JSON) form of the latest status of the current boot, or None.
    Silence is not seen here: ``mark_silent`` handles it.
    """
    if lifecycle is None:
        return EnclosureState.OFFLINE, "never seen"
    lifecycle = Lifecycle(lifecycle)
    if lifecycle is Lifecycle.DISCONNECTED:
        return EnclosureState.OFFLINE, "clean shutdown"
    if lifecycle is Lifecycle.LOST:
        return EnclosureState.LOST, "connection lost"
    fault = status_fault(status)
    if fault is not None:
        return EnclosureState.ERROR, clip_reason(fault)
    session = recording_session(status)
    if session is not None:
        return EnclosureState.RECORDING, clip_reason(f"recording {session}".strip())
    return EnclosureState.IDLE, "connected" if lifecycle is Lifecycle.READY else "starting"


def status_signature(state: str, status: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What a user notices in a status: a change of it is worth an ``enclosure.status`` event
    at once; other changes (counters, load) are coalesced."""
    camera = (status or {}).get("camera") or {}
    return (
        state,
        recording_session(status),
        camera.get("connected"),
        camera.get("recording"),
        camera.get("error"),
        (status or {}).get("last_error"),
    )


def judge_status(
    stored_boot: str | None,
    stored_seq: int | None,
    stored_at: datetime | None,
    boot_id: str,
    seq: int,
    at: datetime,
) -> Verdict:
    """Is a status ``(boot_id, seq, at)`` newer than the stored one?"""
    if stored_boot is None or stored_seq is None:
        return Verdict.NEW
    if boot_id == stored_boot:
        if seq == stored_seq:
            return Verdict.DUPLICATE
        if seq > stored_seq:
            return Verdict.NEW
        if stored_seq - seq > SEQ_BACKLOG and stored_at is not None and at > stored_at:
            return Verdict.NEW  # the stored seq was no count of this agent's: time decides
        return Verdict.STALE
    if stored_at is None or at > stored_at:
        return Verdict.NEW
    return Verdict.STALE


def judge_lifecycle(
    stored_boot: str | None,
    stored_lifecycle: str | None,
    stored_at: datetime | None,
    boot_id: str,
    lifecycle: str,
    at: datetime,
    *,
    stored_connection: int | None = None,
    connection: int | None = None,
) -> Verdict:
    """Is a lifecycle message newer than the stored one?

    Within one boot messages apply in arrival order (an agent that reconnects says ``ready``
    again after its Will said ``lost``), except those of an older connection than the stored
    one (a Will replayed after the agent reconnected); a message of another boot older than
    the stored one is stale (typically the Will of the previous run, whose ``at`` is that run's
    connect time).
    """
    if stored_boot is None or stored_at is None:
        return Verdict.NEW
    if boot_id == stored_boot and lifecycle == stored_lifecycle and at == stored_at:
        return Verdict.DUPLICATE
    if (
        boot_id == stored_boot
        and connection is not None
        and stored_connection is not None
        and connection < stored_connection
    ):
        return Verdict.STALE
    if boot_id != stored_boot and at < stored_at:
        return Verdict.STALE
    return Verdict.NEW


def superseded_wills(messages: Sequence[tuple[str, Lifecycle, str, int | None]]) -> set[int]:
    """The positions of Wills (``lost``) that a later message of the same enclosure in
    ``messages`` (``(enclosure id, lifecycle, boot id, connection)``, in arrival order) shows
    to be over already: a newer boot, or a newer (or unnumbered) connection of the same boot.
    Applying them would write a 0-second ``lost`` (the burst a broker restart replays)."""
    superseded: set[int] = set()
    pending: dict[str, list[int]] = {}  # enclosure -> positions of Wills not yet superseded
    for index, (eid, lifecycle, boot_id, connection) in enumerate(messages):
        if lifecycle is Lifecycle.LOST:
            pending.setdefault(eid, []).append(index)
            continue
        still = []
        for will in pending.get(eid, []):
            _, _, will_boot, will_connection = messages[will]
            if (
                will_boot != boot_id
                or connection is None
                or will_connection is None
                or connection > will_connection
            ):
                superseded.add(will)
            else:
                still.append(will)
        pending[eid] = still
    return superseded
