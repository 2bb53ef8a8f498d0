"""What the agent should be doing now: the retained ``desired`` document, or a newer command.

The retained ``desired`` is the truth. A document is applied when its ``version`` is newer
than the one applied last (older ones are ignored; the same version again is the retained
copy after a reconnect and changes nothing). A direct command (``start_recording``,
``stop_recording``, ``start_live_view``, ``stop_live_view``) changes the intent at once; the
service then publishes a newer ``desired`` that agrees with it. Until it does, the retained
copy of the version the command overrode is not applied again.

The intent is persisted in the agent's journal, so after a crash or restart the agent knows
what to do before the broker is even reachable.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.commands import StartRecordingParams
from schemas.messages import Desired, DesiredRecording
from schemas.types import UtcDatetime

__all__ = [
    "Intent",
    "IntentSource",
    "Reconciler",
    "StopReason",
    "clock_doubt",
    "plan_from_command",
]

log = logging.getLogger(__name__)


class IntentSource(StrEnum):
    NONE = "none"  # nothing known yet (first start, no desired received)
    DESIRED = "desired"
    COMMAND = "command"


class StopReason(StrEnum):
    """Why a recording stops (``recording_stopped.reason``)."""

    END_REACHED = "end reached"
    COMMAND = "stop_recording command"
    DESIRED = "desired"
    REPLACED = "replaced by another session"
    SHUTDOWN = "agent shutdown"


class Intent(BaseModel):
    """The recording and live view the agent should be doing (persisted in the journal)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    recording: DesiredRecording | None = Field(default=None)
    live_view_until: UtcDatetime | None = Field(default=None)
    version: int | None = Field(default=None, description="Version of the last applied desired.")
    source: IntentSource = Field(default=IntentSource.NONE)
    published_at: UtcDatetime | None = Field(
        default=None, description="When the service published the desired document (its clock)."
    )

    def wanted_recording(self, now: datetime) -> DesiredRecording | None:
        """The recording to be doing at ``now``, if any."""
        plan = self.recording
        if plan is None or not plan.start_at <= now < plan.end_at:
            return None
        return plan

    def live_view_active(self, now: datetime) -> bool:
        return self.live_view_until is not None and now < self.live_view_until

    def next_change(self, now: datetime) -> datetime | None:
        """The next moment the wanted state changes by itself (a start, an end, live view off)."""
        moments = []
        if self.recording is not None:
            moments += [self.recording.start_at, self.recording.end_at]
        if self.live_view_until is not None:
            moments.append(self.live_view_until)
        future = [moment for moment in moments if moment > now]
        return min(future) if future else None


def plan_from_command(params: StartRecordingParams, now: datetime) -> DesiredRecording:
    """The recording a ``start_recording`` command asks for, starting ``now``."""
    return DesiredRecording(
        session_id=params.session_id,
        file_prefix=params.file_prefix,
        start_at=now,
        end_at=now + timedelta(seconds=params.duration_s),
        target_fps=params.target_fps,
        fragment_hourly=params.fragment_hourly,
        segment_minutes=params.segment_minutes,
        apply_filter=params.apply_filter,
    )


def clock_doubt(intent: Intent, local_now: datetime) -> str | None:
    """Why the agent's own clock (``local_now``, no offset from the service's measured yet)
    keeps the intent's recording from running although the service published the document
    inside the recording's window; None when the two agree (or nothing is wanted)."""
    plan, published = intent.recording, intent.published_at
    if plan is None or published is None or not plan.start_at <= published < plan.end_at:
        return None
    if plan.start_at <= local_now < plan.end_at:
        return None
    where = "over" if local_now >= plan.end_at else "not open yet"
    return (
        f"not recording {plan.session_id}: by this enclosure's clock"
        f" ({local_now.isoformat(timespec='seconds')}) its window"
        f" {plan.start_at.isoformat(timespec='seconds')} to"
        f" {plan.end_at.isoformat(timespec='seconds')} is {where}, though the service"
        " published it inside; the offset from the service's clock is not measured yet"
        " (waiting for its service/state heartbeat; check the clock and NTP)"
    )


class Reconciler:
    """Holds the intent and decides which ``desired`` documents change it."""

    def __init__(self, intent: Intent | None = None) -> None:
        self.intent = intent or Intent()

    def offer(self, desired: Desired) -> bool:
        """Apply ``desired`` if it is newer than what was applied; True if the intent changed."""
        applied = self.intent.version
        if applied is not None and desired.version < applied:
            log.info("ignoring desired version %d (applied: %d)", desired.version, applied)
            return False
        if applied is not None and desired.version == applied:
            return False  # the retained copy again (reconnect); or a command overrode it since
        self.intent = Intent(
            recording=desired.recording,
            live_view_until=desired.live_view_until,
            version=desired.version,
            source=IntentSource.DESIRED,
            published_at=desired.at,
        )
        log.info(
            "applied desired version %d: recording %s, live view until %s",
            desired.version,
            desired.recording.session_id if desired.recording else "none",
            desired.live_view_until.isoformat() if desired.live_view_until else "-",
        )
        return True

    def start(self, plan: DesiredRecording) -> None:
        """A ``start_recording`` command."""
        self.intent = self.intent.model_copy(
            update={"recording": plan, "source": IntentSource.COMMAND, "published_at": None}
        )

    def stop(self) -> None:
        """A ``stop_recording`` command (or the recording failed for good)."""
        self.intent = self.intent.model_copy(
            update={"recording": None, "source": IntentSource.COMMAND}
        )

    def live_view(self, until: datetime | None) -> None:
        """A ``start_live_view`` (until a time) or ``stop_live_view`` (None) command."""
        self.intent = self.intent.model_copy(
            update={"live_view_until": until, "source": IntentSource.COMMAND}
        )

    def stop_reason(self, session_id: str, now: datetime) -> StopReason:
        """Why the recording of ``session_id`` is no longer wanted at ``now``."""
        plan = self.intent.recording
        if plan is not None and plan.session_id == session_id and now >= plan.end_at:
            return StopReason.END_REACHED
        if plan is not None and plan.session_id != session_id:
            return StopReason.REPLACED
        if self.intent.source is IntentSource.COMMAND:
            return StopReason.COMMAND
        return StopReason.DESIRED
