"""Running agents inside another program (the demo, tests): a config from a few values and a
thread per agent.

::

    configs = [
        quick_config(f"enc-{i}", f"mqtt://enc-{i}:{pw[i]}@127.0.0.1:1883", "var/rec", "var/state")
        for i in range(3)
    ]
    runners = [AgentRunner(c).start() for c in configs]   # each returns once subscribed
    ...
    for r in runners:
        r.stop()

Several agents in one process share its CPU; for a demo of many enclosures use a small,
slow test pattern (``camera={"width": 320, "height": 240, "fps": 10}``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from enclosure_agent.agent import Agent, ExitReason
from enclosure_agent.config import AgentConfig, validate_config
from enclosure_agent.recorder import FrameSource

__all__ = ["AgentRunner", "quick_config"]

READY_TIMEOUT_S = 15.0  # connect, publish the birth messages and subscribe
STOP_TIMEOUT_S = 90.0  # closes and hashes the current segment first


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def quick_config(
    enclosure_id: str,
    broker_url: str,
    recordings: Path | str,
    state_root: Path | str,
    *,
    camera: str = "testpattern",
    **sections: dict[str, Any],
) -> AgentConfig:
    """A validated config: state in ``<state_root>/<enclosure_id>``, other keys at defaults
    unless given per section (``recording={"segment_seconds": 10}``). ``ConfigError`` if bad."""
    data: dict[str, Any] = {
        "agent": {"enclosure_id": enclosure_id, "state_dir": str(Path(state_root) / enclosure_id)},
        "broker": {"url": broker_url},
        "camera": {"source": camera},
        "recording": {"root": str(recordings)},
    }
    return validate_config(_merge(data, sections))


class AgentRunner:
    """One agent on a thread of its own."""

    def __init__(self, config: AgentConfig, *, source: FrameSource | None = None) -> None:
        self.agent = Agent(config, source=source)
        self.exit_reason: ExitReason | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"agent-{config.enclosure_id}", daemon=True
        )

    def _run(self) -> None:
        self.exit_reason = self.agent.run()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self, ready_timeout_s: float | None = READY_TIMEOUT_S) -> AgentRunner:
        """Start; wait until the agent is subscribed (``TimeoutError`` if not in time), unless
        ``ready_timeout_s`` is None."""
        self._thread.start()
        if ready_timeout_s is not None and not self.agent.ready.wait(ready_timeout_s):
            raise TimeoutError(f"agent {self.agent.eid} not connected within {ready_timeout_s:g} s")
        return self

    def wait(self, timeout_s: float | None = STOP_TIMEOUT_S) -> ExitReason | None:
        """Wait for ``run()`` to end (a restart_agent command, refused credentials)."""
        self._thread.join(timeout_s)
        return self.exit_reason

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> ExitReason | None:
        """Shut down cleanly (state ``disconnected``) and wait."""
        if self._thread.is_alive():
            self.agent.stop()
        return self.wait(timeout_s)
