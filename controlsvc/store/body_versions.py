"""Cheap validators for bodies that are costly to build (the fleet summary, a session's
detail): one aggregate statement instead of the rows, digested. No Flask here."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Version", "digest"]


@dataclass(frozen=True, slots=True)
class Version:
    """A body's validator in two parts. ``settled`` moves with what a user acts on or waits
    for: a state, an edit, a registration, an alert, a session joined or left. The rest moves
    with every status (last seen, disk, fps, a recording's figures), many times a second in a
    live fleet. ``etag`` covers both: the body as it stands."""

    settled: str
    etag: str


def digest(parts: Sequence[Any]) -> str:
    text = "|".join("" if p is None else str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
