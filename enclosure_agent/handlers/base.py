"""What a command handler gets (``AgentControl``) and returns (``Outcome``).

A handler is a small function ``(agent, params) -> Outcome``. It raises ``CommandRejected``
with the reason when the agent's state forbids the command. An ``Outcome`` with ``later``
is answered ``accepted`` at once; ``later`` then runs on a worker thread and its outcome is
the final answer (``snapshot`` waiting for a frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from enclosure_agent.config import AgentConfig
from enclosure_agent.health import DiskSpace
from enclosure_agent.recorder import CapturedFrame
from schemas.enums import AckResult
from schemas.messages import DesiredRecording

__all__ = ["AgentControl", "Handler", "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to a command."""

    result: AckResult
    detail: str | None = None
    data: dict[str, Any] | None = None
    later: Callable[[], Outcome] | None = None

    @classmethod
    def succeeded(cls, detail: str | None = None, data: dict[str, Any] | None = None) -> Outcome:
        return cls(AckResult.SUCCEEDED, detail, data)

    @classmethod
    def failed(cls, detail: str) -> Outcome:
        return cls(AckResult.FAILED, detail)

    @classmethod
    def accepted(cls, later: Callable[[], Outcome], detail: str | None = None) -> Outcome:
        return cls(AckResult.ACCEPTED, detail, None, later)


class AgentControl(Protocol):
    """The agent as command handlers see it (all called on the agent's thread)."""

    @property
    def config(self) -> AgentConfig: ...

    def now(self) -> datetime:
        """The service's time as the agent knows it (see ``clock_basis``)."""
        ...

    def clock_basis(self) -> str:
        """Which clock ``now()`` follows, for messages (e.g. "by the service's clock ...")."""
        ...

    def current_session(self) -> str | None:
        """The session being recorded, or None when idle."""
        ...

    def disk_space(self) -> DiskSpace: ...

    def start_recording(self, plan: DesiredRecording) -> None:
        """Change the intent to ``plan`` and start recording it now."""
        ...

    def stop_recording(self) -> None:
        """Change the intent to "no recording" and stop the current one."""
        ...

    def set_live_view(self, until: datetime | None) -> None: ...

    def latest_frame(self, max_age_s: float) -> CapturedFrame | None:
        """The latest camera frame if it is at most ``max_age_s`` old."""
        ...

    def wait_for_frame(self, timeout_s: float) -> CapturedFrame | None:
        """A fresh frame, opening the camera if needed (call from a worker thread)."""
        ...

    def rebirth(self) -> None:
        """Publish state and status again now."""
        ...

    def apply_config(self, changes: dict[str, Any]) -> list[str]:
        """Apply run-time settings; return notes on when each takes effect."""
        ...

    def request_restart(self) -> None:
        """Exit after this command's ack is delivered (systemd starts the agent again)."""
        ...


Handler = Callable[[AgentControl, BaseModel], Outcome]
