"""GET /api/events (Server-Sent Events) and POST /api/events/ticket.

A stream starts with a `retry:` hint and a `: connected` comment, then (with `Last-Event-ID`,
or `?last_event_id=`) every logged event after that id, then live events as they are committed,
each as::

    id: 42
    event: enclosure.state
    data: {"id":42,"kind":"enclosure.state","at":"...","enclosure_id":"enc-a",...,"data":{...}}

A comment every HEARTBEAT_S keeps proxies from closing an idle stream. A client too slow to
keep up gets `event: reconnect` and the stream ends; EventSource reconnects and resumes.

Authorisation: `Authorization: Bearer <access token>`, or `?ticket=` from POST /api/events/ticket
(browsers' EventSource cannot send headers). A token in the URL is refused: URLs end up in logs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from flask import Response, current_app, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import AfterValidator, BaseModel, Field

from controlsvc.api import tokens
from controlsvc.api.errors import problem_responses
from controlsvc.api.event_feed import get_feed
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
from controlsvc.domain.errors import InvalidInput, Unavailable
from controlsvc.metrics import SSE_EVENTS_SENT, SSE_STREAMS
from controlsvc.mqtt.event_feed import EventFeed
from controlsvc.mqtt.event_streams import EventFilter, FeedEvent
from controlsvc.store import eventlog
from controlsvc.store.db import Database
from schemas.ids import validate_enclosure_id

__all__ = ["bp", "register", "sse_frame"]

log = logging.getLogger(__name__)

# A comment this often: proxies close idle connections after 30-60 s.
HEARTBEAT_S = 15.0
# While idle, look this often whether the client closed the connection (peek at the socket),
# so a gone client frees its thread in seconds rather than at the next heartbeat.
DISCONNECT_CHECK_S = 1.0
# EventSource waits this long before reconnecting.
RETRY_MS = 2000
LAST_EVENT_ID_HEADER = "Last-Event-ID"

bp = APIBlueprint(
    "events",
    __name__,
    url_prefix="/api/events",
    abp_tags=[Tag(name="events", description="Live updates (Server-Sent Events)")],
)


def _kinds(value: str | None) -> str | None:
    if value is None:
        return None
    for kind in value.split(","):
        eventlog.check_kind(kind.strip())
    return value


class EventsQuery(TicketQuery):
    kinds: Annotated[str | None, AfterValidator(_kinds)] = Field(
        None,
        max_length=2000,
        description="Comma-separated event kinds to receive (default: all), e.g. "
        "`enclosure.state,command.updated`",
    )
    enclosure_id: Annotated[str | None, AfterValidator(validate_enclosure_id)] = Field(
        None, description="Only events of this enclosure"
    )
    last_event_id: int | None = Field(
        None,
        ge=0,
        description="Resume after this event id (the `Last-Event-ID` header, which wins, does "
        "the same)",
    )


class TicketOut(BaseModel):
    ticket: str = Field(description="Pass as `?ticket=` to GET /api/events; works once")
    expires_at: datetime = Field(description="The ticket is refused after this time")


def sse_frame(event: FeedEvent) -> bytes:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.json}\n\n".encode()


def _control_frame(name: str, **data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _last_event_id(query: EventsQuery) -> int | None:
    raw = request.headers.get(LAST_EVENT_ID_HEADER)
    if raw is None or not raw.strip():
        return query.last_event_id
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidInput(
            f"{LAST_EVENT_ID_HEADER} must be an event id (a non-negative integer)",
            field=LAST_EVENT_ID_HEADER,
        )
    return value


def _stream(
    feed: EventFeed,
    db: Database,
    event_filter: EventFilter,
    after: int | None,
    sock: Any,
) -> Iterator[bytes]:
    """The body of one event stream. It subscribes before it reads the backlog, so no event
    falls between the two (an event in both is skipped by id); subscribing here, not in the
    view, means a response that is never sent leaves no subscription behind."""
    sub = feed.subscribe(event_filter)
    SSE_STREAMS.inc()
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        sent = after
        while after is not None:  # the backlog, one page per query
            with db.sessionmaker() as session:
                rows = eventlog.since(
                    session, after, kinds=sub.filter.kinds, enclosure_id=sub.filter.enclosure_id
                )
                backlog = [FeedEvent.from_record(row) for row in rows]
            if backlog:
                yield b"".join(sse_frame(event) for event in backlog)
                SSE_EVENTS_SENT.inc(len(backlog))
                after = sent = backlog[-1].id
            if len(rows) < eventlog.MAX_BATCH or sub.ended:
                break
        last_write = time.monotonic()
        while True:
            wait = min(DISCONNECT_CHECK_S, HEARTBEAT_S - (time.monotonic() - last_write))
            batch = sub.get(wait)
            fresh = [event for event in batch if sent is None or event.id > sent]
            if fresh:
                yield b"".join(sse_frame(event) for event in fresh)
                SSE_EVENTS_SENT.inc(len(fresh))
                sent = fresh[-1].id
                last_write = time.monotonic()
            if sub.overflowed:
                yield _control_frame("reconnect", reason="too slow", last_event_id=sent)
                return
            if sub.closed:
                yield _control_frame("reconnect", reason="server stopping", last_event_id=sent)
                return
            if time.monotonic() - last_write >= HEARTBEAT_S:
                yield b": keep-alive\n\n"
                last_write = time.monotonic()
            elif not batch and client_gone(sock):
                return
    finally:
        sub.close()
        SSE_STREAMS.dec()


@bp.get(
    "",
    responses={
        200: {
            "description": "An endless `text/event-stream` (see docs/events.md)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 422, 503),
    },
    security=[{"jwt": []}, {}],
)
def stream_events(query: EventsQuery) -> Any:
    """Server-Sent Events: enclosure state and status changes, command results, sessions.

    Resume with the `Last-Event-ID` header (EventSource sends it when it reconnects). Browsers
    authorise with `?ticket=` from POST /api/events/ticket; other clients with a bearer token.
    """
    refused = token_in_url_refused()
    if refused is not None:
        return refused
    stream_user(query.ticket)
    after = _last_event_id(query)
    feed = get_feed(current_app)
    if feed.subscriber_count >= max_streams(settings()):
        raise Unavailable("this worker serves as many event streams as it can; retry shortly")
    kinds = (
        frozenset(kind.strip() for kind in query.kinds.split(","))
        if query.kinds is not None
        else None
    )
    event_filter = EventFilter(kinds=kinds, enclosure_id=query.enclosure_id)
    body = _stream(feed, database(), event_filter, after, client_socket())
    return Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS)


@bp.post(
    "/ticket",
    responses={201: TicketOut, **problem_responses(401)},
    security=tokens.JWT_SECURITY,
)
@tokens.require_role()
def create_ticket() -> Any:
    """A single-use ticket (valid 30 s) that opens one event stream: `GET /api/events?ticket=`."""
    issued = eventlog.issue_ticket(db_session(), tokens.current_identity().user_id)
    out = TicketOut(ticket=issued.ticket, expires_at=issued.expires_at)
    return out.model_dump(mode="json"), 201


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    app.register_api(bp)
