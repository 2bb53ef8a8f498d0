"""Errors raised by the wire contract.

::

    ValueError
    └── ContractError          anything in this package refuses
        ├── TopicError         a topic we did not build, a bad enclosure id in it,
        │                      an unknown channel, or a wildcard in a topic we publish to
        └── MessageError       a payload that is too large, not UTF-8, not JSON, or fails its schema

``validate_enclosure_id`` raises a plain ``ValueError`` so pydantic can use it as a validator.
``describe_validation_error`` turns a pydantic ``ValidationError`` into ``(field, message)`` pairs
with dotted field paths (``camera.measured_fps``), as used by ``MessageError`` and REST problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NoReturn

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

__all__ = [
    "ContractError",
    "MessageError",
    "MessageErrorCategory",
    "TopicError",
    "describe_validation_error",
    "raise_field_errors",
    "raise_nested",
]

MessageErrorCategory = Literal["too_large", "not_utf8", "invalid_json", "schema"]
"""Low-cardinality reason for a refused payload; fit for a metrics label."""

# The pydantic error type that carries field errors of a nested model validated by hand
# (command params, event data) so their paths survive: see ``raise_nested``.
_NESTED_ERROR_TYPE = "nested_invalid"


class ContractError(ValueError):
    """Something the wire contract refuses."""


class TopicError(ContractError):
    """A topic that is not ours, names an invalid enclosure id or channel, or has wildcards."""


class MessageError(ContractError):
    """A payload that cannot be accepted as the expected message.

    ``str(err)`` is a short human reason naming the field:
    ``status.seq: Input should be greater than or equal to 0``.
    ``category`` is one of ``too_large``, ``not_utf8``, ``invalid_json``, ``schema``;
    ``errors`` lists every ``(field, message)`` pair for schema failures.
    """

    def __init__(
        self,
        reason: str,
        *,
        category: MessageErrorCategory = "schema",
        errors: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.category: MessageErrorCategory = category
        self.errors: tuple[tuple[str, str], ...] = tuple(errors)


def _join(prefix: str, loc: Sequence[int | str]) -> str:
    parts = [prefix] if prefix else []
    parts.extend(str(p) for p in loc)
    return ".".join(parts)


def _message(error: Any) -> str:
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return str(error["msg"])


def describe_validation_error(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """``(field, message)`` for every error in ``exc``; fields are dotted paths under ``prefix``.

    Errors raised through ``raise_nested`` are expanded into the nested fields they name.
    An error about the whole object has the field ``prefix`` (or ``""``).
    """
    out: list[tuple[str, str]] = []
    for error in exc.errors():
        loc = error["loc"]
        if error["type"] == _NESTED_ERROR_TYPE:
            for field, message in error["ctx"]["errors"]:
                out.append((_join(_join(prefix, loc), [field] if field else []), message))
            continue
        out.append((_join(prefix, loc), _message(error)))
    return out


def raise_nested(field: str, exc: ValidationError) -> NoReturn:
    """Re-raise ``exc`` (a nested value validated by hand) so its field paths start at ``field``.

    For use inside a pydantic validator; ``describe_validation_error`` expands the result.
    """
    raise_field_errors(describe_validation_error(exc, field))


def raise_field_errors(errors: Sequence[tuple[str, str]]) -> NoReturn:
    """Raise ``(field, message)`` pairs from inside a pydantic validator, fields relative to the
    value validated; ``describe_validation_error`` expands them under that value's path."""
    pairs = [[name, message] for name, message in errors]
    summary = "; ".join(f"{name}: {message}" if name else message for name, message in pairs)
    raise PydanticCustomError(
        _NESTED_ERROR_TYPE, "{summary}", {"summary": summary, "errors": pairs}
    )
