"""What an agent's event does to its enclosure's part in a recording session: pure rules.

The bridge (``controlsvc.bridge.session_events``) reads the facts inside its batch transaction,
asks ``react`` and carries the ``Reaction`` out: the signal for the session's state machine
(``session_state.next_state``), the evidence and counters of a closed segment, a gap in the
recording, and the alerts to raise or close.

- ``recording_started`` / ``recording_resumed``: frames flow (a resume also records the gap the
  agent was away); if that moved the enclosure, its ``recording_timed_out`` and
  ``recording_failed`` alerts close.
- ``segment_closed``: the segment's evidence and counters, frames flow, a progress event.
- ``recording_stopped``: stopped; ``completed`` when the end was reached (by the agent's time on
  the service's clock, within ``END_TOLERANCE_S``, or its own "end reached"), else ``failed``
  with a ``recording_failed`` alert: it did not record what was asked.
- ``recording_failed``: ``failed`` with the agent's reason and a ``recording_failed`` alert.
- ``camera_stalled`` / ``disk_low``: an alert while the enclosure records in a session;
  ``camera_recovered`` closes the first and records the stall as a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from controlsvc.domain import alert_words
from controlsvc.domain.session_state import EncState, Signal
from schemas.enums import EventKind
from schemas.events import (
    CameraRecovered,
    EventPayload,
    RecordingFailed,
    RecordingResumed,
    RecordingStopped,
)

__all__ = [
    "END_TOLERANCE_S",
    "RECOVERED_BY_FRAMES",
    "SESSION_KINDS",
    "AlertChange",
    "Gap",
    "Reaction",
    "react",
]

# A stop this close to the end counts as reaching it (agent and service clocks differ a bit).
END_TOLERANCE_S = 2.0
# Events about the recording of one session (they carry its id).
SESSION_KINDS = frozenset(
    {
        EventKind.RECORDING_STARTED,
        EventKind.RECORDING_RESUMED,
        EventKind.SEGMENT_CLOSED,
        EventKind.RECORDING_STOPPED,
        EventKind.RECORDING_FAILED,
    }
)
# Events about the enclosure, which matter while it records in a session.
ENCLOSURE_KINDS = frozenset(
    {EventKind.CAMERA_STALLED, EventKind.CAMERA_RECOVERED, EventKind.DISK_LOW}
)
# The alerts of an enclosure that its frames flowing again closes.
RECOVERED_BY_FRAMES = ("recording_timed_out", "recording_failed")

# (enclosure as alerts name it, session name, session id) -> the alert's sentence
Words = Callable[[str, str | None, str], str]


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch the enclosure did not record (kept once per event)."""

    cause: str  # agent_restart | camera_stalled
    started_at: datetime
    ended_at: datetime
    seconds: float


@dataclass(frozen=True, slots=True)
class AlertChange:
    """Alerts of the enclosure to raise (``raise_kind`` with ``words``) or close (``recover``)."""

    raise_kind: str | None = None
    words: Words | None = None
    recover: tuple[str, ...] = ()
    only_if: EncState | None = None  # only when the enclosure's state became this


@dataclass(frozen=True, slots=True)
class Reaction:
    """What to do, in this order: gap, segment, stop, signal, progress, alerts."""

    signal: Signal | None = None
    reason: str | None = None
    ended: bool = False  # the session's end counts as reached for ``signal``
    gap: Gap | None = None
    segment: bool = False  # store the closed segment and count it
    stopped_at: datetime | None = None
    clear_live: bool = False  # the open segment's seconds are over
    progress: bool = False  # a ``session.progress`` event
    on_change: AlertChange | None = None  # when ``signal`` changed the state
    at_once: AlertChange | None = None  # whatever the state


def react(
    kind: EventKind,
    payload: EventPayload | None,
    data: dict[str, object],
    *,
    at: datetime,
    end_at: datetime | None = None,
) -> Reaction | None:
    """The reaction to an event of ``kind`` (``payload`` its typed data, ``data`` as sent),
    which the agent sent ``at`` (on the service's clock); ``end_at`` is the session's end
    (None for enclosure events). None: the event changes nothing in sessions."""
    ended = end_at is not None and at >= end_at - timedelta(seconds=END_TOLERANCE_S)
    if kind is EventKind.SEGMENT_CLOSED:
        return Reaction(Signal.FRAMES, ended=ended, segment=True, progress=True)
    if kind in (EventKind.RECORDING_STARTED, EventKind.RECORDING_RESUMED):
        gap = None
        if isinstance(payload, RecordingResumed):
            gap = Gap("agent_restart", payload.gap_started_at, payload.gap_ended_at, payload.gap_s)
        return Reaction(
            Signal.FRAMES, ended=ended, gap=gap, on_change=AlertChange(recover=RECOVERED_BY_FRAMES)
        )
    if isinstance(payload, RecordingStopped):
        reason = payload.reason
        return Reaction(
            Signal.STOPPED,
            reason=reason,
            ended=ended or reason == "end reached",
            stopped_at=at,
            clear_live=True,
            on_change=AlertChange(
                "recording_failed",
                partial(_stopped_early, reason=reason or "?"),
                only_if=EncState.FAILED,
            ),
        )
    if isinstance(payload, RecordingFailed):
        return Reaction(
            Signal.FAILED,
            reason=payload.reason,
            ended=ended,
            clear_live=True,
            on_change=AlertChange("recording_failed", partial(_failed, reason=payload.reason)),
        )
    return _enclosure_reaction(kind, payload, data, at)


def _enclosure_reaction(
    kind: EventKind, payload: EventPayload | None, data: dict[str, object], at: datetime
) -> Reaction | None:
    if kind is EventKind.CAMERA_STALLED:
        return Reaction(at_once=AlertChange("camera_stalled", alert_words.camera_stalled))
    if isinstance(payload, CameraRecovered):
        gap = None
        if payload.stalled_s:
            start = at - timedelta(seconds=payload.stalled_s)
            gap = Gap("camera_stalled", start, at, payload.stalled_s)
        return Reaction(gap=gap, at_once=AlertChange(recover=("camera_stalled",)))
    if kind is EventKind.DISK_LOW:
        words = partial(_disk_low, free_bytes=data.get("free_bytes"))
        return Reaction(at_once=AlertChange("disk_low", words))
    return None


def _stopped_early(who: str, name: str | None, sid: str, *, reason: str) -> str:
    return alert_words.stopped_early(who, name, sid, reason)


def _failed(who: str, name: str | None, sid: str, *, reason: str) -> str:
    return alert_words.failed(who, name, sid, reason)


def _disk_low(who: str, name: str | None, sid: str, *, free_bytes: object) -> str:
    return alert_words.disk_low(who, free_bytes, name, sid)
