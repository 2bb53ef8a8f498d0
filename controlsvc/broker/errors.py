"""Errors of the broker tooling (password files, ACL and config rendering, local brokers).

::

    BrokerError                     base of everything this package raises on purpose
    ├── InvalidBrokerSetting        (also ValueError) a user name, password, prefix or option the
    │                               broker files cannot hold; the message names it and says why
    ├── PasswordFileError           a password file that cannot be read back (line, reason)
    ├── MosquittoNotInstalled       no ``mosquitto`` binary; names the Debian package to install
    └── BrokerStartError            the broker exited or never listened; carries the log tail
        ├── PortInUseError          the port is taken by another process (pick another port)
        └── BrokerAlreadyRunning    a broker started from the same directory is still running
"""

from __future__ import annotations

__all__ = [
    "BrokerAlreadyRunning",
    "BrokerError",
    "BrokerStartError",
    "InvalidBrokerSetting",
    "MosquittoNotInstalled",
    "PasswordFileError",
    "PortInUseError",
]


class BrokerError(Exception):
    """Base of every error the broker tooling raises on purpose."""


class InvalidBrokerSetting(BrokerError, ValueError):
    """A value the broker's files cannot hold (bad user name, empty password, bad prefix...)."""


class PasswordFileError(BrokerError):
    """A password file line that is not ``user:hash``; the message names the file and line."""


class MosquittoNotInstalled(BrokerError):
    """The ``mosquitto`` binary was not found; the message says how to install it."""


class BrokerStartError(BrokerError):
    """The broker exited during start-up or never accepted connections.

    ``log_tail`` holds the last lines the broker wrote (its log file and its stderr), which is
    also part of the message.
    """

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        full = f"{message}\n--- broker log (last lines) ---\n{log_tail}" if log_tail else message
        super().__init__(full)
        self.reason = message
        self.log_tail = log_tail


class PortInUseError(BrokerStartError):
    """Another process listens on the port the broker was told to use."""

    def __init__(self, message: str, *, host: str, port: int, log_tail: str = "") -> None:
        super().__init__(message, log_tail=log_tail)
        self.host = host
        self.port = port


class BrokerAlreadyRunning(BrokerStartError):
    """A broker started from the same directory (by an earlier run) is still alive."""

    def __init__(self, message: str, *, pid: int) -> None:
        super().__init__(message)
        self.pid = pid
