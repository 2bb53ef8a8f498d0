"""Enclosure ids and the reserved broker account names.

An enclosure id is also the enclosure's MQTT username and client id and a topic level, so it is
restricted to ``^[a-z0-9][a-z0-9-]{0,62}$`` and is refused, never mangled, when it does not fit.
The service and operator broker accounts use an underscore, which no enclosure id can contain,
so an enclosure can never take their names.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

__all__ = [
    "DEFAULT_OPERATOR_USERNAME",
    "DEFAULT_SERVICE_USERNAME",
    "ENCLOSURE_ID_MAX_LENGTH",
    "ENCLOSURE_ID_PATTERN",
    "EnclosureId",
    "is_enclosure_id",
    "validate_enclosure_id",
]

ENCLOSURE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ENCLOSURE_ID_MAX_LENGTH = 63  # one DNS label: ids double as hostnames in some sites
_ENCLOSURE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_FORBIDDEN_CHAR_RE = re.compile(r"[^a-z0-9-]")

# Broker accounts of the service (reads/writes everything it needs) and of operators (read-only).
# The underscore keeps them outside the enclosure id alphabet.
DEFAULT_SERVICE_USERNAME = "jaxmba_service"
DEFAULT_OPERATOR_USERNAME = "jaxmba_operator"


def is_enclosure_id(value: object) -> bool:
    """True when ``value`` is a valid enclosure id."""
    return isinstance(value, str) and _ENCLOSURE_ID_RE.fullmatch(value) is not None


def validate_enclosure_id(value: object) -> str:
    """``value`` unchanged if it is a valid enclosure id; else raise ``ValueError`` saying why."""
    if not isinstance(value, str):
        raise ValueError(f"enclosure id must be a string, not {type(value).__name__}")  # noqa: TRY004
    if _ENCLOSURE_ID_RE.fullmatch(value) is not None:
        return value
    if not value:
        raise ValueError("enclosure id must not be empty")
    if len(value) > ENCLOSURE_ID_MAX_LENGTH:
        raise ValueError(
            f"enclosure id {value[:20]!r}... is {len(value)} characters long;"
            f" at most {ENCLOSURE_ID_MAX_LENGTH} are allowed"
        )
    bad = sorted(set(_FORBIDDEN_CHAR_RE.findall(value)))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        hint = " (use lowercase)" if any(c.isupper() for c in bad) else ""
        raise ValueError(
            f"enclosure id {value!r} contains {shown}{hint}; only lowercase letters a-z, digits"
            " and '-' are allowed"
        )
    raise ValueError(f"enclosure id {value!r} must start with a lowercase letter or a digit")


EnclosureId = Annotated[
    str,
    AfterValidator(validate_enclosure_id),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ENCLOSURE_ID_PATTERN,
            "minLength": 1,
            "maxLength": ENCLOSURE_ID_MAX_LENGTH,
            "examples": ["enc-01"],
        }
    ),
]
"""A ``str`` that pydantic validates with ``validate_enclosure_id``."""
