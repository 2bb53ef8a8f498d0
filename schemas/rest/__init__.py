"""REST request and response bodies (``/api``); errors are RFC 9457 problems."""

from __future__ import annotations

from schemas.rest.common import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    Page,
    PageQuery,
    Problem,
    RestOut,
    field_errors,
)
from schemas.rest.enclosures import (
    CommandCreate,
    CommandOut,
    CommandWaitQuery,
    EnclosureCreate,
    EnclosureListQuery,
    EnclosureOut,
    EnclosurePatch,
    EnclosureRegistered,
    StatusHistoryItem,
    StatusHistoryQuery,
)

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "CommandCreate",
    "CommandOut",
    "CommandWaitQuery",
    "EnclosureCreate",
    "EnclosureListQuery",
    "EnclosureOut",
    "EnclosurePatch",
    "EnclosureRegistered",
    "FieldError",
    "Page",
    "PageQuery",
    "Problem",
    "RestOut",
    "StatusHistoryItem",
    "StatusHistoryQuery",
    "field_errors",
]
