"""Errors of the bridge.

::

    JaxmbaError (controlsvc.domain.errors)
    └── BridgeError             the bridge cannot run
        └── BrokerRefused       the broker refused the service's connection for good
                                (bad credentials, not authorized, banned): retrying cannot help

``BrokerUnavailable`` (``controlsvc.domain.publisher``) is what a publish raises while the broker is
away; the bridge keeps reconnecting in that case.
"""

from __future__ import annotations

from controlsvc.domain.errors import JaxmbaError

__all__ = ["BridgeError", "BrokerRefused"]


class BridgeError(JaxmbaError):
    """The bridge cannot run; the message says why."""


class BrokerRefused(BridgeError):
    """The broker refused the connection with a reason that retrying cannot fix."""

    def __init__(self, message: str, *, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code
