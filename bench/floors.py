"""Floors: each benchmark's job done by the bare parts, in the same run on the same broker and
database, so that a figure can be given as a ratio to what this machine can do at best.

- ``echo_floor``: a bare paho QoS 1 request/response echo through the broker (a responder
  process answers each request on a response topic; the payload sizes of the real command and
  its ack; TCP_NODELAY as our clients set it): the floor of a command round trip.
- ``Drain``: a bare paho subscriber (its own process, QoS 1 as the bridge subscribes) draining
  the messages the benchmark's fleet publishes anyway: its CPU per message, and for a burst
  when it had the last one.
- ``insert_floor``: the rows the bridge stored, written again by one bare batched statement
  per 500 rows (``COPY`` on PostgreSQL, ``executemany`` on SQLite) into a copy of their table
  with the same indexes: the client CPU and wall time per row.
- ``retained_floor``: the same retained messages published again by one paho client (QoS 1,
  paho's default window of 20 in flight, until the last PUBACK), on topics nobody reads; the
  median of three rounds.
- ``read_floor``: the rows a REST read returns, read by one bare statement on a raw DBAPI
  connection and serialised with pydantic-core: wall and CPU per read.
- ``encode_floor``: frames encoded by libx264 through PyAV alone with the recorder's encoder
  settings (no capture thread, queues, sidecar, hashing or segment rotation): CPU per frame.
- ``Sniffer``: records what the service publishes (payloads of commands, acks, ``desired``
  documents), so the floors use the same sizes and the same messages.

Floor topics live under ``{prefix}/floor/``, which the bridge does not subscribe to. The
clients use the service account (``readwrite {prefix}/#``) on the listener the bridge uses.

Run as a script, this module is the child process of ``echo_floor`` (``echo``) and of
``Drain`` (``drain``); the broker's address and credentials come from the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.engine import Engine

ENV_HOST = "JAXMBA_FLOOR_MQTT_HOST"
ENV_PORT = "JAXMBA_FLOOR_MQTT_PORT"
ENV_USER = "JAXMBA_FLOOR_MQTT_USERNAME"
ENV_PASSWORD = "JAXMBA_FLOOR_MQTT_PASSWORD"  # noqa: S105 - the variable's name, not a secret
READY = "ready"
CHILD_READY_TIMEOUT_S = 30.0
WAIT_TIMEOUT_S = 30.0
INSERT_BATCH = 500  # the bridge's batch size under load
ECHO_WARMUP = 20
SEQ_BYTES = 12  # the request number at the start of each echo payload


# -- MQTT ------------------------------------------------------------------------------------------
# paho's network loop waits in ``select()``, which refuses a descriptor above 1023: in a process
# that already holds a simulated fleet's thousands of connections, a floor client's socket would
# get one, and the client would never connect. So a few low descriptors are held from the start
# (this module is imported before any fleet connects), and four are let go just before a floor
# client connects: the connection and paho's wake-up socket pair (made by ``loop_start``
# through a listening socket) then take them (the lowest free numbers); the rest is held again.
_LOW_HELD = 16
_LOW_PER_CLIENT = 4
_low: list[int] = []


def _hold_low() -> None:
    while len(_low) < _LOW_HELD:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd >= 1024:  # too late for this one: hold no more
            os.close(fd)
            return
        _low.append(fd)


def _let_go_low(n: int) -> None:
    for _ in range(min(n, len(_low))):
        os.close(_low.pop())


_hold_low()


def _nodelay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(
    host: str,
    port: int,
    user: str,
    password: str,
    client_id: str,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A connected paho client as ours are made (MQTT 5, VERSION2 callbacks, TCP_NODELAY), its
    network loop running in a thread."""
    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.on_socket_open = _nodelay
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    _let_go_low(_LOW_PER_CLIENT)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    _hold_low()
    if not connected.wait(WAIT_TIMEOUT_S):
        client.loop_stop()
        raise TimeoutError(f"floor client {client_id}: no CONNACK from {host}:{port}")
    return client


def subscribe(
    client: mqtt.Client, topic: str, *, retained: bool = False, subscription_id: int | None = None
) -> None:
    """Subscribe at QoS 1 and wait for the SUBACK; without ``retained`` the broker sends no
    retained messages (only what is published from now on). ``subscription_id``: the broker
    then sends it with every message, as it does to the bridge (its shared subscription has
    one)."""
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()
    handling = (
        SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
        if retained
        else SubscribeOptions.RETAIN_DO_NOT_SEND
    )
    properties = None
    if subscription_id is not None:
        properties = Properties(PacketTypes.SUBSCRIBE)
        properties.SubscriptionIdentifier = subscription_id
    client.subscribe(
        topic,
        options=SubscribeOptions(qos=1, retainHandling=handling),
        properties=properties,
    )
    if not done.wait(WAIT_TIMEOUT_S):
        raise TimeoutError(f"no SUBACK for {topic}")


