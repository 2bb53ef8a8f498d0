"""``ping``, ``rebirth``, ``set_config`` and ``restart_agent``."""

from __future__ import annotations

from pydantic import BaseModel

from enclosure_agent import __version__
from enclosure_agent.handlers.base import AgentControl, Outcome
from schemas.commands import SetConfigParams

__all__ = ["ping", "rebirth", "restart_agent", "set_config"]


def ping(agent: AgentControl, params: BaseModel) -> Outcome:
    del params
    return Outcome.succeeded(
        data={"pong": True, "agent_version": __version__, "at": agent.now().isoformat()}
    )


def rebirth(agent: AgentControl, params: BaseModel) -> Outcome:
    del params
    agent.rebirth()
    return Outcome.succeeded("state and status published again")


def set_config(agent: AgentControl, params: BaseModel) -> Outcome:
    assert isinstance(params, SetConfigParams)
    changes = params.changes()
    notes = agent.apply_config(changes)
    return Outcome.succeeded("; ".join(notes) or None, {"applied": changes})


def restart_agent(agent: AgentControl, params: BaseModel) -> Outcome:
    del params
    agent.request_restart()
    return Outcome.succeeded("restarting")
