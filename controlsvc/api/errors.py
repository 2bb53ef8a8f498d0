"""Every error leaves the API as application/problem+json (RFC 9457), never HTML or a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from flask import Flask, Response, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from controlsvc.errors import DomainError

log = logging.getLogger(__name__)

PROBLEM_MIME = "application/problem+json"
# Bodies are only accepted as JSON; anything else is refused before validation.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    type_: str = "about:blank",
) -> Response:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIME)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic errors as [{field, message}] with dotted field paths."""
    out = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        elif err["type"] == "extra_forbidden":
            message = "is not a known field"
        out.append({"field": field, "message": message})
    return out


def validation_problem(exc: ValidationError) -> Response:
    errors = field_errors(exc)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid input", detail, errors=errors)


def _check_json_body() -> Response | None:
    """Refuse non-JSON and malformed JSON bodies with a clear 4xx before any view runs."""
    if request.method not in BODY_METHODS:
        return None
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    if not request.is_json:
        return problem(
            415,
            "Unsupported media type",
            f"request bodies must be application/json, not {request.mimetype or 'unspecified'}",
        )
    try:
        json.loads(raw)
    except UnicodeDecodeError:
        return problem(400, "Malformed JSON", "the body is not UTF-8 text")
    except ValueError as exc:
        return problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}")
    return None


def register_error_handlers(app: Flask) -> None:
    app.before_request(_check_json_body)

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        return problem(exc.status, exc.title, exc.detail, errors=errors)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        return validation_problem(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        if exc.response is not None and exc.response.mimetype == PROBLEM_MIME:
            return cast(Response, exc.response)
        status = exc.code or 500
        headers = {}
        if status == 405 and exc.get_headers():
            headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        detail = exc.description
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            detail = f"the request body is larger than the limit of {limit} bytes"
        return problem(status, exc.name, detail, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return problem(500, "Internal server error", "an unexpected error occurred; it was logged")
