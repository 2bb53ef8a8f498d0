"""Base classes: wire parts and messages (unknown fields ignored) and strict input models."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import MAX_TEXT_LENGTH, UtcDatetime, utc_now

__all__ = ["SCHEMA_VERSION", "StrictModel", "WireMessage", "WirePart"]

SCHEMA_VERSION = 1  # the ``v`` every message of this contract carries


class WirePart(BaseModel):
    """A frozen object inside a message; unknown fields are ignored (newer senders may add some).

    Numbers are finite and strings at most ``MAX_TEXT_LENGTH`` characters unless a field says
    otherwise; ``schemas.codec.parse_message`` refuses NUL characters anywhere.
    """

    model_config = ConfigDict(
        extra="ignore", frozen=True, allow_inf_nan=False, str_max_length=MAX_TEXT_LENGTH
    )


class WireMessage(WirePart):
    """A whole MQTT message. ``label`` names it in error messages (``status.seq: ...``)."""

    label: ClassVar[str] = "message"

    v: int = Field(default=SCHEMA_VERSION, ge=1, description="Schema version of this message.")
    at: UtcDatetime = Field(
        default_factory=utc_now,
        description="When the sender produced this message (UTC, ISO 8601 with offset).",
    )


class StrictModel(BaseModel):
    """Input we refuse on any unknown field: command params, REST request bodies."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
