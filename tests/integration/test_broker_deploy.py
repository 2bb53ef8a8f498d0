"""The shipped production config (deploy/mosquitto/mosquitto.conf) run for real.

Only the system paths and the three ports are rewritten (each rewrite must match exactly as
often as expected, so a change to the shipped file that these tests do not understand fails
loudly). The TLS
certificates come from deploy/mosquitto/make-certs.sh, the procedure docs/broker.md gives labs.
"""
# ruff: noqa: F811 (pytest fixtures imported from tests.support.broker are test arguments)

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from controlsvc.broker import (
    OPERATOR_USER,
    SERVICE_USER,
    MosquittoProcess,
    find_free_port,
    write_password_file,
)
from controlsvc.config.settings import MqttSettings
from controlsvc.mqtt.connection import MqttConnection
from controlsvc.mqtt.read_buffer import READ_CHUNK
from tests.support.broker import (
    REPO_ROOT,
    SHIPPED_ACL,
    SHIPPED_CONF,
    default_accounts,
    require_mosquitto,
)
from tests.support.mqtt import ACCEPTED, NOT_AUTHORIZED, ConnectRefused, MqttTestClient
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # TLS certificates, a broker per test

MAKE_CERTS = REPO_ROOT / "deploy" / "mosquitto" / "make-certs.sh"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Deployed:
    process: MosquittoProcess
    local_port: int  # the shipped 1883 listener: the service account alone
    operator_port: int  # the shipped 1884 listener: operators on the broker host
    tls_port: int  # the shipped 8883 listener
    ca: Path
    accounts: dict[str, str]

    def client(
        self, user: str | None, *, tls: bool = True, port: int | None = None, **kwargs: object
    ) -> MqttTestClient:
        """Over TLS on 8883, else on ``port`` (default: the service's 1883)."""
        port = self.tls_port if tls else (port or self.local_port)
        client = MqttTestClient(HOST, port, tls_ca=self.ca if tls else None, **kwargs)  # type: ignore[arg-type]
        client.connect(user, self.accounts.get(user or "", None))
        return client


def localize(conf: str, replacements: dict[str, tuple[str, int]]) -> str:
    """Rewrite system paths and ports of the shipped config; each ``old: (new, times)`` must
    occur exactly ``times`` times."""
    for old, (new, times) in replacements.items():
        count = conf.count(old)
        assert count == times, f"{old!r} occurs {count} times in {SHIPPED_CONF}; update this test"
        conf = conf.replace(old, new)
    return conf


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    require_mosquitto()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make the TLS certificates)")
    root = tmp_path_factory.mktemp("deployed")
    certs = root / "certs"
    subprocess.run(
        ["sh", str(MAKE_CERTS), str(certs), "localhost", HOST], check=True, capture_output=True
    )
    accounts = default_accounts()
    service = {SERVICE_USER: accounts[SERVICE_USER]}
    write_password_file(root / "passwd-service", service)
    write_password_file(root / "passwd", {u: p for u, p in accounts.items() if u not in service})
    (root / "data").mkdir()
    local_port, operator_port, tls_port = (free_ports := _free_ports(3))
    conf = localize(
        SHIPPED_CONF.read_text(),
        {
            "user mosquitto\n": (f"user {pwd.getpwuid(os.geteuid()).pw_name}\n", 1),
            "/run/mosquitto/mosquitto.pid": (str(root / "mosquitto.pid"), 1),
            "password_file /etc/mosquitto/passwd-service\n": (
                f"password_file {root / 'passwd-service'}\n",
                1,
            ),
            "password_file /etc/mosquitto/passwd\n": (f"password_file {root / 'passwd'}\n", 2),
            "acl_file /etc/mosquitto/acl\n": (f"acl_file {SHIPPED_ACL}\n", 3),
            "/var/lib/mosquitto/": (f"{root / 'data'}/", 1),
            "/var/log/mosquitto/mosquitto.log": (str(root / "mosquitto.log"), 1),
            "/etc/mosquitto/certs/ca.crt": (str(certs / "ca.crt"), 1),
            "/etc/mosquitto/certs/server.crt": (str(certs / "server.crt"), 1),
            "/etc/mosquitto/certs/server.key": (str(certs / "server.key"), 1),
            "listener 1883 127.0.0.1\n": (f"listener {local_port} 127.0.0.1\n", 1),
            "listener 1884 127.0.0.1\n": (f"listener {operator_port} 127.0.0.1\n", 1),
            "listener 8883\n": (f"listener {tls_port} 127.0.0.1\n", 1),
        },
    )
    (root / "mosquitto.conf").write_text(conf)
    process = MosquittoProcess(
        root / "mosquitto.conf",
        ports=free_ports,
        log_file=root / "mosquitto.log",
        output_file=root / "mosquitto.out",
        pid_file=root / "mosquitto.pid",
    )
    process.start()
    try:
        yield Deployed(process, local_port, operator_port, tls_port, certs / "ca.crt", accounts)
    finally:
        process.stop()


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = find_free_port()
        if port not in ports:
            ports.append(port)
    return ports


