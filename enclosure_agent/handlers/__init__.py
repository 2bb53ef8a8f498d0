"""Command handlers: one small function per command kind, dispatched through ``HANDLERS``."""

from __future__ import annotations

from enclosure_agent.handlers.base import AgentControl, Handler, Outcome
from enclosure_agent.handlers.live import snapshot, start_live_view, stop_live_view
from enclosure_agent.handlers.recording import start_recording, stop_recording
from enclosure_agent.handlers.system import ping, rebirth, restart_agent, set_config
from schemas.enums import CommandKind

__all__ = ["HANDLERS", "AgentControl", "Handler", "Outcome"]

HANDLERS: dict[CommandKind, Handler] = {
    CommandKind.PING: ping,
    CommandKind.REBIRTH: rebirth,
    CommandKind.START_RECORDING: start_recording,
    CommandKind.STOP_RECORDING: stop_recording,
    CommandKind.START_LIVE_VIEW: start_live_view,
    CommandKind.STOP_LIVE_VIEW: stop_live_view,
    CommandKind.SNAPSHOT: snapshot,
    CommandKind.SET_CONFIG: set_config,
    CommandKind.RESTART_AGENT: restart_agent,
}
