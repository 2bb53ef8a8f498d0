"""Cross-origin requests to ``/api/`` from the origins in ``[SERVICE] cors_origins``.

The web UI is served by the service itself and needs none of this. A lab's own page on another
origin (a dashboard, a notebook server) may call the API when its origin is listed: the answer
then carries ``Access-Control-Allow-Origin`` with that origin, and preflight requests
(``OPTIONS`` with ``Access-Control-Request-Method``) are answered without a token. Tokens travel
in the ``Authorization`` header, never in cookies, so credentials are not allowed. No origin is
allowed by default; ``*`` allows any.
"""

from __future__ import annotations

from flask import Flask, Request, Response, request

__all__ = ["ALLOWED_HEADERS", "EXPOSED_HEADERS", "MAX_AGE_S", "allowed_origin", "init_app"]

ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
# What a script may read of an answer besides the simple headers: the export's file name, the
# problem type, rate-limit hints.
EXPOSED_HEADERS = "Content-Disposition, Retry-After, Location"
ALLOWED_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
MAX_AGE_S = 600  # browsers cache a preflight answer this long


def allowed_origin(origins: frozenset[str], origin: str | None) -> str | None:
    """The value of ``Access-Control-Allow-Origin`` for ``origin``, or None."""
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def _is_preflight(req: Request) -> bool:
    return req.method == "OPTIONS" and "Access-Control-Request-Method" in req.headers


def init_app(app: Flask, origins: frozenset[str]) -> None:
    if not origins:
        return

    @app.before_request
    def _preflight() -> Response | None:
        if not request.path.startswith("/api/") or not _is_preflight(request):
            return None
        response = Response(status=204)
        allow = allowed_origin(origins, request.headers.get("Origin"))
        if allow is not None:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
        response.headers["Vary"] = "Origin"
        return response

    @app.after_request
    def _allow(response: Response) -> Response:
        if not request.path.startswith("/api/") or _is_preflight(request):
            return response
        allow = allowed_origin(origins, request.headers.get("Origin"))
        if allow is not None:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.vary.add("Origin")
        return response
