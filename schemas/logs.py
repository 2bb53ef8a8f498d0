"""Log lines as JSON objects, one per line, for labs that ship logs to Loki or ELK.

Shared by the service (API, bridge) and the agent, so both write the same fields:

``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``process`` (api, bridge, agent...),
``pid``, and when known ``enclosure_id``, ``session_id``, ``command_id``; ``exc`` holds a
traceback. The ids come from ``extra=log_ids(...)`` on a log call, else from what ``bind``
set for the current context (an API request, a command being handled), else from the
formatter's ``static`` fields (an agent's own enclosure id).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "ID_FIELDS",
    "LogFormat",
    "JsonFormatter",
    "bind",
    "bound_ids",
    "configure_logging",
    "log_ids",
    "reset_ids",
    "set_ids",
]

LogFormat = Literal["text", "json"]
ID_FIELDS = ("enclosure_id", "session_id", "command_id")
_NONE: Mapping[str, str] = MappingProxyType({})
_BOUND: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "jaxmba_log_ids", default=_NONE
)


def log_ids(
    enclosure_id: object = None, session_id: object = None, command_id: object = None
) -> dict[str, str]:
    """``extra=`` for a log call: the ids it concerns (None left out)."""
    given = {"enclosure_id": enclosure_id, "session_id": session_id, "command_id": command_id}
    return {name: str(value) for name, value in given.items() if value is not None}


def bound_ids() -> Mapping[str, str]:
    return _BOUND.get()


def set_ids(ids: Mapping[str, str]) -> contextvars.Token[Mapping[str, str]]:
    """Bind ``ids`` to the current context until ``reset_ids`` (for request hooks)."""
    return _BOUND.set({**_BOUND.get(), **ids})


def reset_ids(token: contextvars.Token[Mapping[str, str]]) -> None:
    _BOUND.reset(token)


@contextmanager
def bind(**ids: object) -> Iterator[None]:
    """Every log line in this block carries these ids (None left out)."""
    token = set_ids(log_ids(**ids))
    try:
        yield
    finally:
        reset_ids(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``static`` fields are added to every line."""

    def __init__(self, process: str = "", static: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.process = process
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process or record.processName,
            "pid": record.process or os.getpid(),
        }
        bound = _BOUND.get()
        for name in ID_FIELDS:
            value = getattr(record, name, None) or bound.get(name) or self.static.get(name)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(
    level: str | int,
    log_format: LogFormat,
    *,
    text_format: str,
    process: str = "",
    static: Mapping[str, str] | None = None,
) -> logging.Handler:
    """The root logger writes to stderr as text (``text_format``) or JSON lines; the handler."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(process, static))
    else:
        handler.setFormatter(logging.Formatter(text_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
