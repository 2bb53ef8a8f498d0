"""``start_recording`` and ``stop_recording``."""

from __future__ import annotations

from pydantic import BaseModel

from enclosure_agent.errors import CommandRejected
from enclosure_agent.handlers.base import AgentControl, Outcome
from enclosure_agent.reconciler import plan_from_command
from schemas.commands import StartRecordingParams

__all__ = ["start_recording", "stop_recording"]


def _gib(count: int) -> str:
    return f"{count / 1024**3:.2f} GiB"


def start_recording(agent: AgentControl, params: BaseModel) -> Outcome:
    assert isinstance(params, StartRecordingParams)
    current = agent.current_session()
    if current is not None and current != params.session_id:
        raise CommandRejected(
            f"already recording session {current!r}; stop it before starting {params.session_id!r}"
        )
    disk = agent.disk_space()
    reserve = agent.config.recording.disk_reserve_bytes
    if disk.free_bytes < reserve:
        raise CommandRejected(
            f"disk below reserve: {disk.free_bytes} bytes free ({_gib(disk.free_bytes)}),"
            f" reserve {reserve} bytes ({_gib(reserve)}) on {agent.config.recording.root}"
        )
    plan = plan_from_command(params, agent.now())
    agent.start_recording(plan)
    detail = "already recording; end time updated" if current == params.session_id else None
    return Outcome.succeeded(
        detail, {"session_id": plan.session_id, "end_at": plan.end_at.isoformat()}
    )


def stop_recording(agent: AgentControl, params: BaseModel) -> Outcome:
    del params
    current = agent.current_session()
    if current is None:
        raise CommandRejected("not recording")
    agent.stop_recording()
    return Outcome.succeeded(f"stopping session {current!r}", {"session_id": current})
