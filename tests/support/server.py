"""Serve a Flask app on a real socket in a thread (werkzeug's threaded server)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from flask import Flask
from werkzeug.serving import make_server

# socketserver's default (0.5 s) is how long shutdown() can wait for the serving loop to look:
# every test that serves would pay it at teardown.
POLL_INTERVAL_S = 0.02


@contextlib.contextmanager
def serve(
    app: Flask,
    host: str = "127.0.0.1",
    *,
    before_shutdown: Callable[[], None] | None = None,
) -> Iterator[str]:
    """The base URL of `app` served on a free port of `host`, one thread per request.

    ``before_shutdown`` runs first at the end, e.g. to end open streams so their threads finish.
    """
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        if before_shutdown is not None:
            before_shutdown()
        server.shutdown()
        server.server_close()
        thread.join(10)
