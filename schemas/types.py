"""Constrained scalar types shared by the wire messages and the REST bodies."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from schemas.errors import raise_field_errors

__all__ = [
    "FILE_PREFIX_PATTERN",
    "MAX_REASON_LENGTH",
    "MAX_RECORDING_S",
    "MAX_TEXT_LENGTH",
    "SESSION_ID_PATTERN",
    "BootId",
    "FilePrefix",
    "Fps",
    "JsonObject",
    "LongJsonObject",
    "Reason",
    "Sha256",
    "SessionId",
    "UtcDatetime",
    "unsafe_values",
    "utc_now",
]

MAX_RECORDING_S = 31 * 24 * 3600  # longest single recording: a month-long experiment
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # one safe path component
FILE_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # safe in any file system
# Longest string anywhere in a wire message unless its field says less: PATH_MAX, for paths.
MAX_TEXT_LENGTH = 4096
# A human reason (an exception's text, say) longer than this is cut, not refused: the fact it
# comes with matters more than the end of its explanation.
MAX_REASON_LENGTH = 1000
NUL_REFUSED = "must not contain NUL characters"
NOT_FINITE = "must be a finite number (not NaN or Infinity)"


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An ISO 8601 time with an offset (naive times are refused), converted to UTC."""


def _matching(pattern: str, rule: str) -> Callable[[str], str]:
    regex = re.compile(pattern.removeprefix("^").removesuffix("$"))

    def check(value: str) -> str:
        if regex.fullmatch(value) is None:
            raise ValueError(f"{value[:80]!r} is not valid: {rule}")
        return value

    return check


_SAFE_NAME_RULE = (
    "1 to 64 characters: letters, digits, '.', '_' and '-', starting with a letter or a digit"
)

SessionId = Annotated[
    str,
    AfterValidator(_matching(SESSION_ID_PATTERN, _SAFE_NAME_RULE)),
    WithJsonSchema({"type": "string", "pattern": SESSION_ID_PATTERN}),
]
"""A session id; also a directory name on the enclosure, so one safe path component."""

FilePrefix = Annotated[
    str,
    AfterValidator(_matching(FILE_PREFIX_PATTERN, _SAFE_NAME_RULE)),
    WithJsonSchema({"type": "string", "pattern": FILE_PREFIX_PATTERN}),
]
"""The first part of recorded file names: letters, digits, '.', '_' and '-' (1-64 characters)."""

BootId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
"""Identifies one run of an agent (a new random id at each start)."""

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 digest, lowercase hex."""

Fps = Annotated[int, Field(ge=1, le=120)]
"""A target frame rate in frames per second."""


# A lone surrogate (a file name decoded with surrogateescape, say) has no UTF-8 form.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _cut(value: object) -> object:
    if not isinstance(value, str):
        return value
    value = _LONE_SURROGATE.sub("\ufffd", value)
    if len(value) > MAX_REASON_LENGTH:
        return value[: MAX_REASON_LENGTH - 1] + "\u2026"
    return value


Reason = Annotated[str, BeforeValidator(_cut), StringConstraints(max_length=MAX_REASON_LENGTH)]
"""Human text explaining something; cut to ``MAX_REASON_LENGTH`` characters (ending in …), a
lone surrogate replaced by U+FFFD so that the sentence can still be sent."""


def unsafe_values(value: object, max_length: int | None = MAX_TEXT_LENGTH) -> list[tuple[str, str]]:
    """Where decoded JSON holds what no field may: a NUL character or more than ``max_length``
    characters in a string (or key), or a number that is NaN or infinite (``1e400``).

    ``(dotted field path, reason)`` pairs, ``""`` for the value itself; iterative, so any depth
    the JSON parser took is fine.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, object]] = [("", value)]

    def text(path: str, item: str) -> None:
        if "\x00" in item:
            found.append((path, NUL_REFUSED))
        elif max_length is not None and len(item) > max_length:
            found.append((path, f"is longer than {max_length} characters ({len(item)})"))

    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            text(path, item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                found.append((path, NOT_FINITE))
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    text(child_path, key)
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item))
    return sorted(found)


def _plain_json(max_length: int | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        problems = unsafe_values(value, max_length)
        if problems:
            raise_field_errors(problems)
        return value

    return check


JsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json(MAX_TEXT_LENGTH))]
"""Free-form JSON (event data, command params): finite numbers, no NUL, bounded strings."""

LongJsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json(None))]
"""Free-form JSON whose strings may be long (a snapshot's base64 JPEG in an ack's data); the
payload limit bounds them. Finite numbers and no NUL, as everywhere."""
