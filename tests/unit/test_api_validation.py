"""`controlsvc.api.validation`: the same query parsing as flask-openapi3, schema looked up once."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_openapi3.request import _validate_query
from pydantic import BaseModel, ConfigDict, Field

from controlsvc.api.validation import _query, _query_fields


class Query(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    tags: list[str] = Field(default_factory=list)
    maybe: list[int] | None = None
    name: str | None = Field(default=None, alias="n")
    limit: int = 10


@pytest.mark.parametrize(
    "query_string",
    [
        "",
        "tags=a&tags=b&maybe=1&maybe=2&n=x&limit=3",
        "name=by-name&limit=",
        "extra=1&tags=a",
        "n=&tags=",
    ],
)
def test_query_parsing_matches_flask_openapi3(query_string: str) -> None:
    app = Flask(__name__)
    with app.test_request_context(f"/?{query_string}"):
        theirs: dict[str, object] = {}
        try:
            _validate_query(Query, theirs)
            expected: object = theirs["query"]
        except Exception as exc:  # the same validation error either way
            expected = type(exc)
        try:
            ours: object = _query(Query)
        except Exception as exc:
            ours = type(exc)
        assert ours == expected


def test_query_schema_is_derived_once() -> None:
    assert _query_fields(Query) is _query_fields(Query)
    assert [(name, is_list) for name, _alias, is_list, _null in _query_fields(Query)] == [
        ("tags", True),
        ("maybe", True),
        ("name", False),
        ("limit", False),
    ]
