"""The bridge: MQTT in, database out. ``run(settings)`` for ``jaxmba-service bridge``, and
``Bridge`` (``start()``/``stop()``) for running one inside another process (tests, tools).

::

    paho network threads         worker threads (lanes)             ticker thread
    reliable: on_received─▶ lane of the enclosure: Inbox ──────────▶ batch (≤ BATCH_MAX,
      (state, ack, events)    bounded FIFO (first)                   ≤ FILL_LINGER_S to fill)
    statuses: on_received─▶   statuses (the latest per enclosure
                              once STATUS_BEHIND_S behind)
                                      parse + validate (schemas)
                                      ONE transaction (Writer) ── commit
                                      PUBACK the batch, notify {prefix}/service/events
                                                                     lost / timed_out / re-publish
                                                                     service/state, purge;
                                                                     sessions, desired, alerts

Lanes: on PostgreSQL two workers write concurrently, each message going to the lane of its
enclosure (a hash of the id). One enclosure's messages thus stay in order, two lanes never wait
for each other's row locks, and while one lane waits for the database the other parses and
writes. SQLite allows one writer at a time: one lane.

Back-pressure instead of loss: when a lane's FIFO is full, the reliable connection's
``on_received`` waits for room (the network thread stops reading, TCP and the broker queue the
rest). If that lasts beyond the keepalive the connection drops; nothing is lost, since
unacknowledged messages are delivered again on the persistent session, and the queued copies
from the old connection are skipped instead of written twice. The bridge's keepalive is at
least ``client.MIN_KEEPALIVE_S``: with its network thread waiting for room, PINGRESPs wait too.

Coalescing instead of back-pressure for statuses (the status connection): once a lane is
behind (its oldest waiting status came over ``STATUS_BEHIND_S`` ago, or ``STATUS_QUEUE_SIZE``
statuses wait), a status replaces the ones of its enclosure still waiting
(``Inbox.put_status``; those are acknowledged at once and counted in
``stats.statuses_coalesced``), so however far behind the workers are, no status waits behind
more than about a second's worth of others, the status connection keeps reading, and the
broker does not queue statuses for the bridge; what would fill a queue and make the broker
drop events is gone. See docs/bridge.md, "Overload".

A database outage stops the worker (it retries the same batch with backoff, acking nothing),
so the queue fills and the broker holds the rest until the database is back.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from types import FrameType

from controlsvc import metrics
from controlsvc.bridge.batching import next_batch
from controlsvc.bridge.errors import BrokerRefused
from controlsvc.bridge.housekeeping import Housekeeping
from controlsvc.bridge.inbound import Inbound, Link
from controlsvc.bridge.inbox import Inbox
from controlsvc.bridge.leadership import Leadership
from controlsvc.bridge.mqtt_client import STATUSES, BridgeClient
from controlsvc.bridge.session_driver import SessionDriver
from controlsvc.bridge.stats import BridgeStats, LogThrottle
from controlsvc.bridge.ticker import Ticker
from controlsvc.bridge.writer import DatabaseDown, Writer
from controlsvc.config.settings import Settings
from controlsvc.store.db import Database
from controlsvc.store.enclosures import Liveness
from schemas.topics import Channel, Topics

log = logging.getLogger(__name__)

__all__ = ["BATCH_MAX", "QUEUE_SIZE", "STATUS_QUEUE_SIZE", "Bridge", "run"]

# Received state/ack/events messages waiting for a lane's worker (then the network thread
# waits: back-pressure, see the module doc). Bounds the bridge's memory, with
# STATUS_QUEUE_SIZE.
QUEUE_SIZE = 20_000
# Statuses waiting for the lanes' workers before each newer one replaces the waiting ones of its
# enclosure (coalescing, see the module doc), whatever their age.
STATUS_QUEUE_SIZE = 20_000
# A lane whose oldest waiting status came this long ago is behind: a newer status replaces the
# waiting ones of its enclosure at once, so statuses do not queue up stale (a burst the workers
# write within this time is written whole, with history).
STATUS_BEHIND_S = 1.0
# Worker lanes per backend (see the module doc).
LANES = {"postgresql": 2, "sqlite": 1}
# At most this many messages per transaction: big enough that a burst is written at thousands
# per second, small enough that one transaction stays in the tens of milliseconds.
BATCH_MAX = 500
# A batch of statuses or agent events waits this long after its first message for more
# (``controlsvc.bridge.batching``; one holding an ack or a state does not).
FILL_LINGER_S = 0.02
# How long the worker waits for a first message before checking whether it must stop.
IDLE_POLL_S = 0.2
# The network thread re-checks for a stop this often while waiting for room in the queue.
QUEUE_PUT_POLL_S = 0.5
# Backoff while the database is unreachable (doubles up to the max).
DB_RETRY_MIN_S = 0.5
DB_RETRY_MAX_S = 10.0
# stop() gives the worker this long to write what it has.
STOP_TIMEOUT_S = 10.0


class Bridge:
    """One bridge: two MQTT connections, workers writing batches, and one ticker for the timers.

    ``stats`` (a ``BridgeStats``) counts what came in, what was refused and why, what was
    written; ``controlsvc.metrics`` exports it.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database | None = None,
        *,
        client_id: str | None = None,
        queue_size: int = QUEUE_SIZE,
        status_queue_size: int = STATUS_QUEUE_SIZE,
        status_behind_s: float | None = STATUS_BEHIND_S,
        batch_max: int = BATCH_MAX,
        fill_linger_s: float = FILL_LINGER_S,
        lanes: int | None = None,
        housekeeping: bool = True,
    ) -> None:
        self.settings = settings
        self._own_database = database is None
        self.database = database or Database(
            settings.database.sqlalchemy_url(), echo=settings.database.echo
        )
        self.topics = Topics(settings.mqtt.topic_prefix)
        self.liveness = Liveness(
            status_interval_s=settings.service.status_interval_s,
            lost_after_intervals=settings.service.lost_after_intervals,
        )
        self.stats = BridgeStats()
        self.batch_max = batch_max
        self.fill_linger_s = fill_linger_s
        count = lanes or LANES.get(self.database.engine.dialect.name, 1)
        self._lanes = [
            _Lane(
                Inbox(
                    maxsize=max(1, queue_size // count),
                    status_maxsize=max(1, status_queue_size // count),
                    status_behind_s=status_behind_s,
                ),
                Writer(
                    self.database,
                    self.topics,
                    self.liveness,
                    self.stats,
                    status_event_every_s=settings.service.status_event_every_s,
                    history_every_s=settings.service.status_history_every_s,
                ),
            )
            for _ in range(count)
        ]
        self._enc_head = f"{self.topics.prefix}/enc/"
        self._ack_suffix = f"/{Channel.ACK.value}"
        self._state_suffix = f"/{Channel.STATE.value}"
        self._events_suffix = f"/{Channel.EVENTS.value}"
        self.client = BridgeClient(
            settings, self.topics, self._enqueue, self.stats, client_id=client_id
        )
        self.status_client = BridgeClient(
            settings,
            self.topics,
            self._enqueue_status,
            self.stats,
            role=STATUSES,
            client_id=client_id,
        )
        self._clients = {Link.RELIABLE: self.client, Link.STATUSES: self.status_client}
        self.housekeeping = (
            Housekeeping(
                self.database,
                self.client,
                self.liveness,
                self.stats,
                status_history_days=settings.service.status_history_days,
                backlog_since=self.backlog_since,
                heard_for=self.connected_for,
            )
            if housekeeping
            else None
        )
        self.sessions = SessionDriver(settings, self.database, self.client, self.stats)
        # Of several bridges, the one holding this lease runs the timers.
        self.leadership = Leadership(
            self.database,
            self.client.bridge_id,
            ttl_s=settings.service.bridge_lease_s,
            stats=self.stats,
        )
        # One timer thread for every periodic task (none without housekeeping: tests).
        self.ticker = (
            Ticker(
                [self.housekeeping.own_schedule],
                led=[self.housekeeping.schedule, self.sessions.schedule],
                lease=self.leadership,
            )
            if self.housekeeping is not None
            else None
        )
        self._accepting = threading.Event()
        self._stop_worker = threading.Event()
        self._abandon = threading.Event()  # stop without writing what is queued
        self._workers: list[threading.Thread] = []
        self._throttle = LogThrottle(60.0)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Bridge:
        """Start the worker, the timers and the connection (returns at once; see
        ``wait_ready``)."""
        self._accepting.set()
        self._stop_worker.clear()
        self._abandon.clear()
        self._workers = [
            threading.Thread(
                target=self._work, args=(lane,), name=f"jaxmba-bridge-worker-{i}", daemon=True
            )
            for i, lane in enumerate(self._lanes)
        ]
        for worker in self._workers:
            worker.start()
        if self.ticker is not None:
            self.ticker.start()
        self.status_client.start()
        self.client.start()
        return self

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once both connections are made and subscribed (False after ``timeout`` or if
        refused)."""
        deadline = time.monotonic() + timeout
        return self.client.wait_subscribed(timeout) and self.status_client.wait_subscribed(
            max(0.0, deadline - time.monotonic())
        )

    def connected_for(self) -> float:
        """Seconds both connections have been up (0 while either is down): how long the
        bridge has been able to hear every enclosure."""
        return min(self.client.connected_for(), self.status_client.connected_for())

    @property
    def fatal(self) -> BrokerRefused | None:
        """Set when the broker refused a connection for good (the bridge stopped trying)."""
        return self.client.fatal or self.status_client.fatal

    def stop(self, timeout: float = STOP_TIMEOUT_S, *, forget_session: bool = False) -> None:
        """Stop cleanly: take no new messages, write and acknowledge the queued ones, say
        ``service/state`` offline, disconnect. Messages that arrive meanwhile are not
        acknowledged, so the broker delivers them again on the next start.

        ``forget_session``: this bridge is not coming back (scaling down); its broker session
        ends, so its share of the messages goes to the other bridges from now on."""
        self._accepting.clear()
        if self.ticker is not None:
            self.ticker.stop(timeout)
            self.leadership.release()
        if self.housekeeping is not None:
            self.housekeeping.mark_stopped()
        self._stop_worker.set()
        self._wake_workers()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if any(worker.is_alive() for worker in self._workers):
            log.warning("the bridge workers did not finish within %g s", timeout)
            self._abandon.set()
        self._workers = []
        self.status_client.stop(forget_session=forget_session)
        self.client.stop(forget_session=forget_session)
        self._dispose()

    def kill(self) -> None:
        """Stop as a crash would (tests): drop the connection without DISCONNECT (the Will
        fires), abandon what is queued (unacknowledged, so the broker keeps it)."""
        self._accepting.clear()
        self._abandon.set()
        self._stop_worker.set()
        self._wake_workers()
        self.status_client.kill()
        self.client.kill()
        if self.ticker is not None:
            self.ticker.stop()
        for worker in self._workers:
            worker.join(STOP_TIMEOUT_S)
        self._workers = []
        self._dispose()

    def _wake_workers(self) -> None:
        for lane in self._lanes:
            lane.queue.wake()

    def _dispose(self) -> None:
        for lane in self._lanes:  # forget whatever is left: it was never acknowledged
            lane.queue.clear()
        if self._own_database:
            self.database.dispose()

    # -- network thread ----------------------------------------------------------------------
    def backlog_since(self) -> datetime | None:
        """When the oldest message received but not written yet arrived (None: no backlog);
        the liveness check judges no silence deadline after it."""
        times = [t for t in (lane.backlog_since() for lane in self._lanes) if t is not None]
        return min(times, default=None)

    def _lane_of(self, topic: str) -> _Lane:
        if len(self._lanes) == 1 or not topic.startswith(self._enc_head):
            return self._lanes[0]
        eid = topic[len(self._enc_head) :].split("/", 1)[0]
        return self._lanes[hash(eid) % len(self._lanes)]

    def _enqueue(self, inbound: Inbound) -> None:
        lane = self._lane_of(inbound.topic)
        while self._accepting.is_set():
            try:
                lane.queue.put(inbound, timeout=QUEUE_PUT_POLL_S)
            except queue.Full:
                if self._throttle.allow("queue-full") is not None:
                    log.warning(
                        "a bridge queue is full (%d messages): slowing the broker down",
                        lane.queue.maxsize,
                    )
                continue
            return
        # Stopping: not acknowledged, so the broker delivers it again after the restart.

    def _enqueue_status(self, inbound: Inbound) -> None:
        """A status: never waits; coalesced when too many wait (see the module doc)."""
        if not self._accepting.is_set():
            return  # stopping: not acknowledged, so the broker delivers it again
        redundant = self._lane_of(inbound.topic).queue.put_status(inbound)
        if redundant:
            self.stats.add("statuses_coalesced", len(redundant))
            self.status_client.ack(redundant)

    # -- worker thread -----------------------------------------------------------------------
    def _next_batch(self, lane: _Lane) -> list[Inbound]:
        """What is queued (``controlsvc.bridge.batching``)."""

        def busy(first: Inbound) -> None:  # still backlog until written (``backlog_since``)
            lane.busy_since = first.received_at

        return next_batch(
            lane.queue,
            batch_max=self.batch_max,
            fill_linger_s=self.fill_linger_s,
            ack_suffix=self._ack_suffix,
            state_suffix=self._state_suffix,
            first_timeout=IDLE_POLL_S,
            events_suffix=self._events_suffix,
            on_first=busy,
        )

    def _work(self, lane: _Lane) -> None:
        while not self._abandon.is_set():
            if self._stop_worker.is_set() and lane.queue.empty():
                return
            batch = self._next_batch(lane)
            self.stats.queue_depth = sum(other.queue.qsize() for other in self._lanes)
            if batch:
                try:
                    self._process(lane.writer, batch)
                except Exception:
                    log.exception("the bridge worker failed on a batch of %d messages", len(batch))
                finally:
                    lane.busy_since = None
            self._export_stats()

    def _export_stats(self) -> None:
        """Hand the counters to the Prometheus metrics (after each batch, and when idle)."""
        try:
            metrics.export_bridge_stats(self.stats.snapshot())
        except Exception as exc:  # metrics must never stop the bridge
            if self._throttle.allow("metrics") is not None:
                log.warning("exporting bridge metrics failed: %s", exc)

    def _process(self, writer: Writer, batch: list[Inbound]) -> None:
        started = time.perf_counter()
        # QoS 1 copies that came on a connection that has since dropped: the broker delivers
        # them again on the current one (their acks could not reach it anyway).
        generations = {link: client.generation for link, client in self._clients.items()}
        current = [m for m in batch if m.qos == 0 or m.generation == generations[m.link]]
        if len(current) < len(batch):
            self.stats.count("ignored", "old_connection", len(batch) - len(current))
            batch = current
            if not batch:
                return
        parsed = writer.parse(batch)
        delay = DB_RETRY_MIN_S
        while True:
            try:
                recorded = writer.write(parsed)
                break
            except DatabaseDown as exc:
                if self._throttle.allow("database") is not None:
                    log.error("the database is unreachable (%s); retrying", exc)  # noqa: TRY400
                if self._abandon.wait(delay):
                    return  # never acknowledged: the broker keeps these messages
                delay = min(delay * 2, DB_RETRY_MAX_S)
        for link, client in self._clients.items():
            client.ack([m for m in batch if m.link is link])
        if recorded is not None:
            self.client.notify_events(recorded.last_id, events=recorded.events)
        self.stats.batch_done(len(batch), time.perf_counter() - started)


@dataclass(slots=True)
class _Lane:
    """One worker's queue and writer."""

    queue: Inbox
    writer: Writer
    busy_since: datetime | None = None  # when the batch being written began to arrive

    def backlog_since(self) -> datetime | None:
        """When the oldest message this lane has not written yet arrived (None: none)."""
        times = [t for t in (self.busy_since, self.queue.oldest()) if t is not None]
        return min(times, default=None)


def run(settings: Settings) -> None:
    """Run a bridge until SIGTERM or SIGINT. Raises ``BrokerRefused`` when the broker refuses
    the service's credentials (retrying would not help)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping the bridge", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    bridge = Bridge(settings)
    try:
        bridge.start()
        log.info(
            "bridge started: broker %s:%d, prefix %s",
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.topic_prefix,
        )
        while not stop.wait(1.0):
            if bridge.fatal is not None:
                break
    finally:
        bridge.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if bridge.fatal is not None:
        raise bridge.fatal
    log.info("bridge stopped")
