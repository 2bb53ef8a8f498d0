"""The event feed inside one API process: one MQTT subscription and one log reader for all clients.

::

    bridge: commit batch with events ─▶ publish {prefix}/service/events {"last_id": N} (QoS 0)
                                                       │
    EventFeed (one per API process) ◀───────────────────┘
      reader thread: `eventlog.since(cursor)` once per notification (not once per client)
        ├─▶ Subscription queues, one per SSE client (bounded: a slow client is dropped and
        │   told to reconnect; it resumes from the log with Last-Event-ID)
        └─▶ CommandWatch, one per `GET /api/commands/{id}?wait=` in progress

The feed never polls the log while the broker is up, except one read after IDLE_READ_S of
silence (a lost QoS 0 notification, or a writer that died between its commit and its publish).
While the broker cannot be reached it reads every FALLBACK_READ_S so streams keep flowing.

The same connection carries ``{prefix}/service/auth`` to the process's token cache (a
``ChangeListener``: ``controlsvc.api.token_cache``): the users whose tokens changed, and whether
such changes can be heard at all (subscribed) or not (connection down).

Threads: paho's network thread only records the notification and wakes the reader; the reader
does the database work and hands events to the queues; SSE generators (request threads) wait
on their own queue. Nothing here blocks the paho thread or waits for a slow client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import uuid
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import paho.mqtt.client as paho
from pydantic import ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from controlsvc.config.settings import Settings
from controlsvc.domain.errors import Unavailable
from controlsvc.metrics import SSE_CLIENTS_DROPPED
from controlsvc.mqtt.connection import MqttConnection
from controlsvc.mqtt.event_streams import CommandWatch, EventFilter, FeedEvent, Subscription
from controlsvc.mqtt.received import Received
from controlsvc.store import eventlog
from controlsvc.store.db import Database
from schemas.messages import TokensChanged
from schemas.topics import Topics

log = logging.getLogger(__name__)

COMMAND_UPDATED = "command.updated"
# Broker down: read the log this often, so streams keep flowing (late by at most this).
FALLBACK_READ_S = 1.0
# Broker up but no notification for this long: read once anyway (notifications are QoS 0).
IDLE_READ_S = 30.0
# A database error: wait this long before reading again.
DB_RETRY_S = 1.0
# Events buffered for one SSE client; more means it reads slower than events arrive.
SUBSCRIPTION_QUEUE = 1000
# Notifications whose events wait for the reader; more are not kept (the log is read instead).
CARRIED_MAX = 1000
# close() waits this long for the reader thread.
CLOSE_TIMEOUT_S = 5.0

_FEEDS: weakref.WeakSet[EventFeed] = weakref.WeakSet()


class ChangeListener(Protocol):
    """Told, on paho's thread, about ``{prefix}/service/auth`` (see the module doc)."""

    def connected(self) -> None: ...
    def disconnected(self) -> None: ...
    def users_changed(self, user_ids: Iterable[int]) -> None: ...
    def clear(self) -> None: ...


_FEEDS_LOCK = threading.Lock()


