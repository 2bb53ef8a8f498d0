"""Prometheus metrics of the service, shared by the bridge and the API workers.

The bridge and every API worker are separate processes; prometheus-client's multiprocess mode
lets each write its samples to a file in one directory (`[SERVICE] metrics_dir`), and
`GET /metrics` on any worker merges them. Each entry point calls `setup_process(settings)` before it
does any work; `run` does it once in the parent, before starting the bridge and gunicorn, so the
children inherit it (and stale files of processes that are gone are removed then).

The bridge counts in its own `BridgeStats` and hands a snapshot over after each batch and when
idle: `metrics.export_bridge_stats(stats.snapshot())`. Code may also use the metrics directly::

    from controlsvc.metrics import MESSAGES_IN, INVALID_MESSAGES, BATCH_SECONDS, QUEUE_DEPTH
    MESSAGES_IN.labels(kind="status").inc()
    with BATCH_SECONDS.time(): ...

Label values must come from small fixed sets (a channel, a reason category, a command state),
never from ids: every distinct value is a time series forever.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlsvc.config.settings import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Batch writes of the bridge: a few ms normally, seconds when the database struggles.
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# REST latency: sub-ms to the 60 s of a long ?wait=.
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)

# -- bridge ---------------------------------------------------------------------------------------
MESSAGES_IN = Counter(
    "jaxmba_mqtt_messages",
    "MQTT messages received by the bridge, by channel (state, status, ack, events, ...)",
    ["kind"],
)
INVALID_MESSAGES = Counter(
    "jaxmba_mqtt_invalid_messages",
    "MQTT messages refused by the bridge, by reason (too_large, not_utf8, invalid_json, schema, "
    "topic, duplicate, stale)",
    ["reason"],
)
BATCH_SECONDS = Histogram(
    "jaxmba_bridge_batch_write_seconds",
    "Time the bridge takes to write one batch of messages to the database",
    buckets=BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "jaxmba_bridge_queue_depth",
    "Messages received by the bridge and not yet written (summed over live bridges)",
    multiprocess_mode="livesum",
)
COMMANDS_SETTLED = Counter(
    "jaxmba_commands_settled",
    "Commands that reached a final state, by result (succeeded, failed, rejected, expired, "
    "timed_out)",
    ["result"],
)

IGNORED_MESSAGES = Counter(
    "jaxmba_mqtt_ignored_messages",
    "Valid MQTT messages that changed nothing, by reason (duplicate, stale, late_ack, "
    "unknown_command, foreign_ack, retired, dropped, ...)",
    ["reason"],
)
MESSAGES_WRITTEN = Counter(
    "jaxmba_bridge_messages_written",
    "Messages the bridge applied to the database, by channel",
    ["kind"],
)
TRANSITIONS = Counter(
    "jaxmba_enclosure_transitions",
    "Enclosure state changes the bridge recorded, by new state",
    ["state"],
)
BATCH_RETRIES = Counter(
    "jaxmba_bridge_batch_retries",
    "Batches written again row by row after their transaction failed",
)
DATABASE_ERRORS = Counter(
    "jaxmba_bridge_database_errors",
    "Bridge transactions that failed because the database could not be reached",
)
BROKER_CONNECTS = Counter("jaxmba_bridge_connects", "Connections of the bridge to the broker")
STATUSES_COALESCED = Counter(
    "jaxmba_bridge_statuses_coalesced",
    "Statuses the bridge replaced by a newer one of the same enclosure before writing them "
    "(it was behind; only the newest is stored)",
)
BRIDGES_CONNECTED = Gauge(
    "jaxmba_bridges_connected",
    "Bridges connected to the broker now (summed over live bridges)",
    multiprocess_mode="livesum",
)
BRIDGES_LEADING = Gauge(
    "jaxmba_bridges_leading",
    "Bridges running the timers now (holding the lease; 1 in a healthy deployment, summed over "
    "live bridges; 0 for up to the lease's length after the leader died)",
    multiprocess_mode="livesum",
)

# -- MQTT connections of the service (controlsvc.mqtt.connection), by kind ----------------------
MQTT_CONNECTED = Gauge(
    "jaxmba_mqtt_connections_up",
    "The service's MQTT connections up now, by kind (publisher, event feed, preview, bridge, "
    "bridge statuses; summed over live processes)",
    ["kind"],
    multiprocess_mode="livesum",
)
MQTT_CONNECTS = Counter(
    "jaxmba_mqtt_connects", "Connections the service's MQTT clients made, by kind", ["kind"]
)
MQTT_REFUSALS = Counter(
    "jaxmba_mqtt_refusals",
    "CONNACKs refusing a connection of the service, by kind and MQTT 5 reason code",
    ["kind", "code"],
)

# -- API ------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "jaxmba_http_requests",
    "HTTP requests answered by the API, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "jaxmba_http_request_duration_seconds",
    "Time to produce the response (for streams: until the first byte), by method and route",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)
SSE_STREAMS = Gauge(
    "jaxmba_sse_streams_open",
    "Server-sent event streams currently open (summed over live API workers)",
    multiprocess_mode="livesum",
)
SSE_EVENTS_SENT = Counter("jaxmba_sse_events_sent", "Events written to SSE streams")
SSE_CLIENTS_DROPPED = Counter(
    "jaxmba_sse_clients_dropped",
    "SSE streams ended because the client read too slowly (it is told to reconnect)",
)

ALL_METRICS: tuple[MetricWrapperBase, ...] = (
    MESSAGES_IN,
    INVALID_MESSAGES,
    BATCH_SECONDS,
    QUEUE_DEPTH,
    COMMANDS_SETTLED,
    IGNORED_MESSAGES,
    MESSAGES_WRITTEN,
    TRANSITIONS,
    BATCH_RETRIES,
    DATABASE_ERRORS,
    BROKER_CONNECTS,
    STATUSES_COALESCED,
    BRIDGES_CONNECTED,
    MQTT_CONNECTED,
    MQTT_CONNECTS,
    MQTT_REFUSALS,
    HTTP_REQUESTS,
    HTTP_SECONDS,
    SSE_STREAMS,
    SSE_EVENTS_SENT,
    SSE_CLIENTS_DROPPED,
)
ENCLOSURES_METRIC = "jaxmba_enclosures"


# -- the bridge's own counters --------------------------------------------------------------------
# BridgeStats snapshot key -> the labelled counter it feeds.
_LABELLED_STATS: dict[str, Counter] = {
    "received": MESSAGES_IN,
    "invalid": INVALID_MESSAGES,
    "ignored": IGNORED_MESSAGES,
    "written": MESSAGES_WRITTEN,
    "commands_settled": COMMANDS_SETTLED,
    "transitions": TRANSITIONS,
}
_PLAIN_STATS: dict[str, Counter] = {
    "batch_retries": BATCH_RETRIES,
    "database_errors": DATABASE_ERRORS,
    "connects": BROKER_CONNECTS,
    "statuses_coalesced": STATUSES_COALESCED,
}


def _delta(now: float, before: float) -> float:
    """What a counter gained; a counter that went down was reset (a new Bridge object)."""
    return now - before if now >= before else now


class StatsExporter:
    """Copies the bridge's in-process counters (`BridgeStats.snapshot()`) into the metrics.

    Each call adds what changed since the previous one. Call it after every batch (then the
    batch-latency histogram is exact) and when idle (for the queue depth and connected gauges).
    """

    def __init__(self) -> None:
        self._last: dict[str, Any] = {}
        self._lock = threading.Lock()

    def export(self, snapshot: Mapping[str, Any]) -> None:
        with self._lock:
            last = self._last
            for key, counter in _LABELLED_STATS.items():
                before: Mapping[str, float] = last.get(key, {})
                for label, value in (snapshot.get(key) or {}).items():
                    gained = _delta(float(value), float(before.get(label, 0)))
                    if gained > 0:
                        counter.labels(str(label)).inc(gained)
            for key, counter in _PLAIN_STATS.items():
                gained = _delta(float(snapshot.get(key, 0)), float(last.get(key, 0)))
                if gained > 0:
                    counter.inc(gained)
            self._observe_batches(snapshot, last)
            QUEUE_DEPTH.set(float(snapshot.get("queue_depth", 0)))
            BRIDGES_CONNECTED.set(1.0 if snapshot.get("connected") else 0.0)
            BRIDGES_LEADING.set(1.0 if snapshot.get("leads") else 0.0)
            self._last = {
                key: dict(value) if isinstance(value, Mapping) else value
                for key, value in snapshot.items()
            }

    @staticmethod
    def _observe_batches(snapshot: Mapping[str, Any], last: Mapping[str, Any]) -> None:
        count = int(snapshot.get("batches", 0))
        before = int(last.get("batches", 0))
        if count < before:  # reset
            before, last = 0, {}
        new = count - before
        if new <= 0:
            return
        if new == 1:
            BATCH_SECONDS.observe(float(snapshot.get("last_batch_seconds", 0.0)))
            return
        # Several batches since the last call: their total is known, not each one.
        total = float(snapshot.get("batch_seconds_total", 0.0))
        mean = max(0.0, total - float(last.get("batch_seconds_total", 0.0))) / new
        for _ in range(new):
            BATCH_SECONDS.observe(mean)


_EXPORTER = StatsExporter()


def export_bridge_stats(snapshot: Mapping[str, Any]) -> None:
    """`StatsExporter.export` on this process's exporter (one bridge per process)."""
    _EXPORTER.export(snapshot)