def disconnect(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()
    _hold_low()  # the descriptor its socket had is free again


class Broker:
    """Where the floor clients connect, and as whom."""

    def __init__(self, host: str, port: int, user: str, password: str, prefix: str) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.prefix = prefix

    def client(self, client_id: str, client_class: type[mqtt.Client] = mqtt.Client) -> mqtt.Client:
        return connect(self.host, self.port, self.user, self.password, client_id, client_class)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            ENV_HOST: self.host,
            ENV_PORT: str(self.port),
            ENV_USER: self.user,
            ENV_PASSWORD: self.password,
        }

    def child(self, *args: str) -> subprocess.Popen[str]:
        """This module as a child process; returns once it says it is subscribed."""
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, __file__, *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        line = _readline(child, CHILD_READY_TIMEOUT_S)
        if line.strip() != READY:
            child.kill()
            child.wait()
            raise RuntimeError(f"floor child {args[0]} did not start: {line!r}")
        return child


def service_port(local: Any) -> int:
    """The port a ``LocalBroker`` takes the service account on: its service listener where it
    has one (the bridge's own path), else its main listener."""
    return int(getattr(local, "service_port", 0) or local.port)


def stack_broker(stack: Any) -> Broker:
    """The floor clients' broker for a ``_support.Stack``: its broker, the service account."""
    from controlsvc.broker import SERVICE_USER

    local = stack.broker_
    return Broker(
        local.host, service_port(local), SERVICE_USER, stack.service_password, local.prefix
    )


