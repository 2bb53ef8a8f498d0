"""What to answer a legacy device's heartbeat: the original server's decision order, pure.

The original kept a device "assigned" to a session until the device acknowledged COMPLETE.
Here the assignment is the enclosure's ``desired`` recording (what an MQTT agent reconciles
to) and the device's part in the session it reports. In order:

1. the heartbeat names no session:
   - desired names a session whose part is not yet confirmed (pending, starting, timed out)
     and due: START;
   - the part is recording: the device left it (FAILED, "device unexpectedly left recording
     session");
   - otherwise nothing;
2. it names another session than desired (or desired names none): STOP while recording;
   once stopped, its outcome (below) and COMPLETE;
3. not recording: FAILED with ``err_msg`` if there is one, else stopped (completed when the
   end was reached, decided by the session state machine); COMPLETE, the only way the device
   drops its session;
4. recording: a finished part (canceled, completed, failed): STOP; a part not yet confirmed:
   started; then STREAM while a live view was asked recently, else nothing.

The outcomes become the same agent events an MQTT agent sends (``gateway``); the session
state machine (``controlsvc.domain.session_state``) decides what they do to the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controlsvc.domain.session_state import EncState

__all__ = [
    "LEFT_MESSAGE",
    "Assignment",
    "Decision",
    "DeviceCommand",
    "Outcome",
    "Report",
    "decide",
]

LEFT_MESSAGE = "device unexpectedly left recording session"


class DeviceCommand(StrEnum):
    """The original client's commands (``command_name``)."""

    START = "START"
    STOP = "STOP"
    COMPLETE = "COMPLETE"
    STREAM = "STREAM"


class Outcome(StrEnum):
    """What the heartbeat says happened to the device's part in a session."""

    STARTED = "started"  # recording the session
    STOPPED = "stopped"  # stopped without an error
    FAILED = "failed"  # stopped with an error (``err_msg``)
    LEFT = "left"  # no longer names a session it was recording


@dataclass(frozen=True, slots=True)
class Report:
    """What the heartbeat reports: the session it names (ours; ``named`` without ``session_id``
    for a session id we do not know), whether it records, and its error."""

    named: bool
    session_id: str | None
    recording: bool
    err_msg: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """The session ``desired`` names, the device's part in it, and whether it is due."""

    session_id: str
    state: EncState
    due: bool


@dataclass(frozen=True, slots=True)
class Decision:
    command: DeviceCommand | None
    outcome: Outcome | None = None
    session_id: str | None = None  # the session the outcome is about
    message: str | None = None


_UNCONFIRMED = frozenset({EncState.PENDING, EncState.STARTING, EncState.TIMED_OUT})
_FINISHED = frozenset({EncState.CANCELED, EncState.COMPLETED, EncState.FAILED})


def _stopped(report: Report) -> Decision:
    if report.session_id is None:  # a session we do not know: nothing to record
        return Decision(DeviceCommand.COMPLETE)
    if report.err_msg:
        return Decision(DeviceCommand.COMPLETE, Outcome.FAILED, report.session_id, report.err_msg)
    return Decision(DeviceCommand.COMPLETE, Outcome.STOPPED, report.session_id)


def decide(
    report: Report,
    assignment: Assignment | None,
    reported_state: EncState | None,
    *,
    stream_wanted: bool,
) -> Decision:
    """The command for this heartbeat (None: 204) and the outcome to record.

    ``reported_state``: the device's part in the session the heartbeat names (None: no part).
    """
    if not report.named:
        if assignment is None:
            return Decision(None)
        if assignment.state in _UNCONFIRMED:
            return Decision(DeviceCommand.START if assignment.due else None)
        if assignment.state is EncState.RECORDING:
            return Decision(None, Outcome.LEFT, assignment.session_id, LEFT_MESSAGE)
        return Decision(None)
    if assignment is None or assignment.session_id != report.session_id:
        return Decision(DeviceCommand.STOP) if report.recording else _stopped(report)
    if not report.recording:
        return _stopped(report)
    state = reported_state or assignment.state
    if state in _FINISHED:
        return Decision(DeviceCommand.STOP)
    outcome = Outcome.STARTED if state in _UNCONFIRMED else None
    command = DeviceCommand.STREAM if stream_wanted else None
    return Decision(command, outcome, report.session_id if outcome else None)