# -- process setup --------------------------------------------------------------------------------
def _pid_of(path: Path) -> int | None:
    """The pid in a multiprocess file name (`counter_1234.db`, `gauge_livesum_1234.db`)."""
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def remove_stale_files(directory: Path) -> int:
    """Delete the files of processes that no longer run; return how many went.

    At `run` start that is every file of the previous run. Where API and bridge run as separate
    units sharing the directory, the files of the running ones stay.
    """
    removed = 0
    for path in directory.glob("*.db"):
        pid = _pid_of(path)
        if pid is None or (pid != os.getpid() and not _alive(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def setup_multiprocess(directory: str | Path) -> Path:
    """Make this process (and the children it starts) write metrics into `directory`.

    Call before the process does any work. Metrics already created in this process are
    re-created in multiprocess mode (their earlier values are dropped).
    """
    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_files(path)
    if removed:
        log.info("metrics: removed %d files of stopped processes from %s", removed, path)
    if getattr(values.ValueClass, "_multiprocess", False):
        os.environ[MULTIPROC_ENV] = str(path)
        return path
    # Children made so far hold in-process values: drop them (before the variable is set:
    # prometheus-client warns about clearing in multiprocess mode) and make the rest anew.
    labelled = [m for m in ALL_METRICS if m._labelnames]
    for metric in labelled:
        metric.clear()
    os.environ[MULTIPROC_ENV] = str(path)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    for metric in ALL_METRICS:
        if not metric._labelnames:
            # An unlabelled metric keeps the value object made at construction.
            metric._metric_init()  # type: ignore[no-untyped-call]
    return path


def setup_process(settings: Settings) -> Path | None:
    """Entry points call this first: multiprocess metrics when `[SERVICE] metrics_dir` is set."""
    if not settings.service.metrics_dir:
        return None
    return setup_multiprocess(settings.service.metrics_dir)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_exited(pid: int) -> None:
    """Forget the live gauges (queue depth, open streams) of a process that has exited."""
    directory = multiprocess_dir()
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def gunicorn_child_exit(_server: Any, worker: Any) -> None:
    """gunicorn `child_exit` hook: a worker's open-stream gauge must not outlive it."""
    process_exited(int(worker.pid))


# -- exposition -----------------------------------------------------------------------------------
def enclosure_states(counts: Mapping[str, int], states: Iterable[str]) -> GaugeMetricFamily:
    """`jaxmba_enclosures{state=...}` from counts read at scrape time (every state, 0 if none)."""
    family = GaugeMetricFamily(
        ENCLOSURES_METRIC, "Registered enclosures by derived state", labels=["state"]
    )
    for state in dict.fromkeys([*states, *counts]):
        family.add_metric([state], float(counts.get(state, 0)))
    return family


class _Scrape:
    """The collectors of one scrape: this process or the multiprocess files, plus extras."""

    def __init__(self, extra: Iterable[Metric]) -> None:
        self._extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        directory = multiprocess_dir()
        source: Collector
        if directory:
            registry = CollectorRegistry()
            source = multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                registry, path=directory
            )
        else:
            source = REGISTRY
        yield from source.collect()
        yield from self._extra


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text exposition of everything, plus `extra` families."""
    return generate_latest(_Scrape(extra))
