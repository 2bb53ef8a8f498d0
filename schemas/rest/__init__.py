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
from schemas.rest.sessions import (
    GapOut,
    RecordingsQuery,
    SegmentOut,
    SessionCreate,
    SessionEnclosureIn,
    SessionEnclosureOut,
    SessionListQuery,
    SessionOut,
    SessionSummary,
    SessionTotals,
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
    "GapOut",
    "Page",
    "PageQuery",
    "Problem",
    "RecordingsQuery",
    "RestOut",
    "SegmentOut",
    "SessionCreate",
    "SessionEnclosureIn",
    "SessionEnclosureOut",
    "SessionListQuery",
    "SessionOut",
    "SessionSummary",
    "SessionTotals",
    "StatusHistoryItem",
    "StatusHistoryQuery",
    "field_errors",
]
