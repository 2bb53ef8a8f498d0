"""Pages of a list and their opaque keyset cursors (``next_cursor`` -> ``cursor``).

A cursor is the sort key of the last item of a page, as URL-safe base64 of a small JSON object,
so a page never skips or repeats rows when others are inserted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, or_

from controlsvc.domain.errors import InvalidInput

__all__ = [
    "BAD_CURSOR",
    "Page",
    "cursor_datetime",
    "cursor_int",
    "cursor_uuid",
    "after_key",
    "next_cursor",
    "decode_cursor",
    "encode_cursor",
]

BAD_CURSOR = "not a cursor of this list (pass next_cursor as given)"

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its items and the cursor of the next page (None on the last)."""

    items: list[Any]
    next_cursor: str | None


def encode_cursor(key: Mapping[str, Any]) -> str:
    """``key`` (JSON-able values; datetimes and UUIDs as strings) as an opaque cursor."""
    document = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in key.items()
    }
    document = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in document.items()}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *names: str) -> dict[str, Any]:
    """The key of ``cursor``; ``InvalidInput`` on field ``cursor`` unless it has every name."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or any(name not in document for name in names):
        raise InvalidInput(BAD_CURSOR, field="cursor")
    return document


def cursor_datetime(value: Any) -> datetime:
    """A timezone-aware datetime from a cursor value, or ``InvalidInput``."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput(BAD_CURSOR, field="cursor")
    return parsed


def cursor_int(value: Any) -> int:
    """An integer key from a cursor value, or ``InvalidInput``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(BAD_CURSOR, field="cursor")
    return value


def cursor_uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(BAD_CURSOR, field="cursor") from None


def after_key(
    time_col: Any, id_col: Any, at: datetime, last_id: Any, *, descending: bool = True
) -> ColumnElement[bool]:
    """The keyset condition of the next page of a list ordered by (time, id): the rows after
    the cursor's (at, last_id), newest first unless ``descending`` is False."""
    if descending:
        return or_(time_col < at, and_(time_col == at, id_col < last_id))
    return or_(time_col > at, and_(time_col == at, id_col > last_id))


def next_cursor(
    rows: Sequence[Row], limit: int, key: Callable[[Row], Mapping[str, Any]]
) -> str | None:
    """The cursor after a page's last row when the query (``limit + 1`` rows) found more than
    ``limit``, else None (the last page); ``key`` is that row's sort key."""
    return encode_cursor(key(rows[limit - 1])) if len(rows) > limit else None
