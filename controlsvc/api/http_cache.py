"""Conditional and compressed JSON reads: ``ETag`` / ``If-None-Match`` -> 304, and gzip.

Every ``GET`` answered ``200`` with a JSON body gets an ``ETag`` (a hash of the body, unless the
view set a cheaper one of its own) and ``Cache-Control: private, no-cache`` (the browser keeps
it and asks again every time), and a request whose ``If-None-Match`` names it gets an empty
304. A view whose validator costs less than its body (``GET /api/enclosures/summary``) checks
it first with ``not_modified`` and builds nothing on a match.

JSON bodies (``application/json`` and ``application/problem+json``) of ``GZIP_MIN_BYTES`` or
more go out gzip-compressed when the request's ``Accept-Encoding`` allows it (``Vary:
Accept-Encoding``). ETags are weak (``W/``): the same JSON, gzipped or not, is the same
representation to a client, so one validator serves both. Flask and Werkzeug do not compress;
Flask-Compress would (it also brings Brotli and zstd and re-evaluates conditional requests
itself), but the standard library's zlib at level 1 is all this needs: JSON shrinks ~10x, at
~1 ms per 300 KB.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable

from flask import Flask, Request, Response, request

from controlsvc.api.kept_bodies import KeptBodies

__all__ = [
    "CACHE_CONTROL",
    "GZIP_LEVEL",
    "GZIP_MIN_BYTES",
    "init_app",
    "kept_json",
    "not_modified",
    "prepared_json",
    "weak_etag",
]

GZIP_MIN_BYTES = 1024  # below, the gzip header and the CPU are not worth it
GZIP_LEVEL = 1  # zlib's fastest: 2,000 summary rows (330 KB) -> 31 KB in ~1 ms
CACHE_CONTROL = "private, no-cache"  # per user (a token), kept, revalidated every time
JSON_MIMETYPES = frozenset({"application/json", "application/problem+json"})


def weak_etag(value: str) -> str:
    return f'W/"{value}"'


def _matches(req: Request, etag: str) -> bool:
    """Does ``If-None-Match`` name ``etag`` (weak comparison, as RFC 9110 says for GET)?"""
    tag = etag.removeprefix("W/").strip('"')
    return req.if_none_match.contains_weak(tag)


def not_modified(etag: str) -> Response | None:
    """A 304 for this request if its ``If-None-Match`` names ``etag``, else None."""
    if request.method not in ("GET", "HEAD") or not _matches(request, etag):
        return None
    response = Response(status=304)
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.vary.add("Accept-Encoding")
    return response


def _conditional(response: Response) -> Response:
    if response.status_code != 200 or request.method not in ("GET", "HEAD"):
        return response
    if response.mimetype != "application/json" or response.is_streamed:
        return response
    etag = response.headers.get("ETag")
    if etag is None:
        digest = hashlib.blake2b(response.get_data(), digest_size=12).hexdigest()
        etag = weak_etag(digest)
        response.headers["ETag"] = etag
    response.headers.setdefault("Cache-Control", CACHE_CONTROL)
    if _matches(request, etag):
        response.status_code = 304
        response.set_data(b"")
        response.headers.pop("Content-Length", None)
        response.headers.pop("Content-Type", None)
    return response


def _compress(response: Response) -> Response:
    if response.mimetype not in JSON_MIMETYPES or response.is_streamed:
        return response
    if response.status_code == 304:
        response.vary.add("Accept-Encoding")
        return response
    response.vary.add("Accept-Encoding")
    if "Content-Encoding" in response.headers:
        return response
    body = response.get_data()
    if not _gzip_wanted(len(body)):
        return response
    response.set_data(gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    return response


def _gzip_wanted(size: int) -> bool:
    """Should a JSON body of ``size`` bytes go out gzipped to this request?"""
    return size >= GZIP_MIN_BYTES and request.accept_encodings["gzip"] > 0


def prepared_json(body: bytes, etag: str, gzipped: Callable[[], bytes]) -> Response:
    """A JSON response of ``body`` whose gzip form the caller keeps (``gzipped`` is called
    only when the request takes gzip): nothing is compressed again after the view."""
    if _gzip_wanted(len(body)):
        response = Response(gzipped(), mimetype="application/json")
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(body, mimetype="application/json")
    response.headers["ETag"] = etag
    response.vary.add("Accept-Encoding")
    return response


def kept_json(
    kept: KeptBodies, key: str, settled: str, etag: str, build: Callable[[], bytes]
) -> Response:
    """A costly JSON body behind a cheap validator (``store.body_versions``): 304 when the
    request names ``etag``; else the body ``kept`` holds for ``key`` under ``settled`` (304 if
    the request names that one's ETag); else ``build()``'s, kept under ``etag``."""
    unchanged = not_modified(etag)
    if unchanged is not None:
        return unchanged
    built = kept.get(key, settled)
    if built is not None:  # kept: only the figures statuses move may have moved since
        unchanged = not_modified(built.etag)
        if unchanged is not None:
            return unchanged
    else:
        built = kept.put(key, settled, etag, build())
    return prepared_json(built.body, built.etag, built.gzipped)


def _finish(response: Response) -> Response:
    if response.direct_passthrough:  # files and streams go out as they are
        return response
    return _compress(_conditional(response))


def init_app(app: Flask) -> None:
    """Run after every other ``after_request`` function but the request metrics' (Flask runs
    them last-registered first): the commit has happened, the body is final."""
    funcs = app.after_request_funcs.setdefault(None, [])
    funcs.insert(0, _finish)
