"""The bridge: MQTT in, database out. ``run(settings)`` for ``jaxmba-service bridge``, and
``Bridge`` (``start()``/``stop()``) for running one inside another process (tests, tools).

::

    paho network thread          worker thread                      housekeeping thread
    on_message ──Inbound──▶ bounded queue ──▶ batch (≤ BATCH_MAX, never waits to fill)
                                      parse + validate (schemas)
                                      ONE transaction (Writer) ── commit
                                      PUBACK the batch, notify {prefix}/service/events
                                                                     lost / timed_out / re-publish
                                                                     service/state, purge

Back-pressure instead of loss: when the queue is full, ``on_message`` waits for room (the
network thread stops reading, TCP and the broker queue the rest). If that lasts beyond the
keepalive the broker drops the connection; nothing is lost, since unacknowledged messages are
delivered again on the persistent session. The queue can hardly fill anyway: the broker never
has more than ``ReceiveMaximum`` unacknowledged messages in flight to the bridge.

A database outage stops the worker (it retries the same batch with backoff, acking nothing),
so the queue fills and the broker holds the rest until the database is back.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from types import FrameType

from controlsvc import metrics
from controlsvc.bridge.client import BridgeClient
from controlsvc.bridge.errors import BrokerRefused
from controlsvc.bridge.housekeeping import Housekeeping
from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.sessions import SessionDriver
from controlsvc.bridge.stats import BridgeStats, LogThrottle
from controlsvc.bridge.writer import DatabaseDown, Writer
from controlsvc.config import Settings
from controlsvc.db import Database
from controlsvc.enclosures import Liveness
from schemas.topics import Topics

log = logging.getLogger(__name__)

__all__ = ["BATCH_MAX", "QUEUE_SIZE", "Bridge", "run"]

# Received messages waiting for the worker; far above ReceiveMaximum, so only a misbehaving
# broker could fill it (then the network thread waits: back-pressure, see the module doc).
QUEUE_SIZE = 100_000
# At most this many messages per transaction: big enough that a burst is written at thousands
# per second, small enough that one transaction stays in the tens of milliseconds.
BATCH_MAX = 500
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
    """One bridge: an MQTT client, a worker writing batches, and the housekeeping timers.

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
        batch_max: int = BATCH_MAX,
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
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=queue_size)
        self.client = BridgeClient(
            settings, self.topics, self._enqueue, self.stats, client_id=client_id
        )
        self.writer = Writer(self.database, self.topics, self.liveness, self.stats)
        self.housekeeping = (
            Housekeeping(
                self.database,
                self.client,
                self.liveness,
                self.stats,
                status_history_days=settings.service.status_history_days,
            )
            if housekeeping
            else None
        )
        self.sessions = SessionDriver(settings, self.database, self.client, self.stats)
        self._accepting = threading.Event()
        self._stop_worker = threading.Event()
        self._abandon = threading.Event()  # stop without writing what is queued
        self._worker: threading.Thread | None = None
        self._throttle = LogThrottle(60.0)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Bridge:
        """Start the worker, the timers and the connection (returns at once; see
        ``wait_ready``)."""
        self._accepting.set()
        self._stop_worker.clear()
        self._abandon.clear()
        self._worker = threading.Thread(target=self._work, name="jaxmba-bridge-worker", daemon=True)
        self._worker.start()
        if self.housekeeping is not None:
            self.housekeeping.start()
            self.sessions.start()
        self.client.start()
        return self

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once connected and subscribed (False after ``timeout`` or if refused)."""
        return self.client.wait_subscribed(timeout)

    @property
    def fatal(self) -> BrokerRefused | None:
        """Set when the broker refused the connection for good (the bridge stopped trying)."""
        return self.client.fatal

    def stop(self, timeout: float = STOP_TIMEOUT_S, *, forget_session: bool = False) -> None:
        """Stop cleanly: take no new messages, write and acknowledge the queued ones, say
        ``service/state`` offline, disconnect. Messages that arrive meanwhile are not
        acknowledged, so the broker delivers them again on the next start.

        ``forget_session``: this bridge is not coming back (scaling down); its broker session
        ends, so its share of the messages goes to the other bridges from now on."""
        self._accepting.clear()
        self.sessions.stop(timeout)
        if self.housekeeping is not None:
            self.housekeeping.stop(timeout)
        self._stop_worker.set()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("the bridge worker did not finish within %g s", timeout)
                self._abandon.set()
            self._worker = None
        self.client.stop(forget_session=forget_session)
        self._dispose()

    def kill(self) -> None:
        """Stop as a crash would (tests): drop the connection without DISCONNECT (the Will
        fires), abandon what is queued (unacknowledged, so the broker keeps it)."""
        self._accepting.clear()
        self._abandon.set()
        self._stop_worker.set()
        self.client.kill()
        self.sessions.stop()
        if self.housekeeping is not None:
            self.housekeeping.stop()
        if self._worker is not None:
            self._worker.join(STOP_TIMEOUT_S)
            self._worker = None
        self._dispose()

    def _dispose(self) -> None:
        while True:  # forget whatever is left: it was never acknowledged
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._own_database:
            self.database.dispose()

    # -- network thread ----------------------------------------------------------------------
    def _enqueue(self, inbound: Inbound) -> None:
        while self._accepting.is_set():
            try:
                self._queue.put(inbound, timeout=QUEUE_PUT_POLL_S)
            except queue.Full:
                if self._throttle.allow("queue-full") is not None:
                    log.warning(
                        "the bridge queue is full (%d messages): slowing the broker down",
                        self._queue.maxsize,
                    )
                continue
            return
        # Stopping: not acknowledged, so the broker delivers it again after the restart.

    # -- worker thread -----------------------------------------------------------------------
    def _next_batch(self) -> list[Inbound]:
        """Everything queued now, up to ``batch_max``; waits only for the first message."""
        try:
            first = self._queue.get(timeout=IDLE_POLL_S)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while not self._abandon.is_set():
            if self._stop_worker.is_set() and self._queue.empty():
                return
            batch = self._next_batch()
            self.stats.queue_depth = self._queue.qsize()
            if batch:
                try:
                    self._process(batch)
                except Exception:
                    log.exception("the bridge worker failed on a batch of %d messages", len(batch))
            self._export_stats()

    def _export_stats(self) -> None:
        """Hand the counters to the Prometheus metrics (after each batch, and when idle)."""
        try:
            metrics.export_bridge_stats(self.stats.snapshot())
        except Exception as exc:  # metrics must never stop the bridge
            if self._throttle.allow("metrics") is not None:
                log.warning("exporting bridge metrics failed: %s", exc)

    def _process(self, batch: list[Inbound]) -> None:
        started = time.perf_counter()
        parsed = self.writer.parse(batch)
        delay = DB_RETRY_MIN_S
        while True:
            try:
                newest = self.writer.write(parsed)
                break
            except DatabaseDown as exc:
                if self._throttle.allow("database") is not None:
                    log.error("the database is unreachable (%s); retrying", exc)  # noqa: TRY400
                if self._abandon.wait(delay):
                    return  # never acknowledged: the broker keeps these messages
                delay = min(delay * 2, DB_RETRY_MAX_S)
        self.client.ack(batch)
        if newest is not None:
            self.client.notify_events(newest)
        self.stats.batch_done(len(batch), time.perf_counter() - started)


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