class EventFeed:
    """New events of the log, pushed to the subscribers of this process (see the module doc)."""

    def __init__(
        self, settings: Settings, database: Database, auth_listener: ChangeListener | None = None
    ) -> None:
        self._settings = settings
        self._database = database
        self.topic = eventlog.notification_topic(settings.mqtt.topic_prefix)
        self.auth_topic = Topics(settings.mqtt.topic_prefix).service_auth()
        self._auth_listener = auth_listener
        self._auth_mid: int | None = None  # the SUBSCRIBE to auth_topic awaiting its SUBACK
        self.client_id = f"{settings.mqtt.client_id}-live-{os.getpid()}-{secrets.token_hex(3)}"
        self.pid = os.getpid()
        self._lock = threading.Lock()  # subscribers, watches, state
        self._subscribers: set[Subscription] = set()
        self._watches: dict[uuid.UUID, set[CommandWatch]] = {}
        self._wake = threading.Condition()
        self._pending = False
        self._notified: int | None = None
        self._carried: list[list[dict[str, Any]]] = []  # events notifications brought
        self._cursor = 0
        self._started = False
        self._closed = False
        self._broker_up = False
        self._broker_state_logged: bool | None = None  # last broker state logged
        self._database_ok = True
        self._mqtt: MqttConnection | None = None
        self._reader: threading.Thread | None = None
        self._conn: Connection | None = None  # the reader thread's (see `_connection`)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> EventFeed:
        """Read the newest event id, start the reader and the MQTT client; idempotent.

        Raises `Unavailable` when the database cannot be read (the feed stays unstarted).
        """
        with self._lock:
            if self._started:
                return self
            if self._closed:
                raise Unavailable("the live event feed is closed (the process is stopping)")
            try:
                with self._database.sessionmaker() as session:
                    self._cursor = eventlog.last_id(session)
            except SQLAlchemyError as exc:
                raise Unavailable("the event log cannot be read (database unavailable)") from exc
            self._started = True
        with _FEEDS_LOCK:
            _FEEDS.add(self)
        self._reader = threading.Thread(target=self._run, name="jaxmba-live-reader", daemon=True)
        self._reader.start()
        self._start_client()
        log.debug("event feed started at event %d (client id %s)", self._cursor, self.client_id)
        return self

    def _start_client(self) -> None:
        connection = MqttConnection(
            self._settings,
            kind="event feed",
            client_id=self.client_id,
            logger=log,
            on_up=self._on_up,
            on_down=self._on_down,
        )
        connection.client.on_message = self._on_message  # what the short path leaves to paho
        connection.client.on_received = self._on_received
        connection.client.on_subscribe = self._on_subscribe
        self._mqtt = connection
        connection.start()

    def close(self) -> None:
        """Stop the client and the reader, and end every stream and wait; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscribers = list(self._subscribers)
            self._subscribers.clear()
            watches = [w for ws in self._watches.values() for w in ws]
            self._watches.clear()
        connection, self._mqtt = self._mqtt, None
        if connection is not None:
            connection.stop()  # tells _on_down, which tells the auth listener
        with self._wake:
            self._wake.notify_all()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(CLOSE_TIMEOUT_S)
        for sub in subscribers:
            sub._end()
        for watch in watches:
            watch._end()
        with _FEEDS_LOCK:
            _FEEDS.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def cursor(self) -> int:
        """The newest event id handed to subscribers."""
        return self._cursor

    @property
    def broker_connected(self) -> bool:
        return self._broker_up

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    # -- subscribers ------------------------------------------------------------------------------
    def subscribe(
        self, event_filter: EventFilter | None = None, *, maxsize: int = SUBSCRIPTION_QUEUE
    ) -> Subscription:
        """A queue that receives every event after the current cursor matching the filter."""
        self.start()
        sub = Subscription(self, event_filter or EventFilter(), maxsize)
        with self._lock:
            if self._closed:
                sub._end()
            else:
                self._subscribers.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def watch_command(self, command_id: uuid.UUID) -> CommandWatch:
        """Register for updates of one command (see `CommandWatch`)."""
        self.start()
        watch = CommandWatch(self, command_id)
        with self._lock:
            if self._closed:
                watch._end()
            else:
                self._watches.setdefault(command_id, set()).add(watch)
        return watch

    def _unwatch(self, watch: CommandWatch) -> None:
        with self._lock:
            watches = self._watches.get(watch.command_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.command_id]

    def wait_for_command(self, command_id: uuid.UUID, timeout: float) -> bool:
        """True as soon as a `command.updated` event for `command_id` arrives, False after
        `timeout` s. An update just before the call is missed: to check-then-wait without a gap
        use `watch_command`."""
        with self.watch_command(command_id) as watch:
            return watch.wait(timeout)

    def poke(self) -> None:
        """Read the log now (e.g. this process just committed events itself)."""
        with self._wake:
            self._pending = True
            self._notified = None
            self._wake.notify_all()

    # -- MQTT callbacks (paho's thread: never block, never raise) --------------------------------
    def _on_up(self, client: paho.Client, _session_present: bool) -> None:
        client.subscribe(self.topic, qos=eventlog.NOTIFICATION_QOS)
        if self._auth_listener is not None:
            _rc, self._auth_mid = client.subscribe(self.auth_topic, qos=1)
        self._broker_changed(True, "")
        self.poke()  # anything committed while we were away

    def _on_down(self, detail: str) -> None:
        self._auth_mid = None
        if self._auth_listener is not None:
            self._auth_listener.disconnected()
        if not self._closed:
            self._broker_changed(False, detail)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, mid: int, codes: list[Any], _props: Any
    ) -> None:
        if self._auth_listener is None or mid != self._auth_mid:
            return
        if all(not code.is_failure for code in codes):
            self._auth_listener.connected()  # from now on no change goes unheard
        else:
            log.warning(
                "token cache off: the broker refused the subscription to %s (%s)",
                self.auth_topic,
                ", ".join(str(code) for code in codes),
            )

    def _on_auth(self, payload: bytes | bytearray) -> None:
        assert self._auth_listener is not None
        try:
            changed = TokensChanged.model_validate_json(payload)
        except ValidationError as exc:
            # Whose tokens changed is unknown: forget every check rather than keep a wrong one.
            log.warning("bad message on %s (%s): token cache emptied", self.auth_topic, exc)
            self._auth_listener.clear()
            return
        self._auth_listener.users_changed(changed.users)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self._notified_by(msg.topic, msg.payload)

    def _on_received(self, received: Received) -> None:
        self._notified_by(received.topic, received.payload)

    def _notified_by(self, topic: str, payload: bytes | bytearray) -> None:
        if topic == self.auth_topic:
            if self._auth_listener is not None:
                self._on_auth(payload)
            return
        try:
            note = eventlog.read_notification(payload)
            last_id = note.last_id
            with self._wake:
                if note.events is not None and len(self._carried) < CARRIED_MAX:
                    self._carried.append(note.events)
                if not self._pending:
                    self._notified = last_id
                elif self._notified is not None:  # None pending means "read whatever"
                    self._notified = None if last_id is None else max(self._notified, last_id)
                self._pending = True
                self._wake.notify_all()
        except Exception:
            log.exception("live events: bad notification on %s: %.200r", topic, payload)

    def _broker_changed(self, up: bool, detail: str) -> None:
        self._broker_up = up
        with self._wake:
            self._wake.notify_all()  # the reader changes its interval
        if self._broker_state_logged is up:
            return
        if up and self._broker_state_logged is False:
            log.warning("live events: broker back at %s", self._broker_address())
        elif not up:
            log.warning(
                "live events: broker unavailable at %s (%s); reading the event log every "
                "%.0f s until it is back",
                self._broker_address(),
                detail,
                FALLBACK_READ_S,
            )
        self._broker_state_logged = up

    def _broker_address(self) -> str:
        return f"{self._settings.mqtt.host}:{self._settings.mqtt.port}"

    # -- reader thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._pending and not self._closed:
                    self._wake.wait(self._interval())
                if self._closed:
                    self._drop_connection()
                    return
                notified, self._notified = self._notified, None
                carried, self._carried = self._carried, []
                self._pending = False
            try:
                self._take(carried)
            except Exception:
                log.exception("live events: dispatching carried events failed")
            if notified is not None and notified <= self._cursor:
                continue  # this process has read that far already
            try:
                self._read()
            except Exception:
                log.exception("live events: dispatching failed")

    def _take(self, carried: list[list[dict[str, Any]]]) -> None:
        """Hand out the events notifications carried, as long as each batch follows on from
        the cursor (one transaction's events: nothing else lies between its ids). A gap (a
        lost notification, one overtaken by another writer's, a rolled-back id) stops here:
        the log is read instead."""
        for bodies in carried:
            if bodies[-1]["id"] <= self._cursor:
                continue
            if bodies[0]["id"] != self._cursor + 1:
                return
            try:
                events = [FeedEvent.from_body(body) for body in bodies]
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("live events: a notification's events are malformed (%s)", exc)
                return
            self._dispatch(events)
            self._cursor = events[-1].id

    def _interval(self) -> float:
        if not self._database_ok:
            return DB_RETRY_S
        return IDLE_READ_S if self._broker_up else FALLBACK_READ_S

    def _connection(self) -> Connection:
        """The reader's own connection, kept open in autocommit mode: a read is then one round
        trip (no pool check-out with its ping, no BEGIN and ROLLBACK), and it is on the path of
        every waiting `GET /api/commands/{id}?wait=`."""
        if self._conn is None:
            conn = self._database.engine.connect()
            self._conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()  # it may be broken: do not give it back to the pool
                conn.close()

    def _read(self) -> None:
        try:
            with Session(bind=self._connection()) as session:
                while True:
                    rows = eventlog.since(session, self._cursor, limit=eventlog.MAX_BATCH)
                    if rows:
                        events = [FeedEvent.from_record(row) for row in rows]
                        self._dispatch(events)
                        self._cursor = events[-1].id
                    if len(rows) < eventlog.MAX_BATCH or self._closed:
                        break
        except SQLAlchemyError as exc:
            self._drop_connection()
            if self._database_ok:
                log.warning("live events: database unavailable (%s); retrying", type(exc).__name__)
            self._database_ok = False
            return
        if not self._database_ok:
            log.warning("live events: database back")
            self._database_ok = True

    def _dispatch(self, events: list[FeedEvent]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
            woken = [
                (watch, event)
                for event in events
                if event.kind == COMMAND_UPDATED and event.command_id is not None
                for watch in self._watches.get(event.command_id, ())
            ]
        # Waiters first: a request thread is waiting for each; the streams are buffered.
        for watch, event in woken:
            watch._notify(event)
        dropped = []
        for sub in subscribers:
            wanted = [e for e in events if sub.filter.matches(e)]
            if wanted and not sub._offer(wanted):
                dropped.append(sub)
        if dropped:
            with self._lock:
                self._subscribers.difference_update(dropped)
            SSE_CLIENTS_DROPPED.inc(len(dropped))
            log.info("live events: dropped %d slow stream(s); they will resume", len(dropped))


def shutdown_all() -> None:
    """Close every feed of this process: streams end now instead of holding a stopping worker."""
    with _FEEDS_LOCK:
        feeds = list(_FEEDS)
    for feed in feeds:
        feed.close()