def _readline(child: subprocess.Popen[str], timeout: float) -> str:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(child.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


class Sniffer:
    """Records the payloads published on ``topic`` (an MQTT filter) while it is open: the
    first per topic (``first``) or the latest."""

    def __init__(
        self, broker: Broker, topic: str, *, retained: bool = False, first: bool = False
    ) -> None:
        self.broker, self.topic, self.retained, self.first = broker, topic, retained, first
        self.payloads: dict[str, bytes] = {}
        self.sizes: list[int] = []
        self.times: list[float] = []  # when each message arrived (monotonic)
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            if not (self.first and message.topic in self.payloads):
                self.payloads[message.topic] = bytes(message.payload)
            self.sizes.append(len(message.payload))
            self.times.append(time.monotonic())

    def __enter__(self) -> Sniffer:
        self._client = self.broker.client(f"floor-sniffer-{os.getpid()}-{id(self)}")
        self._client.on_message = self._on_message
        subscribe(self._client, self.topic, retained=self.retained)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            disconnect(self._client)

    def wait(self, count: int, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Until ``count`` topics have a payload."""
        deadline = time.monotonic() + timeout
        while len(self.payloads) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: {len(self.payloads)} of {count} topics seen")
            time.sleep(0.02)

    def arrivals(self, since: float, until: float) -> list[float]:
        """When the messages that arrived between ``since`` and ``until`` did (monotonic)."""
        with self._lock:
            return [t for t in self.times if since <= t <= until]

    def typical_size(self) -> int:
        with self._lock:
            ordered = sorted(self.sizes)
        if not ordered:
            raise RuntimeError(f"nothing was published on {self.topic}")
        return ordered[len(ordered) // 2]


# -- floors ----------------------------------------------------------------------------------------
def echo_floor(
    broker: Broker, n: int, request_bytes: int, response_bytes: int, warmup: int = ECHO_WARMUP
) -> dict[str, Any]:
    """Round trips (ms) of a QoS 1 request answered by a responder process with a QoS 1
    response, one at a time."""
    from _support import percentile  # not at the top: the children stay lean

    base = f"{broker.prefix}/floor/echo"
    responder = broker.child(
        "echo", f"{base}/request", f"{base}/response", "--response-bytes", str(response_bytes)
    )
    client = broker.client(f"floor-requester-{os.getpid()}")
    answered = threading.Event()
    got: list[bytes] = []

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload[:SEQ_BYTES]))
        answered.set()

    client.on_message = on_message
    try:
        subscribe(client, f"{base}/response")
        rtts: list[float] = []
        for i in range(warmup + n):
            seq = f"{i:0{SEQ_BYTES}d}".encode()
            payload = seq + b"x" * max(0, request_bytes - SEQ_BYTES)
            answered.clear()
            got.clear()
            started = time.perf_counter()
            client.publish(f"{base}/request", payload, qos=1)
            if not answered.wait(WAIT_TIMEOUT_S):
                raise TimeoutError(f"echo floor: no response to request {i}")
            elapsed = (time.perf_counter() - started) * 1000
            if got != [seq]:
                raise RuntimeError(f"echo floor: response {got!r} to request {seq!r}")
            if i >= warmup:
                rtts.append(elapsed)
    finally:
        disconnect(client)
        responder.terminate()
        responder.wait()
    return {
        "kind": "paho QoS 1 request/response echo",
        "n": len(rtts),
        "request_bytes": request_bytes,
        "response_bytes": response_bytes,
        "p50_ms": round(percentile(rtts, 0.50), 3),
        "p95_ms": round(percentile(rtts, 0.95), 3),
        "p99_ms": round(percentile(rtts, 0.99), 3),
    }


class Drain:
    """A bare paho subscriber in its own process, draining ``topic`` (QoS 1, no retained
    messages) from ``start()`` on, for ``seconds`` or until ``count`` messages arrived."""

    def __init__(self, broker: Broker, topic: str, *, count: int = 0, seconds: float) -> None:
        self.broker, self.topic, self.count, self.seconds = broker, topic, count, seconds
        self._child: subprocess.Popen[str] | None = None

    def start(self) -> Drain:
        self._child = self.broker.child(
            "drain", self.topic, "--count", str(self.count), "--seconds", str(self.seconds)
        )
        return self

    def result(self) -> dict[str, Any]:
        """``received``, ``cpu_s`` (its process CPU from subscribed until done), ``last_at``
        (wall clock of the last message, or None), ``window_s``."""
        assert self._child is not None
        line = _readline(self._child, self.seconds + WAIT_TIMEOUT_S)
        self._child.wait(WAIT_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"the floor subscriber on {self.topic} gave no result")
        return json.loads(line)  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
            self._child.wait()


def drain_figures(drain: Mapping[str, Any]) -> dict[str, Any]:
    received = int(drain["received"])
    return {
        "kind": "bare paho subscriber (QoS 1, own process)",
        "received": received,
        "cpu_ms_per_msg": round(drain["cpu_s"] * 1000 / max(1, received), 4),
    }


def status_floor(subscriber: Mapping[str, Any], insert: Mapping[str, Any]) -> dict[str, Any]:
    """The floor of receiving and storing a status: the bare subscriber's CPU per message
    plus the bare write's per row (``cpu_ms_per_msg``)."""
    per_msg = subscriber["cpu_ms_per_msg"] + insert["cpu_ms_per_row"]
    return {"subscriber": subscriber, "insert": insert, "cpu_ms_per_msg": round(per_msg, 4)}


def insert_floor(
    engine: Engine, table: str, n: int, *, batch: int = INSERT_BATCH, order_by: str = "id"
) -> dict[str, Any]:
    """Write the first ``n`` rows of ``table`` (all columns but ``order_by``'s generated key)
    again into ``floor_<table>`` (same columns and indexes), ``batch`` rows per statement
    and transaction; client CPU (this thread) and wall time per row."""
    floor_table = f"floor_{table}"
    postgres = engine.dialect.name == "postgresql"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if postgres:
            cursor.execute(f"CREATE TABLE {floor_table} (LIKE {table} INCLUDING ALL)")
        else:  # the table's own definition and indexes, renamed
            cursor.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
                " ORDER BY type DESC",  # the table before its indexes
                (table,),
            )
            for kind, name, sql in cursor.fetchall():
                sql = sql.replace(f"{kind.upper()} {name}", f"{kind.upper()} floor_{name}", 1)
                cursor.execute(sql.replace(f" ON {table} ", f" ON {floor_table} ", 1))
        cursor.execute(f"SELECT * FROM {table} ORDER BY {order_by} LIMIT {int(n)}")
        names = [d[0] for d in cursor.description]
        keep = [i for i, name in enumerate(names) if name != order_by]
        rows = [tuple(row[i] for i in keep) for row in cursor.fetchall()]
        raw.commit()
        columns = ", ".join(names[i] for i in keep)
        batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for chunk in batches:
            if postgres:
                buffer = io.StringIO()
                csv.writer(buffer).writerows(_copy_row(row) for row in chunk)
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {floor_table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer
                )
            else:
                marks = ", ".join("?" * len(keep))
                cursor.executemany(
                    f"INSERT INTO {floor_table} ({columns}) VALUES ({marks})",
                    [_sqlite_row(row) for row in chunk],
                )
            raw.commit()
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
        cursor.execute(f"DROP TABLE {floor_table}")
        raw.commit()
    finally:
        raw.close()
    count = max(1, len(rows))
    return {
        "kind": f"{'COPY' if postgres else 'executemany'} per {batch} rows",
        "rows": len(rows),
        "cpu_ms_per_row": round(cpu * 1000 / count, 4),
        "wall_ms_per_row": round(wall * 1000 / count, 4),
    }


def _copy_row(row: Iterable[Any]) -> list[Any]:
    """Python values as COPY's CSV wants them (what a writer holding them would have to do)."""
    out: list[Any] = []
    for value in row:
        if value is None:
            out.append("")
        elif isinstance(value, dict | list):
            out.append(json.dumps(value, separators=(",", ":")))
        elif hasattr(value, "isoformat"):
            out.append(value.isoformat())
        else:
            out.append(value)
    return out


def _sqlite_row(row: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(
        json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else v for v in row
    )


def retained_floor(broker: Broker, payloads: list[bytes], repeats: int = 3) -> dict[str, Any]:
    """Seconds to publish ``payloads`` retained at QoS 1 from one client until the last
    PUBACK (paho's default of 20 in flight, as the API's publisher): the median of
    ``repeats`` rounds (``samples``: each round's), since one round moved by 2x from one run
    to the next on an otherwise idle machine."""
    client = broker.client(f"floor-retained-{os.getpid()}")
    acked = threading.Semaphore(0)
    client.on_publish = lambda *_: acked.release()
    base = f"{broker.prefix}/floor/retained"
    samples = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            for i, payload in enumerate(payloads):
                client.publish(f"{base}/{i}", payload, qos=1, retain=True)
            for _ in payloads:
                if not acked.acquire(timeout=WAIT_TIMEOUT_S):
                    raise TimeoutError("retained floor: a PUBACK did not come")
            samples.append(time.perf_counter() - started)
            for i in range(len(payloads)):  # leave no retained messages behind
                client.publish(f"{base}/{i}", b"", qos=1, retain=True)
            for _ in payloads:
                acked.acquire(timeout=WAIT_TIMEOUT_S)
    finally:
        disconnect(client)
    return {
        "kind": "paho QoS 1 retained publishes, one client",
        "messages": len(payloads),
        "bytes_p50": sorted(len(p) for p in payloads)[len(payloads) // 2] if payloads else 0,
        "seconds": round(statistics.median(samples), 4),
        "samples": [round(v, 4) for v in samples],
    }


def encode_floor(
    images: list[Any], fps: int, frames: int, encoder: Any, grey: bool
) -> dict[str, Any]:
    """Process CPU per frame to encode ``frames`` frames (``images`` over and over: numpy
    arrays as the camera gives them) with libx264 through PyAV alone into a Matroska file,
    with ``encoder``'s (an ``EncoderSettings``) crf, preset, x264 parameters and keyframe
    interval, converting colour frames to yuv420p as the recorder does."""
    import tempfile
    from fractions import Fraction

    import av
    from av.video.frame import VideoFrame
    from av.video.reformatter import ColorRange, Colorspace

    options = {
        "crf": str(encoder.crf),
        "preset": encoder.preset,
        "g": str(max(1, round(encoder.keyframe_interval_s * fps))),
    }
    if encoder.x264_params:
        options["x264-params"] = encoder.x264_params
    with tempfile.TemporaryDirectory(prefix="jaxmba-floor-") as tmp:
        container = av.open(f"{tmp}/floor.mkv", mode="w", format="matroska")
        stream = container.add_stream("libx264", rate=Fraction(fps), options=options)
        stream.width, stream.height = images[0].shape[1], images[0].shape[0]
        stream.pix_fmt = "gray" if grey else "yuv420p"
        source_format = "gray" if grey else "rgb24"
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(frames):
            frame = VideoFrame.from_ndarray(images[i % len(images)], format=source_format)
            if not grey:
                frame = frame.reformat(
                    format="yuv420p",
                    dst_colorspace=Colorspace.ITU601,
                    dst_color_range=ColorRange.MPEG,
                )
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        container.close()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "kind": "libx264 through PyAV alone, same settings",
        "frames": frames,
        "cpu_ms_per_frame": round(cpu * 1000 / frames, 3),
        "cores_at_target": round(cpu / frames * fps, 3),
        "fps_alone": round(frames / wall, 1),
    }


def read_floor(engine: Engine, sql: str, reads: int, **params: Any) -> dict[str, Any]:
    """The floor of a REST read: the same rows read by one bare statement on a raw DBAPI
    connection and serialised to JSON (pydantic-core, the API's own encoder), ``reads`` times;
    median wall and CPU (this thread) per read, the rows and the bytes."""
    from pydantic_core import to_json

    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        walls, cpus, size, count = [], [], 0, 0
        for _ in range(reads + 1):  # the first one warms the connection and the plan
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            cursor.execute(sql, params or None)
            rows = cursor.fetchall()
            body = to_json([list(row) for row in rows])
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.thread_time() - cpu0)
            size, count = len(body), len(rows)
            raw.commit()
    finally:
        raw.close()
    walls, cpus = sorted(walls[1:]), sorted(cpus[1:])
    return {
        "ms": round(walls[len(walls) // 2] * 1000, 2),
        "cpu_ms": round(cpus[len(cpus) // 2] * 1000, 2),
        "rows": count,
        "bytes": size,
    }


# -- what the benchmarks report --------------------------------------------------------------------
def ratio(value: float, floor: float) -> float | None:
    return round(value / floor, 2) if floor > 0 else None


def cpu_ms_per_unit(units: int, **cpu_seconds: float) -> dict[str, float]:
    """Process CPU time (ms) of each service process per unit of work, and their total."""
    per = {name: round(s * 1000 / max(1, units), 4) for name, s in cpu_seconds.items()}
    per["total"] = round(sum(cpu_seconds.values()) * 1000 / max(1, units), 4)
    return per


def check_targets(bench: str, targets: Mapping[str, bool]) -> bool:
    """Print whether each target is met (stderr) and return whether all are."""
    if not targets:
        print(f"{bench}: no ratio target", file=sys.stderr)
    for name, met in targets.items():
        print(f"{bench}: target {name}: {'met' if met else 'NOT met'}", file=sys.stderr)
    return all(targets.values())


# -- the child processes ---------------------------------------------------------------------------
def _child_client(name: str) -> mqtt.Client:
    return connect(
        os.environ[ENV_HOST],
        int(os.environ[ENV_PORT]),
        os.environ[ENV_USER],
        os.environ[ENV_PASSWORD],
        f"floor-{name}-{os.getpid()}",
    )


def _echo(args: argparse.Namespace) -> None:
    client = _child_client("responder")
    padding = b"y" * max(0, args.response_bytes - SEQ_BYTES)

    def on_message(c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        c.publish(args.response_topic, message.payload[:SEQ_BYTES] + padding, qos=1)

    client.on_message = on_message
    subscribe(client, args.request_topic)
    print(READY, flush=True)
    threading.Event().wait()  # until terminated


def _drain(args: argparse.Namespace) -> None:
    client = _child_client("drain")
    lock = threading.Lock()
    done = threading.Event()
    state: dict[str, Any] = {"received": 0, "last_at": None, "last_cpu": None}

    def on_message(_c: Any, _u: Any, _message: mqtt.MQTTMessage) -> None:
        with lock:
            state["received"] += 1
            state["last_at"] = time.time()
            if args.count and state["received"] >= args.count:
                state["last_cpu"] = time.process_time()
                done.set()

    client.on_message = on_message
    subscribe(client, args.topic)
    cpu0, wall0 = time.process_time(), time.monotonic()
    print(READY, flush=True)
    done.wait(args.seconds)
    with lock:
        cpu = (state["last_cpu"] or time.process_time()) - cpu0
        result = {
            "received": state["received"],
            "cpu_s": cpu,
            "last_at": state["last_at"],
            "window_s": time.monotonic() - wall0,
        }
    with contextlib.suppress(Exception):
        disconnect(client)
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="floor child processes (see the docstring)")
    sub = parser.add_subparsers(dest="mode", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("request_topic")
    echo.add_argument("response_topic")
    echo.add_argument("--response-bytes", type=int, required=True)
    drain = sub.add_parser("drain")
    drain.add_argument("topic")
    drain.add_argument("--count", type=int, default=0)
    drain.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    (_echo if args.mode == "echo" else _drain)(args)


if __name__ == "__main__":
    main()
