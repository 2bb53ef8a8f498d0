"""Request validation for views behind `tokens.require_token` / `require_role`.

flask-openapi3's `validate_request()` re-derives the view's parameter models on every request
(`parse_parameters`: type hints plus an OpenAPI schema of each model) and its query parsing
builds the query model's JSON schema each time: together milliseconds per request. Here the
models are resolved once per view and the query model's list fields once per model; the
validation itself (and its 422 answer) is flask-openapi3's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from flask import abort, current_app, request
from flask_openapi3.request import _validate_request  # the library's own validation steps
from flask_openapi3.utils import parse_parameters
from pydantic import BaseModel, ValidationError

__all__ = ["validated"]

P = ParamSpec("P")
R = TypeVar("R")
# flask-openapi3 then leaves validation to the view (it checks this attribute).
DELAY_ATTRIBUTE = "__delay_validate_request__"


@functools.cache
def _query_fields(model: type[BaseModel]) -> tuple[tuple[str, str | None, bool, bool], ...]:
    """(field name, alias, takes a list, explicit null) per field, from the schema, as
    flask-openapi3 derives them."""
    properties = model.model_json_schema().get("properties", {})
    fields = []
    for name, info in model.model_fields.items():
        schema = properties.get(info.alias or name, {})
        is_list = schema.get("type") == "array" or any(
            m.get("type") == "array" for m in schema.get("anyOf", [])
        )
        fields.append((name, info.alias, is_list, schema.get("type") == "null"))
    return tuple(fields)


def _query(model: type[BaseModel]) -> BaseModel:
    """flask-openapi3's `_validate_query` with the schema looked up once."""
    args = request.args
    by_name = bool(model.model_config.get("populate_by_name"))
    values: dict[str, Any] = {}
    for name, alias, is_list, null in _query_fields(model):
        key = alias or name
        if is_list:
            value: Any = args.getlist(key)
            if alias and by_name:
                value = value or args.getlist(name)
        else:
            value = args.get(key)
            if alias and by_name:
                value = value or args.get(name)
        if value is not None and value != []:
            values[key] = value
        if null:
            values[key] = value
    for key, value in args.items():  # extra keys: the model decides (forbid, ignore)
        values.setdefault(key, value)
    return model.model_validate(values)


def validated(view: Callable[P, R]) -> Callable[P, R]:
    """`view` called with its `header`/`cookie`/`path`/`query`/`form`/`body`/`raw` arguments
    validated from the request (422 problem on failure), like flask-openapi3's."""
    models: tuple[Any, ...] | None = None

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal models
        if models is None:  # on first use: the type hints may refer to later definitions
            models = tuple(parse_parameters(view, doc_ui=False))
        header, cookie, path, query, form, body, raw = models
        # The library's order: header, cookie, path, query, form, body.
        view_kwargs = _validate_request(header, cookie, path, path_kwargs=kwargs)
        if query is not None:
            try:
                view_kwargs["query"] = _query(query)
            except ValidationError as exc:
                abort(current_app.validation_error_callback(exc))  # type: ignore[attr-defined]
        view_kwargs.update(_validate_request(form=form, body=body, raw=raw))
        view_kwargs.update(kwargs)
        return view(*args, **view_kwargs)

    setattr(wrapper, DELAY_ATTRIBUTE, True)
    return cast(Callable[P, R], wrapper)
