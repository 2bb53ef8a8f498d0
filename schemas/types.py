"""Constrained scalar types shared by the wire messages and the REST bodies."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints, WithJsonSchema

__all__ = [
    "FILE_PREFIX_PATTERN",
    "MAX_RECORDING_S",
    "SESSION_ID_PATTERN",
    "BootId",
    "FilePrefix",
    "Fps",
    "Sha256",
    "SessionId",
    "UtcDatetime",
    "utc_now",
]

MAX_RECORDING_S = 31 * 24 * 3600  # longest single recording: a month-long experiment
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # one safe path component
FILE_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # safe in any file system


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
