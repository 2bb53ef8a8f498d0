"""The web UI: static ES modules and one CSS file from ``controlsvc/static/ui``, no build step.

``/`` and the emailed links (``/invite/<token>``, ``/reset-password/<token>``) answer
``index.html``; the UI routes with hash URLs (``/#/enclosures/enc-a``), so deep links need no
server rules. Assets live under ``/ui/``. None of this needs a token: the page holds no data, the
API behind it checks every call. Every asset is local (the Content-Security-Policy says so, and
the browser refuses anything else), so the UI works without internet access. See docs/ui.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_from_directory

from controlsvc.config.settings import Settings

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "bp", "register"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "ui"
# Only our own origin: no CDN, font or inline script can load, even by mistake.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
# Revalidate every time (ETag / Last-Modified): an upgraded service serves its new UI at once.
CACHE_CONTROL = "no-cache"
# An emailed link's token: long enough for ours (43 characters), never a path.
LINK_RULE = "<string(maxlength=128):token>"

bp = Blueprint("ui", __name__)


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the emailed links carry tokens
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


@bp.get("/")
def index() -> Response:
    return _headers(send_from_directory(STATIC_DIR, "index.html"))


@bp.get(f"/invite/{LINK_RULE}")
@bp.get(f"/reset-password/{LINK_RULE}")
def emailed_link(token: str) -> Response:
    """The page behind an emailed link; the UI reads the token from the path."""
    del token
    return index()


@bp.get("/ui/<path:filename>")
def asset(filename: str) -> Response:
    """A file of the UI (``send_from_directory`` refuses paths outside the directory: 404)."""
    return _headers(send_from_directory(STATIC_DIR, filename))


def register(app: Any, app_settings: Settings) -> None:
    del app_settings
    app.register_blueprint(bp)
