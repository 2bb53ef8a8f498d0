"""Live view: ``GET /api/enclosures/{eid}/live`` (MJPEG) and ``.../{eid}/preview.jpg``.

``/live`` answers ``multipart/x-mixed-replace; boundary=frame``: one part per JPEG the agent
publishes on ``{prefix}/enc/{eid}/preview``, relayed through the process's one
`controlsvc.mqtt.preview.PreviewRelay` (one subscription per watched enclosure, however many
viewers). While anyone watches, a ``start_live_view`` command (``duration_s`` LIVE_VIEW_S) is
sent at once and again every ``REFRESH_S``, so the agent keeps publishing; when the last viewer
leaves, the agent stops by itself when that duration runs out. The stream ends when the client
goes away, when no frame came for FRAME_TIMEOUT_S, or when the worker stops.

``/preview.jpg`` answers the newest frame this process saw in the last minute, else asks the
agent for a ``snapshot`` and waits up to SNAPSHOT_WAIT_S for it, else 404.

Authorisation: ``Authorization: Bearer <token>`` or ``?ticket=`` from POST /api/events/ticket
(an ``<img>`` cannot send headers); any role may watch.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from collections.abc import Iterator
from typing import Any, cast

from flask import Flask, Response, current_app
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.orm import Session

from controlsvc.api import tokens
from controlsvc.api.enclosures import EnclosurePath
from controlsvc.api.errors import problem, problem_responses
from controlsvc.api.streaming import (
    STREAM_HEADERS,
    TicketQuery,
    client_gone,
    client_socket,
    max_streams,
    stream_user,
    token_in_url_refused,
)
from controlsvc.api.web import database, db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.domain.errors import DomainError, Unavailable
from controlsvc.domain.publisher import BrokerUnavailable, Publisher
from controlsvc.mqtt import preview as mqtt_preview
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.store import commands
from controlsvc.store.db import Database, utcnow
from controlsvc.store.enclosures import get_enclosure
from schemas.enums import CommandKind, CommandState, EnclosureState
from schemas.topics import Topics

__all__ = ["bp", "get_relay", "register"]

log = logging.getLogger(__name__)

RELAY_KEY = "jaxmba.preview_relay"
BOUNDARY = "frame"
# start_live_view asks for this many seconds of frames (re-sent every mqtt_preview.REFRESH_S).
LIVE_VIEW_S = 30.0
# A command the agent has not answered by then is timed out (it is re-sent anyway).
COMMAND_TIMEOUT_S = 10.0
# No frame for this long: the agent is not publishing, end the stream.
FRAME_TIMEOUT_S = 15.0
# While waiting for frames, look this often whether the client went away.
DISCONNECT_CHECK_S = 1.0
# preview.jpg: a frame at most this old is answered from memory.
PREVIEW_MAX_AGE_S = mqtt_preview.FRAME_MAX_AGE_S
# preview.jpg: wait this long for the agent's snapshot ack.
SNAPSHOT_WAIT_S = 5.0
SNAPSHOT_TIMEOUT_S = 10.0
UNREACHABLE = (EnclosureState.OFFLINE.value, EnclosureState.LOST.value)

bp = APIBlueprint(
    "enclosure_live",
    __name__,
    url_prefix="/api/enclosures",
    abp_tags=[Tag(name="live view", description="Live view (MJPEG) and preview thumbnails")],
)


# -- the relay of this process --------------------------------------------------------------------
def get_relay(app: Flask) -> mqtt_preview.PreviewRelay:
    """The started relay of `app` in this process (a forked child makes its own)."""
    relay = cast("mqtt_preview.PreviewRelay | None", app.extensions.get(RELAY_KEY))
    if relay is None or relay.pid != os.getpid() or relay.closed:
        from controlsvc.api.web import SETTINGS_KEY

        relay = mqtt_preview.PreviewRelay(app.extensions[SETTINGS_KEY])
        app.extensions[RELAY_KEY] = relay
    return relay.start()


def close_relay(app: Flask) -> None:
    """Close the relay of `app` if it has one (tests, app shutdown): open streams end."""
    relay = cast("mqtt_preview.PreviewRelay | None", app.extensions.pop(RELAY_KEY, None))
    if relay is not None:
        relay.close()


# -- commands -------------------------------------------------------------------------------------
def _send(
    db: Database,
    publisher: Publisher,
    topics: Topics,
    eid: str,
    kind: CommandKind,
    params: dict[str, Any],
    user_id: int | None,
) -> Any:
    """Store, commit and publish a command as POST /api/enclosures/{eid}/commands does (a broker
    that is away leaves it pending for the bridge). Returns the command's id."""
    session: Session
    with db.sessionmaker() as session:
        command = commands.create_command(
            session, eid, kind, params, COMMAND_TIMEOUT_S, created_by_id=user_id, now=utcnow()
        )
        session.commit()
        command_id = command.id
        try:
            commands.dispatch(session, publisher, command, topics)
        except BrokerUnavailable as exc:
            log.warning("%s to %s stays pending: %s", kind.value, eid, exc.detail)
        return command_id


