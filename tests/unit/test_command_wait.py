"""`GET /api/commands/{id}?wait=` answering from a terminal `command.updated` event."""

from __future__ import annotations

import uuid
from typing import Any

from controlsvc.api.commands import _terminal_update


def _record(state: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "enclosure_id": "enc-a",
        "kind": "ping",
        "params": {},
        "state": state,
        "created_at": "2026-11-25T12:00:00Z",
        "sent_at": "2026-11-25T12:00:00.010000Z",
        "settled_at": "2026-11-25T12:00:00.020000Z" if state == "succeeded" else None,
        "deadline_at": "2026-11-25T12:00:10Z",
        "detail": None,
        "result": {"pong": True} if state == "succeeded" else None,
        "enclosure_state": "idle",
    }


def test_a_terminal_record_is_the_answer_in_the_api_form():
    record = _record("succeeded")
    answer = _terminal_update(record)
    assert answer is not None
    assert answer["state"] == "succeeded"
    assert answer["id"] == record["id"]
    assert answer["result"] == {"pong": True}
    assert answer["settled_at"] == "2026-11-25T12:00:00.020000Z"


def test_an_unsettled_or_unknown_record_is_not():
    assert _terminal_update(None) is None
    assert _terminal_update(_record("accepted")) is None
    assert _terminal_update({"state": "succeeded"}) is None  # not a whole record: read instead
