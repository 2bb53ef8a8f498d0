"""paho's receive path: a subscriber's CPU per QoS 1 message, paho as it comes (the floor)
against paho reading the socket in chunks (``controlsvc.mqtt.read_buffer``), with its PUBACKs
written together as well (``controlsvc.mqtt.ack_writes``), and the service's client, which
also takes PUBLISHes on a short path (``controlsvc.mqtt.received``).

    .venv/bin/python bench/mqtt_receive.py            # 50,000 messages, 3 rounds of each client
    .venv/bin/python bench/mqtt_receive.py --quick    # 20,000 messages, 1 round

One broker as the service runs it (``LocalBroker``, the service account). For each round and
client, a subscriber (in this process, QoS 1) takes ``--messages`` status-sized messages
(800 bytes, 2,000 topics) that a publisher process sends as fast as the broker takes them, and
acknowledges them as the bridge does (manual acks, from another thread, up to 500 at a time);
the figure is this process's CPU from the first message to the last acknowledged, per
message. The subscription has an identifier, as the bridge's has (since 2026-12-05: the broker
then sends it as a property of every message, which paho decodes). The rounds alternate the
clients, so all see the same machine.

The last line is one JSON object: {"bench": "mqtt_receive", "paho_cpu_us_per_msg": [...],
"buffered_cpu_us_per_msg": [...], "service_cpu_us_per_msg": [...],
"received_cpu_us_per_msg": [...], "ratio": {"buffered": ..., "service": ..., "received": ...}
(medians, to paho's)}.
No target: the figure explains the bridge's and the API's receive cost (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
from _support import Stack, machine, print_result  # noqa: E402
from floors import Broker, disconnect, stack_broker, subscribe  # noqa: E402

from controlsvc.mqtt.ack_writes import AckJoiningClient  # noqa: E402
from controlsvc.mqtt.read_buffer import BufferedReadClient  # noqa: E402
from controlsvc.mqtt.received import Received, ReceivingClient  # noqa: E402

CLIENTS: dict[str, type[mqtt.Client]] = {
    "paho": mqtt.Client,
    "buffered": BufferedReadClient,
    "service": AckJoiningClient,
    "received": ReceivingClient,  # with ``on_received``: the short path
}

PAYLOAD_BYTES = 800  # a status document
TOPICS = 2000
TIMEOUT_S = 300.0
ACK_BATCH = 500  # the bridge's batch under load

PUBLISHER = """
import os
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="recv-pub", protocol=mqtt.MQTTv5)
c.username_pw_set(os.environ["U"], os.environ["W"])
c.max_inflight_messages_set(1000)
c.max_queued_messages_set(0)
c.connect(os.environ["H"], int(os.environ["P"]))
c.loop_start()
payload = b"x" * {size}
infos = [c.publish("{prefix}/floor/recv/%04d" % (i % {topics}), payload, qos=1) for i in range({n})]
for info in infos:
    info.wait_for_publish(60)
c.disconnect()
c.loop_stop()
"""


def one_round(broker: Broker, client_class: type[mqtt.Client], n: int) -> float:
    """CPU seconds per message of a subscriber of ``client_class`` taking ``n`` messages and
    acknowledging them as the bridge does: manual acks, sent in batches by another thread."""
    me = psutil.Process()
    got = 0
    started: list[float] = []
    done = threading.Event()
    pending: list[tuple[int, int]] = []
    lock = threading.Condition()

    def on_received(message: Received) -> None:
        if not started:
            started.append(sum(me.cpu_times()[:2]))
        with lock:
            pending.append((message.mid, message.qos))
            lock.notify()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        on_received(Received(message.topic, message.payload, message.qos, False, message.mid))

    def acker() -> None:
        nonlocal got
        while got < n:
            with lock:
                lock.wait_for(lambda: pending, timeout=1.0)
                batch = pending[:ACK_BATCH]
                del pending[:ACK_BATCH]
            for mid, qos in batch:
                client.ack(mid, qos)
            got += len(batch)
        done.set()

    name = client_class.__name__
    client = broker.client(f"recv-{name}-{time.monotonic_ns()}", client_class)
    client.manual_ack_set(True)
    client.on_message = on_message
    if isinstance(client, ReceivingClient):
        client.on_received = on_received
    # With an identifier, as the bridge subscribes: the broker sends it with every message.
    subscribe(client, f"{broker.prefix}/floor/recv/#", subscription_id=1)
    acking = threading.Thread(target=acker, name="acker", daemon=True)
    acking.start()
    code = PUBLISHER.format(size=PAYLOAD_BYTES, prefix=broker.prefix, topics=TOPICS, n=n)
    env = broker.env() | {"H": broker.host, "P": str(broker.port)}
    env |= {"U": broker.user, "W": broker.password}
    publisher = subprocess.Popen([sys.executable, "-c", code], env=env)  # noqa: S603
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not done.wait(0.5):
            if publisher.poll() not in (None, 0):
                raise RuntimeError(f"the publisher failed ({publisher.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {got} of {n} messages in {TIMEOUT_S:g} s")
        cpu = sum(me.cpu_times()[:2]) - started[0]
    finally:
        publisher.wait(TIMEOUT_S)
        disconnect(client)
    return cpu / (n - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 messages, 1 round")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    n = args.messages or (20_000 if args.quick else 50_000)
    rounds = args.rounds or (1 if args.quick else 3)
    figures: dict[str, list[float]] = {key: [] for key in CLIENTS}
    with Stack() as stack:
        stack.broker({})
        broker = stack_broker(stack)
        for _ in range(rounds):
            for key, cls in CLIENTS.items():
                figures[key].append(round(one_round(broker, cls, n) * 1e6, 1))
        facts = machine()
    medians = {key: statistics.median(values) for key, values in figures.items()}
    print_result(
        {
            "bench": "mqtt_receive",
            "messages": n,
            "rounds": rounds,
            "payload_bytes": PAYLOAD_BYTES,
            **{f"{key}_cpu_us_per_msg": values for key, values in figures.items()},
            "floor": {
                "kind": "paho's own Client, same broker and load",
                "cpu_us_per_msg": medians["paho"],
            },
            "ratio": {
                key: round(medians[key] / medians["paho"], 2) for key in CLIENTS if key != "paho"
            },
            "targets_met": None,
            "machine": facts,
        }
    )


if __name__ == "__main__":
    main()
