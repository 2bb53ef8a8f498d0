"""Errors of ``jaxmba-ctl``: each becomes one line on stderr and a non-zero exit code.

::

    CtlError                    exit 1 (``exit_code``): any failure with a message for the user
     +-- ServiceUnreachable     the service cannot be reached (connection refused, DNS, timeout)
     +-- NotLoggedIn            no stored login for the URL, or it expired beyond refresh
     +-- ApiError               the service answered a problem+json (status, title, detail, errors)
     +-- BrokerConnectionError  the MQTT broker refused us or cannot be reached
     +-- ProvisionError         provisioning cannot proceed (bad id, unwritable file, ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ApiError",
    "BrokerConnectionError",
    "CtlError",
    "NotLoggedIn",
    "ProvisionError",
    "ServiceUnreachable",
]


class CtlError(Exception):
    """A failure to report as one line; ``exit_code`` is what the process exits with."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class ServiceUnreachable(CtlError):
    pass


class NotLoggedIn(CtlError):
    pass


class BrokerConnectionError(CtlError):
    pass


class ProvisionError(CtlError):
    pass


class ApiError(CtlError):
    """An error answer of the API; the message is built from its problem+json body."""

    def __init__(self, status: int, body: Mapping[str, Any] | None, fallback: str = "") -> None:
        self.status = status
        self.body: Mapping[str, Any] = body or {}
        super().__init__(describe_problem(status, self.body, fallback))


def describe_problem(status: int, body: Mapping[str, Any], fallback: str = "") -> str:
    """One line from a problem+json body: ``title: detail (field: message; ...)``."""
    title = str(body.get("title") or fallback or f"HTTP {status}")
    detail = body.get("detail")
    text = f"{title}: {detail}" if detail and detail != title else title
    errors = body.get("errors")
    if isinstance(errors, Sequence) and not isinstance(errors, str) and errors:
        parts = []
        for item in errors:
            if isinstance(item, Mapping):
                field = item.get("field")
                message = item.get("message", "")
                parts.append(f"{field}: {message}" if field else str(message))
            else:
                parts.append(str(item))
        missing = [part for part in parts if part not in text]  # the detail often lists them
        if missing:
            text = f"{text} ({'; '.join(missing)})"
    return f"{text} [HTTP {status}]"