def _start_live_view(app: Flask, eid: str, user_id: int | None) -> None:
    """Send start_live_view; a failure is logged (the stream ends by itself without frames)."""
    try:
        with app.app_context():
            _send(
                cast(Database, app.extensions["jaxmba.database"]),
                mqtt_publisher.publisher_of(app),
                Topics(settings().mqtt.topic_prefix),
                eid,
                CommandKind.START_LIVE_VIEW,
                {"duration_s": LIVE_VIEW_S},
                user_id,
            )
    except DomainError as exc:
        log.warning("live view of %s: start_live_view refused: %s", eid, exc)
    except Exception:
        log.exception("live view of %s: start_live_view failed", eid)


def _part(jpeg: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    ).encode("ascii")
    return head + jpeg + b"\r\n"


def _stream(
    app: Flask, viewer: mqtt_preview.Viewer, user_id: int | None, sock: Any
) -> Iterator[bytes]:
    """The body of one MJPEG stream; the viewer is closed however it ends."""
    try:
        last_frame = time.monotonic()
        while True:
            if viewer.claim_refresh():
                _start_live_view(app, viewer.eid, user_id)
            frame = viewer.next_frame(DISCONNECT_CHECK_S)
            if viewer.ended:
                return
            if frame is not None:
                yield _part(frame.jpeg)
                last_frame = time.monotonic()
                continue
            if time.monotonic() - last_frame >= FRAME_TIMEOUT_S:
                log.info(
                    "live view of %s: no frame for %.0f s, ending", viewer.eid, FRAME_TIMEOUT_S
                )
                return
            if client_gone(sock):
                return
    finally:
        viewer.close()


# -- routes ---------------------------------------------------------------------------------------
@bp.get(
    "/<string:eid>/live",
    responses={
        200: {
            "description": "An endless `multipart/x-mixed-replace; boundary=frame` stream of "
            "JPEG parts (an `<img src>` shows it)",
            "content": {"multipart/x-mixed-replace": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 404, 422, 503),
    },
    security=[{"jwt": []}, {}],
)
def live_view(path: EnclosurePath, query: TicketQuery) -> Any:
    """Live view of an enclosure (MJPEG relay of its preview frames), any role.

    Authorise with a bearer token or `?ticket=` from POST /api/events/ticket. The service asks
    the agent for frames (`start_live_view`) while anyone watches; the stream ends when no
    frame arrived for 15 s.
    """
    refused = token_in_url_refused()
    if refused is not None:
        return refused
    user = stream_user(query.ticket)
    get_enclosure(db_session(), path.eid)
    db_session().commit()  # the ticket is spent; hold no transaction while streaming
    app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    relay = get_relay(app)
    if relay.viewer_count >= max_streams(settings()):
        raise Unavailable("this worker serves as many live views as it can; retry shortly")
    viewer = relay.watch(path.eid)
    if viewer.claim_refresh():  # the first viewer: ask for frames now
        _start_live_view(app, path.eid, user.id)
    return Response(
        _stream(app, viewer, user.id, client_socket()),
        mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers=STREAM_HEADERS,
    )


@bp.get(
    "/<string:eid>/preview.jpg",
    responses={
        200: {
            "description": "The latest preview frame",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        **problem_responses(400, 401, 404, 422),
    },
    security=[{"jwt": []}, {}],
)
def preview_jpg(path: EnclosurePath, query: TicketQuery) -> Any:
    """The latest preview frame of an enclosure (a thumbnail), any role.

    A frame seen in the last minute, else a fresh `snapshot` from the agent (waiting up to 5 s);
    404 when there is none. Bearer token or `?ticket=`.
    """
    refused = token_in_url_refused()
    if refused is not None:
        return refused
    user = stream_user(query.ticket)
    enc = get_enclosure(db_session(), path.eid)
    state = enc.state
    db_session().commit()  # the ticket is spent; hold no transaction while waiting
    relay = get_relay(cast(Flask, current_app._get_current_object()))  # type: ignore[attr-defined]
    frame = relay.latest(path.eid, PREVIEW_MAX_AGE_S)
    jpeg = frame.jpeg if frame is not None else None
    if jpeg is None and state not in UNREACHABLE:
        jpeg = _snapshot(relay, path.eid, user.id)
    if jpeg is None:
        return problem(
            404,
            "Not found",
            "no preview available: no live-view frame in the last minute and no snapshot "
            f"from the enclosure within {SNAPSHOT_WAIT_S:g} s",
        )
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


def _snapshot(relay: mqtt_preview.PreviewRelay, eid: str, user_id: int) -> bytes | None:
    with relay.ack_waiter(eid) as waiter:
        try:
            command_id = _send(
                database(),
                mqtt_publisher.publisher_of(current_app),
                Topics(settings().mqtt.topic_prefix),
                eid,
                CommandKind.SNAPSHOT,
                {},
                user_id,
            )
        except DomainError as exc:
            log.info("preview of %s: snapshot refused: %s", eid, exc)
            return None
        ack = waiter.wait_final(command_id, SNAPSHOT_WAIT_S)
    data = (
        ack.data if ack is not None and ack.result.command_state is CommandState.SUCCEEDED else None
    )
    encoded = data.get("jpeg_base64") if data else None
    if not isinstance(encoded, str):
        return None
    try:
        jpeg = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not jpeg.startswith(mqtt_preview.JPEG_MAGIC):
        return None
    relay.put_frame(eid, jpeg)  # the next thumbnail request is answered from memory
    return jpeg


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.register_api(bp)
