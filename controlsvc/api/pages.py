"""The JSON body of one page of a list (``schemas.rest.common.Page``): its items and the cursor
of the next page, the same shape for every paginated view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from controlsvc.store.pagination import Page

__all__ = ["page_body"]


def _json(item: BaseModel) -> Any:
    return item.model_dump(mode="json")


def page_body(page: Page, item: Callable[[Any], Any] = _json) -> dict[str, Any]:
    """``{"items": [...], "next_cursor": ...}``; ``item`` turns one row into JSON (default: a
    pydantic model's JSON form)."""
    return {"items": [item(row) for row in page.items], "next_cursor": page.next_cursor}
