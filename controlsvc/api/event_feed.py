"""One event feed per API process (``controlsvc.mqtt.event_feed.EventFeed``), kept in
``app.extensions``, and the gunicorn hook that ends long-lived responses (event streams, MJPEG
live views) at once when a worker stops.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from controlsvc.api import token_cache
from controlsvc.mqtt.event_feed import EventFeed, shutdown_all

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)


EXTENSION_KEY = "jaxmba.live"
# get_feed makes one feed per app and process at a time.
_APP_FEEDS_LOCK = threading.Lock()


# -- one feed per process -------------------------------------------------------------------------
def get_feed(app: Flask) -> EventFeed:
    """The started feed of `app` in this process (made on first use; a forked child makes its
    own). Raises `Unavailable` when the event log cannot be read."""
    from controlsvc.api.web import DATABASE_KEY, SETTINGS_KEY

    with _APP_FEEDS_LOCK:
        feed = cast("EventFeed | None", app.extensions.get(EXTENSION_KEY))
        if feed is None or feed.pid != os.getpid() or feed.closed:
            feed = EventFeed(
                app.extensions[SETTINGS_KEY],
                app.extensions[DATABASE_KEY],
                auth_listener=app.extensions.get(token_cache.EXTENSION_KEY),
            )
            app.extensions[EXTENSION_KEY] = feed
    return feed.start()


def current_feed() -> EventFeed:
    """The feed of the current Flask app (see `get_feed`)."""
    from flask import current_app

    return get_feed(current_app)


def close_feed(app: Flask) -> None:
    """Close the feed of `app` if it has one (tests, app shutdown)."""
    feed = cast("EventFeed | None", app.extensions.pop(EXTENSION_KEY, None))
    if feed is not None:
        feed.close()


def _end_streams() -> None:
    """End both kinds of long-lived responses: event streams and MJPEG live views."""
    from controlsvc.mqtt import preview as mqtt_preview

    shutdown_all()
    mqtt_preview.shutdown_all()


def gunicorn_post_worker_init(worker: Any) -> None:
    """gunicorn `post_worker_init` hook: on SIGTERM, end the event streams at once.

    gunicorn waits up to its graceful timeout for open requests; an event stream never finishes
    by itself, so without this every stopping worker would hang that long.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # A signal handler must not take locks the interrupted code may hold: use a thread.
        threading.Thread(target=_end_streams, name="jaxmba-live-shutdown", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
