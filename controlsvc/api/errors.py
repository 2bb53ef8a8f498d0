"""Every error leaves the API as application/problem+json (RFC 9457), never HTML or a traceback."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, cast

from flask import Flask, Response, request
from flask_openapi3.types import ResponseDict
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from controlsvc.domain.errors import DomainError
from schemas.types import unsafe_values

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


# Path plus query of a request, in bytes. Well under what gunicorn's request line allows
# (controlsvc.ops.runner.GUNICORN_REQUEST_LINE_BYTES), so the API answers first, as a problem.
MAX_URI_BYTES = 4096

# --- OpenAPI: every error response is documented as a problem+json `Problem` ---------------

PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"  # registered by app.py
_PROBLEM_DESCRIPTIONS = {
    400: "Malformed request (e.g. the body is not JSON)",
    401: "Missing, bad, expired or revoked token",
    403: "The token's user lacks the role",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    414: "The URL is too long (path and query over MAX_URI_BYTES)",
    415: "The body is not application/json",
    422: "Invalid input; `errors` names each field",
    429: "Too many attempts; see Retry-After",
    503: "A dependency is unavailable",
}


def problem_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of a problem+json error (a new dict each call)."""
    doc: dict[str, Any] = {
        "description": _PROBLEM_DESCRIPTIONS.get(status, "Error"),
        "content": {PROBLEM_MIME: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
    }
    if status == 429:
        doc["headers"] = {
            "Retry-After": {
                "description": "Seconds until another attempt is allowed",
                "schema": {"type": "integer"},
            }
        }
    return doc


def problem_responses(*statuses: int) -> ResponseDict:
    """`responses=` entries for flask-openapi3 routes: {status: problem response, ...}."""
    return {status: problem_response(status) for status in statuses}


def document_uri_limit(spec: dict[str, Any]) -> None:
    """Every operation may answer 414: the limit is checked before any view runs."""
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("414", problem_response(414))


def document_validation_problems(spec: dict[str, Any], status: str = "422") -> None:
    """Replace flask-openapi3's default validation response (a JSON array of pydantic errors)
    by what the API really answers: one problem+json object."""
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            response = (operation.get("responses") or {}).get(status)
            if not isinstance(response, dict):
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("type") == "array":
                operation["responses"][status] = problem_response(int(status))


# pydantic names the member of a union that failed in the error location ("role.str-enum[Role]",
# "location.none"); these tags are not fields and are left out of the field path.
_TYPE_TAGS = frozenset(
    [
        "none",
        "str",
        "int",
        "float",
        "bool",
        "bytes",
        "decimal",
        "uuid",
        "url",
        "date",
        "datetime",
        "time",
        "timedelta",
        "list",
        "dict",
        "set",
        "tuple",
        "model",
        "enum",
    ]
)
_TAG_RE = re.compile(r"[a-z]+(?:-[a-z]+)+|.*\[.*")


def _is_type_tag(part: object, index: int) -> bool:
    if index == 0 or not isinstance(part, str):
        return False
    return part in _TYPE_TAGS or _TAG_RE.fullmatch(part) is not None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic errors as [{field, message}] with dotted field paths.

    For a union (`Role | None`) pydantic reports each member's failure; the "should be None"
    of the optional member is noise next to the real reason and is dropped.
    """
    out: list[dict[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        parts = [p for i, p in enumerate(err["loc"]) if not _is_type_tag(p, i)]
        if err["type"] == "nested_invalid":
            # schemas.errors.raise_nested: the fields of a nested model checked by hand
            # (command params, event data), already named from the model's field on.
            for name, message in err.get("ctx", {}).get("errors", []):
                nested = ".".join([*(str(p) for p in parts), name] if name else map(str, parts))
                out.append({"field": nested or "body", "message": message})
            continue
        field = ".".join(str(part) for part in parts) or "body"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        elif err["type"] == "extra_forbidden":
            message = "is not a known field"
        entry = {"field": field, "message": message}
        if entry not in out:
            out.append(entry)
    fields_with_reasons = {e["field"] for e in out if e["message"] != "Input should be None"}
    return [
        e
        for e in out
        if e["message"] != "Input should be None" or e["field"] not in fields_with_reasons
    ]


def validation_problem(exc: ValidationError) -> Response:
    errors = field_errors(exc)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid input", detail, errors=errors)


def _check_uri_length() -> Response | None:
    """A URL longer than ``MAX_URI_BYTES`` gets a 414 problem before anything reads it (the
    web server's own limit, ``GUNICORN_REQUEST_LINE_BYTES``, is above it)."""
    size = len(request.path.encode()) + len(request.query_string)
    if size <= MAX_URI_BYTES:
        return None
    return problem(
        414,
        "URI too long",
        f"the URL's path and query are {size} bytes, over the limit of {MAX_URI_BYTES}: "
        "narrow the query (fewer or shorter parameters)",
    )


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
        document = json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        return problem(400, "Malformed JSON", "the body is not UTF-8 text")
    except ValueError as exc:
        return problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}")
    except RecursionError:
        return problem(400, "Malformed JSON", "the body is nested too deeply")
    if not isinstance(document, dict):
        # Every body is an object; `null` must not pass for "no body" (an optional one).
        kind = "null" if document is None else type(document).__name__
        return problem(
            422,
            "Invalid input",
            f"the body must be a JSON object, not {kind}",
            errors=[{"field": "body", "message": "must be a JSON object"}],
        )
    # NUL characters (PostgreSQL cannot store them) and 1e400 (infinite), in any field; the
    # models bound the lengths of their own fields.
    unsafe = unsafe_values(document, max_length=None)
    if unsafe:
        errors = [{"field": field or "body", "message": message} for field, message in unsafe]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid input", detail, errors=errors)
    return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def register_error_handlers(app: Flask) -> None:
    app.before_request(_check_uri_length)
    app.before_request(_check_json_body)

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        return problem(exc.status, exc.title, exc.detail, errors=errors)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        return validation_problem(exc)

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError) -> Response:
        # The server went away (a restart: the pool replaces its connections) or refused to
        # go on (a deadlock, a lock timeout): nothing was changed, and a retry may well work.
        log.warning("database error on %s %s: %s", request.method, request.path, exc.orig)
        return problem(
            503,
            "Service unavailable",
            "the database cannot be reached or refused the operation; try again",
            headers={"Retry-After": "1"},
        )

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
