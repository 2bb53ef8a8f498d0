"""Errors of the enclosure agent (the recorder layer has its own tree in ``recorder/errors.py``).

::

    AgentError                  base of everything the agent raises on purpose
    ├── ConfigError             bad or missing configuration: "key: reason" (CLI exits 2)
    ├── BrokerError             the MQTT connection cannot be used
    │   └── BrokerRefused       the broker refused CONNECT (bad credentials, not authorized);
    │                           ``fatal`` when retrying cannot help
    ├── OutboxError             the on-disk event queue cannot be opened or written
    ├── StateDirLocked          another agent runs with the same state directory
    └── CommandRejected         a command the agent's state forbids; the message is the reason
                                (raised by handlers, answered ``rejected``)
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "BrokerError",
    "BrokerRefused",
    "CommandRejected",
    "ConfigError",
    "OutboxError",
    "StateDirLocked",
]


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration is missing or invalid; ``str(err)`` is ``key: reason`` lines."""


class BrokerError(AgentError):
    """The MQTT connection cannot be used."""


class BrokerRefused(BrokerError):
    """The broker refused CONNECT; ``fatal`` when retrying cannot help (bad credentials)."""

    def __init__(self, reason: str, *, code: int, fatal: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.fatal = fatal


class OutboxError(AgentError):
    """The on-disk event queue cannot be opened, read or written."""


class StateDirLocked(AgentError):
    """Another agent runs with the same state directory (one agent per directory)."""


class CommandRejected(AgentError):
    """A command the current state forbids; ``str(err)`` is the reason sent in the ack."""
