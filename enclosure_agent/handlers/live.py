"""``start_live_view``, ``stop_live_view`` and ``snapshot``."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from enclosure_agent.handlers.base import AgentControl, Outcome
from enclosure_agent.recorder import CapturedFrame, RecorderError, encode_jpeg
from schemas.codec import MAX_PAYLOAD_BYTES
from schemas.commands import StartLiveViewParams

__all__ = ["snapshot", "start_live_view", "stop_live_view"]

FRESH_FRAME_S = 1.0  # a frame this recent answers a snapshot at once
SNAPSHOT_WAIT_S = 8.0  # opening a camera and getting a first frame takes a few seconds at most
ACK_ROOM_BYTES = 4096  # the rest of the ack around the base64 JPEG
SNAPSHOT_QUALITIES = (90, 75, 50, 30)  # tried in turn until the ack fits the payload limit


def start_live_view(agent: AgentControl, params: BaseModel) -> Outcome:
    assert isinstance(params, StartLiveViewParams)
    until = agent.now() + timedelta(seconds=params.duration_s)
    agent.set_live_view(until)
    return Outcome.succeeded(data={"until": until.isoformat()})


def stop_live_view(agent: AgentControl, params: BaseModel) -> Outcome:
    del params
    agent.set_live_view(None)
    return Outcome.succeeded()


def snapshot_data(frame: CapturedFrame, max_width: int) -> dict[str, Any]:
    """The ack data of a snapshot: one JPEG, base64, small enough for one message."""
    limit = (MAX_PAYLOAD_BYTES - ACK_ROOM_BYTES) * 3 // 4
    jpeg = b""
    for quality in SNAPSHOT_QUALITIES:
        jpeg = encode_jpeg(frame, max_width=max_width, quality=quality)
        if len(jpeg) <= limit:
            break
    else:
        jpeg = encode_jpeg(frame, max_width=max(64, max_width // 2), quality=30)
    return {
        "jpeg_base64": base64.b64encode(jpeg).decode("ascii"),
        "content_type": "image/jpeg",
        "captured_at": frame.captured_at.isoformat(),
        "frame_index": frame.index,
        "bytes": len(jpeg),
    }


def snapshot(agent: AgentControl, params: BaseModel) -> Outcome:
    del params
    width = agent.config.preview.width
    frame = agent.latest_frame(FRESH_FRAME_S)
    if frame is not None:
        return _answer(frame, width)

    def wait() -> Outcome:
        fresh = agent.wait_for_frame(SNAPSHOT_WAIT_S)
        if fresh is None:
            return Outcome.failed(f"no frame from the camera within {SNAPSHOT_WAIT_S:g} s")
        return _answer(fresh, width)

    return Outcome.accepted(wait, "waiting for a camera frame")


def _answer(frame: CapturedFrame, width: int) -> Outcome:
    try:
        return Outcome.succeeded(data=snapshot_data(frame, width))
    except RecorderError as exc:
        return Outcome.failed(f"JPEG encoding failed: {exc}")
