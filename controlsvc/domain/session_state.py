"""The state machines of recording sessions: plain, typed, no I/O.

One enclosure within a session (``SessionEnclosureStatus``)::

    pending ──start time──▶ starting ──frames flowing──▶ recording ──stopped at the end──▶ completed
       │                       │                            │
       │                       ├─ no confirmation in time ──┼─▶ timed_out  (lost > grace, too)
       │                       │                            │       │
       │                       │                            │       └─ frames again before
       │                       │                            │          the end ──▶ recording
       ├───────────────────────┴────── agent failure ───────┴─▶ failed (the agent's reason)
       └───────────────────────┴────── operator cancel ─────┴─▶ canceled

``completed`` needs both the end reached and the agent's ``recording_stopped`` (which follows the
close event of the last segment). A stop well before the end is a failure: the enclosure did not
record what was asked. ``timed_out`` is the one outcome that can still change while the session
runs: an enclosure that comes back and records again is ``recording`` again.

The session (``SessionStatus``), derived from its enclosures by ``derive_session``::

    scheduled ──start time──▶ running ──every enclosure settled──▶ completed
                                 │                              └▶ completed_with_failures
                                 └──── operator cancel ───────────▶ canceled
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from schemas.enums import SessionEnclosureStatus as EncState
from schemas.enums import SessionStatus

__all__ = [
    "ACTIVE_ENCLOSURE_STATES",
    "ACTIVE_SESSION_STATUSES",
    "EncState",
    "Signal",
    "Transition",
    "derive_session",
    "next_state",
]

ACTIVE_ENCLOSURE_STATES = frozenset({EncState.PENDING, EncState.STARTING, EncState.RECORDING})
ACTIVE_SESSION_STATUSES = frozenset({SessionStatus.SCHEDULED, SessionStatus.RUNNING})


class Signal(StrEnum):
    """What can happen to one enclosure of a session."""

    START_TIME = "start_time"  # start_at reached (the desired document is out)
    FRAMES = "frames"  # recording_started / recording_resumed / a status or segment of it
    STOPPED = "stopped"  # recording_stopped from the agent
    FAILED = "failed"  # recording_failed from the agent
    START_TIMEOUT = "start_timeout"  # no confirmation within the start timeout
    LOST_TIMEOUT = "lost_timeout"  # lost or offline for longer than the grace period
    END_TIMEOUT = "end_timeout"  # the end passed long ago and no final report came
    CANCEL = "cancel"  # an operator canceled it (or the whole session)


@dataclass(frozen=True, slots=True)
class Transition:
    """The new state and the human message that goes with it (None: plain)."""

    state: EncState
    message: str | None = None


def next_state(
    state: EncState, signal: Signal, *, ended: bool, reason: str | None = None
) -> Transition | None:
    """The transition ``signal`` causes in ``state``; None when it changes nothing.

    ``ended``: the session's end time has passed. ``reason``: the agent's words (failures,
    stops) or the timer's (time-outs), used in the message.
    """
    terminal = state.is_terminal
    if signal is Signal.CANCEL:
        return None if terminal else Transition(EncState.CANCELED, reason or "canceled")
    if signal is Signal.START_TIME:
        return Transition(EncState.STARTING) if state is EncState.PENDING else None
    if signal is Signal.FRAMES:
        if state in (EncState.PENDING, EncState.STARTING):
            return Transition(EncState.RECORDING)
        if state is EncState.TIMED_OUT and not ended:
            return Transition(EncState.RECORDING, "recording again after timing out")
        return None
    if signal is Signal.STOPPED:
        if terminal:
            return None
        if ended:
            return Transition(EncState.COMPLETED)
        why = reason or "no reason given"
        return Transition(EncState.FAILED, f"stopped before the end ({why})")
    if signal is Signal.FAILED:
        if terminal and state is not EncState.TIMED_OUT:
            return None
        return Transition(EncState.FAILED, reason or "the agent reported a failure")
    if signal is Signal.START_TIMEOUT:
        if state is EncState.STARTING:
            return Transition(EncState.TIMED_OUT, reason or "no confirmation within the timeout")
        return None
    if signal is Signal.LOST_TIMEOUT:
        if state in ACTIVE_ENCLOSURE_STATES:
            return Transition(EncState.TIMED_OUT, reason or "lost for longer than the grace")
        return None
    if signal is Signal.END_TIMEOUT:
        if state in ACTIVE_ENCLOSURE_STATES:
            return Transition(EncState.TIMED_OUT, reason or "no final report after the end")
        return None
    raise AssertionError(f"unhandled signal {signal!r}")  # pragma: no cover


def derive_session(
    current: SessionStatus,
    enclosure_states: Iterable[EncState],
    *,
    started: bool,
    ended: bool,
    canceled: bool = False,
) -> SessionStatus:
    """The session's status from its enclosures' states (terminal statuses never change).

    ``started``/``ended``: the start/end time has passed; ``canceled``: an operator canceled
    the whole session. The session settles once every enclosure has an outcome, and, while a
    ``timed_out`` one could still come back, not before the end.
    """
    if current.is_terminal:
        return current
    if canceled:
        return SessionStatus.CANCELED
    states = list(enclosure_states)
    settled = bool(states) and all(s.is_terminal for s in states)
    if settled and (ended or EncState.TIMED_OUT not in states):
        if all(s is EncState.CANCELED for s in states):
            return SessionStatus.CANCELED
        if all(s in (EncState.COMPLETED, EncState.CANCELED) for s in states):
            return SessionStatus.COMPLETED
        return SessionStatus.COMPLETED_WITH_FAILURES
    return SessionStatus.RUNNING if started else SessionStatus.SCHEDULED
