"""The enumerations of the contract (their values are what travels on the wire and in REST)."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AckResult",
    "AlertSeverity",
    "CommandKind",
    "CommandState",
    "EnclosureState",
    "EventKind",
    "Lifecycle",
    "Role",
    "SessionEnclosureStatus",
    "SessionStatus",
]


class Lifecycle(StrEnum):
    """What an agent's retained ``state`` topic says about its connection."""

    INIT = "init"  # connected, publishing its first status, not yet subscribed
    READY = "ready"  # subscribed to cmd and desired
    DISCONNECTED = "disconnected"  # clean shutdown
    LOST = "lost"  # the agent's Will: the connection died


class EnclosureState(StrEnum):
    """The derived state shown to users."""

    OFFLINE = "offline"  # never seen, or clean disconnect
    LOST = "lost"  # Will fired, or no status for 3 x status interval
    IDLE = "idle"
    RECORDING = "recording"
    ERROR = "error"  # the agent reports a fault


class CommandKind(StrEnum):
    PING = "ping"
    REBIRTH = "rebirth"  # re-publish state and status now
    START_RECORDING = "start_recording"
    STOP_RECORDING = "stop_recording"
    START_LIVE_VIEW = "start_live_view"
    STOP_LIVE_VIEW = "stop_live_view"
    SNAPSHOT = "snapshot"
    SET_CONFIG = "set_config"
    RESTART_AGENT = "restart_agent"


class CommandState(StrEnum):
    """A command's life: pending -> sent -> accepted | rejected -> succeeded | failed.

    ``expired``: the agent got it after ``expires_at``; ``timed_out``: no answer by the deadline.
    """

    PENDING = "pending"
    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        """True when nothing can change this command any more."""
        return self in _TERMINAL_COMMAND_STATES


_TERMINAL_COMMAND_STATES = frozenset(
    {
        CommandState.REJECTED,
        CommandState.SUCCEEDED,
        CommandState.FAILED,
        CommandState.EXPIRED,
        CommandState.TIMED_OUT,
    }
)


class AckResult(StrEnum):
    """The ``result`` of an ack; each value is also a ``CommandState`` value."""

    ACCEPTED = "accepted"  # a long command started; its outcome follows in a second ack
    REJECTED = "rejected"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        """True for every result but ``accepted``."""
        return self is not AckResult.ACCEPTED

    @property
    def command_state(self) -> CommandState:
        return CommandState(self.value)


class EventKind(StrEnum):
    RECORDING_STARTED = "recording_started"
    RECORDING_STOPPED = "recording_stopped"
    RECORDING_FAILED = "recording_failed"
    RECORDING_RESUMED = "recording_resumed"
    SEGMENT_CLOSED = "segment_closed"
    CAMERA_STALLED = "camera_stalled"
    CAMERA_RECOVERED = "camera_recovered"
    DISK_LOW = "disk_low"
    CLOCK_SKEW = "clock_skew"


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class SessionStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (
            SessionStatus.COMPLETED,
            SessionStatus.COMPLETED_WITH_FAILURES,
            SessionStatus.CANCELED,
        )


class SessionEnclosureStatus(StrEnum):
    """One enclosure's outcome within a recording session."""

    PENDING = "pending"
    STARTING = "starting"
    RECORDING = "recording"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self in (
            SessionEnclosureStatus.COMPLETED,
            SessionEnclosureStatus.FAILED,
            SessionEnclosureStatus.CANCELED,
            SessionEnclosureStatus.TIMED_OUT,
        )
