"""Shared REST bodies: RFC 9457 problems, cursor pages, the output model base."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.base import StrictModel
from schemas.errors import describe_validation_error

__all__ = [
    "DEFAULT_PAGE_LIMIT",
    "MAX_PAGE_LIMIT",
    "PROBLEM_CONTENT_TYPE",
    "FieldError",
    "Page",
    "PageQuery",
    "Problem",
    "RestOut",
    "field_errors",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 500  # one page stays well under a second to serialise

T = TypeVar("T")


class RestOut(BaseModel):
    """A response body: built from ORM rows (``from_attributes``); unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)


class FieldError(RestOut):
    field: str = Field(description="Dotted path of the field, e.g. 'params.duration_s'.")
    message: str = Field(description="What is wrong with it.")


class Problem(RestOut):
    """An error response (RFC 9457, ``application/problem+json``)."""

    type: str = Field(default="about:blank", description="URI identifying the problem type.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(ge=100, le=599, description="The HTTP status code.")
    detail: str | None = Field(default=None, description="Explanation of this occurrence.")
    instance: str | None = Field(default=None, description="URI of this occurrence.")
    errors: list[FieldError] = Field(
        default_factory=list, description="Per-field validation errors."
    )


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """The ``errors`` of a problem from a pydantic ``ValidationError`` (nested params expanded)."""
    return [FieldError(field=f, message=m) for f, m in describe_validation_error(exc, prefix)]


class Page(RestOut, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` to get the next (null: no more)."""

    items: list[T] = Field(description="The items of this page.")
    next_cursor: str | None = Field(default=None, description="Cursor of the next page, or null.")


class PageQuery(StrictModel):
    """Query parameters of every list."""

    limit: int = Field(
        default=DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT, description="Items per page."
    )
    cursor: str | None = Field(
        default=None, max_length=512, description="next_cursor of the previous page."
    )
