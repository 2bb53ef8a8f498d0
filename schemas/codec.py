"""Turning payload bytes into messages and back, with one error type for every refusal."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from schemas.errors import MessageError, describe_validation_error
from schemas.types import NUL_REFUSED, unsafe_values

__all__ = ["MAX_PAYLOAD_BYTES", "dump_message", "parse_message"]

MAX_PAYLOAD_BYTES = 256 * 1024  # larger payloads are refused unread (the contract's limit)

M = TypeVar("M", bound=BaseModel)


def _label(model: type[BaseModel]) -> str:
    label = getattr(model, "label", None)
    return label if isinstance(label, str) else model.__name__


def parse_message(model: type[M], payload: bytes | bytearray | memoryview | str) -> M:
    """Validate ``payload`` (JSON, UTF-8) as ``model``.

    Raises ``MessageError`` with a short reason naming the field (``status.seq: Input should be
    >= 0``) for payloads over ``MAX_PAYLOAD_BYTES``, not UTF-8, not JSON, holding a NUL
    character anywhere, or failing the schema.
    """
    label = _label(model)
    size = len(payload) if not isinstance(payload, str) else len(payload.encode("utf-8", "replace"))
    if size > MAX_PAYLOAD_BYTES:
        raise MessageError(
            f"{label}: payload of {size} bytes is over the {MAX_PAYLOAD_BYTES} byte limit",
            category="too_large",
        )
    if isinstance(payload, str):
        text = payload
    else:
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(
                f"{label}: payload is not UTF-8 (byte {exc.start})", category="not_utf8"
            ) from None
    if _ESCAPED_NUL in text:
        _refuse_nul(label, text)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = describe_validation_error(exc, label)
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            detail = exc.errors()[0]["msg"]
            raise MessageError(
                f"{label}: {detail}", category="invalid_json", errors=errors
            ) from None
        reason = "; ".join(f"{field}: {message}" for field, message in errors[:3])
        if len(errors) > 3:
            reason += f" (and {len(errors) - 3} more)"
        raise MessageError(reason, errors=errors) from None


# JSON can carry a NUL only escaped: a payload without this text has none (the cheap test that
# spares every other message a walk through its values).
_ESCAPED_NUL = "\\u0000"


def _refuse_nul(label: str, text: str) -> None:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return  # not JSON: the schema's parser says why
    errors = [
        (f"{label}.{field}" if field else label, reason)
        for field, reason in unsafe_values(document, max_length=None)
        if reason == NUL_REFUSED
    ]
    if errors:
        raise MessageError(
            "; ".join(f"{field}: {reason}" for field, reason in errors[:3]), errors=errors
        )


def dump_message(message: BaseModel) -> bytes:
    """``message`` as compact UTF-8 JSON; raises ``MessageError`` if over ``MAX_PAYLOAD_BYTES``."""
    try:
        payload = message.model_dump_json().encode("utf-8")
    except PydanticSerializationError as exc:  # a lone surrogate in a text field: no UTF-8 form
        raise MessageError(
            f"{_label(type(message))}: cannot be encoded as UTF-8 JSON ({exc})", category="not_utf8"
        ) from exc
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(
            f"{_label(type(message))}: payload of {len(payload)} bytes is over the"
            f" {MAX_PAYLOAD_BYTES} byte limit",
            category="too_large",
        )
    return payload