def test_shipped_config_starts_and_listens(deployed: Deployed) -> None:
    assert deployed.process.running
    log = deployed.process.log_tail(200)
    assert ": Error: " not in log  # mosquitto's config and start-up errors


def test_enclosure_over_tls_is_held_to_the_shipped_acl(deployed: Deployed) -> None:
    service = deployed.client(SERVICE_USER, tls=False, client_id="svc")
    service.subscribe("jaxmba/v1/enc/+/status")
    enc = deployed.client("enc-a", client_id="enc-a")
    try:
        assert enc.publish("jaxmba/v1/enc/enc-a/status", b"over tls") in ACCEPTED
        assert service.expect("jaxmba/v1/enc/enc-a/status").payload == b"over tls"
        assert enc.publish("jaxmba/v1/enc/enc-b/status", b"forged") == NOT_AUTHORIZED
    finally:
        enc.disconnect()
        service.disconnect()


def test_tls_listener_refuses_anonymous_and_plain_clients(deployed: Deployed) -> None:
    with pytest.raises(ConnectRefused):
        deployed.client(None, client_id="anon")
    plain = MqttTestClient(HOST, deployed.tls_port, client_id="plain")
    with pytest.raises(ConnectionError):  # no CONNACK: the listener wants a TLS handshake
        plain.connect("enc-a", deployed.accounts["enc-a"])


def test_tls_listener_presents_a_certificate_of_the_lab_ca(deployed: Deployed) -> None:
    context = ssl.create_default_context(cafile=str(deployed.ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python 3.13 clients check by default
    with (
        socket.create_connection((HOST, deployed.tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_listener_forces_the_client_id_to_the_user_name(deployed: Deployed) -> None:
    victim = deployed.client("enc-c", client_id="enc-c")
    intruder = deployed.client("enc-d", client_id="enc-c")
    try:
        assert victim.publish("jaxmba/v1/enc/enc-c/status", b"still connected") in ACCEPTED
    finally:
        intruder.disconnect()
        victim.disconnect()


def test_operator_on_the_local_listener_reads_and_cannot_publish(deployed: Deployed) -> None:
    ops = deployed.client(OPERATOR_USER, tls=False, port=deployed.operator_port, client_id="ops")
    try:
        assert ops.subscribe("jaxmba/v1/#") == [1]
        assert ops.publish("jaxmba/v1/enc/enc-a/cmd", b"{}") == NOT_AUTHORIZED
    finally:
        ops.disconnect()


def test_reload_of_the_shipped_config(deployed: Deployed) -> None:
    deployed.process.reload()  # what `systemctl reload mosquitto` does: SIGHUP
    assert deployed.process.running
    enc = deployed.client("enc-a", client_id="enc-a-after-reload")
    enc.disconnect()


def test_a_service_connection_over_tls_reads_a_burst_whole(deployed: Deployed, settings) -> None:
    """``MqttConnection`` over TLS (``[MQTT] tls``, ``ca_file``) reading in chunks: TLS hands
    a record (at most 16 KiB) per read, so messages that span records, and one larger than the
    read chunk, must arrive whole and in order. Logged in as an enclosure: the TLS listener is
    theirs."""
    topic = "jaxmba/v1/enc/enc-a/cmd"
    received: list[bytes] = []
    lock = threading.Lock()

    def on_up(client, _session_present):
        client.subscribe(topic, qos=1)

    def on_message(_c, _u, msg):
        with lock:
            received.append(msg.payload)

    mqtt = MqttSettings(
        host=HOST,
        port=deployed.tls_port,
        username="enc-a",
        password=SecretStr(deployed.accounts["enc-a"]),
        tls=True,
        ca_file=str(deployed.ca),
    )
    connection = MqttConnection(
        settings.model_copy(update={"mqtt": mqtt}),
        kind="tls-test",
        client_id="enc-a",
        logger=logging.getLogger(__name__),
        on_up=on_up,
    )
    connection.client.on_message = on_message
    connection.start()
    service = deployed.client(SERVICE_USER, tls=False, client_id="svc-burst")
    try:
        wait_for(lambda: connection.up, message="no TLS connection")
        # Probes until one arrives (messages before the SUBACK are not delivered); a later
        # probe may still arrive after, so they are left out of the comparison.
        wait_for(
            lambda: service.publish(topic, b"probe") in ACCEPTED and received,
            message="the subscription never delivered",
        )
        sizes = [(i * 997) % 40_000 for i in range(200)] + [READ_CHUNK * 2 + 7]
        payloads = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
        infos = [service._client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=30)

        def burst() -> list[bytes]:
            with lock:
                return [p for p in received if p != b"probe"]

        wait_for(lambda: len(burst()) >= len(payloads), message="the burst did not arrive")
        assert burst() == payloads
    finally:
        service.disconnect()
        connection.stop()
