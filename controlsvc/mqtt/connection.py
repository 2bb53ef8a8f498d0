"""One MQTT connection of the service: the one class that connects, reconnects and reports.

Every connection the service makes (the API's publisher, event feed and preview relay; the
bridge's two) is a ``MqttConnection``: MQTT 5 with VERSION2 callbacks, credentials and TLS from
``[MQTT]``, TCP_NODELAY on every socket, reconnecting with backoff, CONNACK refusals read with
the table the agent uses too (``schemas.connack``: a fatal one stops the reconnecting), up and
down counted in ``/metrics`` by kind, the socket read in chunks (``read_buffer``) and
acknowledgements written together (``ack_writes``), and a network loop that survives an
exception escaping paho (logged, then connected again afresh).

Its user keeps its own state and wording, through three hooks called on paho's network thread:
``on_up(client, session_present)`` after each accepted CONNACK (subscribe there),
``on_down(detail)`` once each time the connection goes down (or first fails), and
``on_refused(refusal)`` for each refused CONNACK. The user sets ``on_message`` (and
``on_received`` for the short path, ``controlsvc.mqtt.received``), ``on_subscribe`` and
``on_publish`` on ``client`` itself.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from controlsvc.config.settings import Settings
from controlsvc.metrics import MQTT_CONNECTED, MQTT_CONNECTS, MQTT_REFUSALS
from controlsvc.mqtt.loop_stop import stop_loop
from controlsvc.mqtt.received import ReceivingClient
from schemas.connack import Refusal, refusal

__all__ = ["STOPPED", "MqttConnection", "new_properties", "reason_value"]

_log = logging.getLogger(__name__)

# The detail of the down hook when the user itself stopped the connection.
STOPPED = "stopped"
# Reconnect backoff, seconds (doubles from min to max): the users' defaults.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30

UpHook = Callable[[paho.Client, bool], None]
DownHook = Callable[[str], None]
RefusedHook = Callable[[Refusal], None]


def reason_value(code: ReasonCode | int | MQTTErrorCode | None) -> int:
    """The numeric value of a paho reason code (0 for None)."""
    if code is None:
        return 0
    if isinstance(code, ReasonCode):
        return int(code.value)
    return int(code)


def new_properties(packet_type: int) -> Properties:
    """paho ``Properties`` for one packet type (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    """``on_socket_open``: no Nagle delay (a QoS 1 round trip ~0.8 ms instead of ~40-90 ms)."""
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # e.g. a Unix socket: nothing to tune
            _log.debug("TCP_NODELAY not set: %s", exc)


class _Client(ReceivingClient):
    """paho's client, reading in chunks, taking PUBLISHes on a short path when ``on_received``
    is set and writing PUBACKs together, whose network loop
    (``loop_forever``, run by ``loop_start``'s thread) asks ``loop_failed`` what to do when an
    exception escapes it: go on (True) or end."""

    loop_failed: Callable[[Exception], bool] | None = None

    def loop_forever(
        self, timeout: float = 1.0, retry_first_connection: bool = False
    ) -> MQTTErrorCode:
        while True:
            try:
                return super().loop_forever(timeout, retry_first_connection)
            except Exception as exc:
                go_on = self.loop_failed is not None and self.loop_failed(exc)
                exc.__traceback__ = None  # its frames hold paho's sockets
                if not go_on:
                    return MQTTErrorCode.MQTT_ERR_UNKNOWN
                retry_first_connection = True


class MqttConnection:
    """One paho client of the service and its connection (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        *,
        kind: str,
        client_id: str,
        logger: logging.Logger,
        on_up: UpHook | None = None,
        on_down: DownHook | None = None,
        on_refused: RefusedHook | None = None,
        reconnect_min_s: int = RECONNECT_MIN_S,
        reconnect_max_s: int = RECONNECT_MAX_S,
        manual_ack: bool = False,
        clean_start: bool = True,
        keepalive_s: int | None = None,
        connect_properties: Properties | None = None,
    ) -> None:
        self.kind = kind  # the metrics label and the first words of its log lines
        self.client_id = client_id
        self._settings = settings
        self._log = logger
        self._on_up = on_up
        self._on_down = on_down
        self._on_refused = on_refused
        self._reconnect_min_s = reconnect_min_s
        self._clean_start = clean_start
        self._keepalive_s = keepalive_s or settings.mqtt.keepalive_s
        self._connect_properties = connect_properties
        self._up = threading.Event()
        self._attempted = threading.Event()  # a first attempt has ended, either way
        self._down_told = False  # on_down was called since the last time up
        self._stopping = threading.Event()
        self.connected_since = 0.0  # monotonic time of the current connection
        self.last_error: str | None = None
        self.refusal: Refusal | None = None  # the fatal refusal that ended the reconnecting
        self.client = self._make_client(manual_ack, reconnect_min_s, reconnect_max_s)

    def _make_client(self, manual_ack: bool, reconnect_min_s: int, reconnect_max_s: int) -> _Client:
        mqtt = self._settings.mqtt
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            manual_ack=manual_ack,
        )
        if mqtt.username:
            client.username_pw_set(mqtt.username, mqtt.password.get_secret_value() or None)
        if mqtt.tls:
            client.tls_set(
                ca_certs=mqtt.ca_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_socket_open = _nodelay
        client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.loop_failed = self._loop_failed
        return client

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start connecting in the background (paho retries until the broker answers).

        False when the address cannot even be tried (e.g. a host name that does not resolve):
        then the connection is down with that detail, and nothing runs.
        """
        try:
            self._connect_async()
        except (OSError, ValueError) as exc:
            self._went_down(f"cannot connect to {self.address}: {exc}")
            self._attempted.set()
            return False
        self.client.loop_start()
        return True

    def _connect_async(self) -> None:
        mqtt = self._settings.mqtt
        self.client.connect_async(
            mqtt.host,
            mqtt.port,
            keepalive=self._keepalive_s,
            clean_start=self._clean_start,
            properties=self._connect_properties,
        )

    def stop(self, *, properties: Properties | None = None) -> None:
        """DISCONNECT (no Will) when connected, and end the network thread; idempotent."""
        self._stopping.set()
        if self._up.is_set():
            self.client.disconnect(properties=properties)
        else:
            self.client.disconnect()  # ends a reconnect loop that is waiting
        stop_loop(self.client)
        self._went_down(STOPPED)

    def kill(self) -> None:
        """Drop the connection without DISCONNECT, as a crash would (tests): the Will fires."""
        self._stopping.set()
        stop_loop(self.client)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._went_down(STOPPED)

    @property
    def up(self) -> bool:
        return self._up.is_set()

    @property
    def address(self) -> str:
        return f"{self._settings.mqtt.host}:{self._settings.mqtt.port}"

    def wait_attempted(self, timeout: float) -> bool:
        """Wait until the first attempt has ended (accepted, refused or failed)."""
        return self._attempted.wait(timeout)

    def connected_for(self) -> float:
        """Seconds since the current connection was made (0 when not connected)."""
        return time.monotonic() - self.connected_since if self._up.is_set() else 0.0

    # -- paho callbacks (network thread: never raise) ---------------------------------------------
    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        try:
            refused = refusal(reason_value(rc))
            if refused is not None:
                self._refused(client, refused)
                return
            self.last_error = None
            self.refusal = None
            self.connected_since = time.monotonic()
            MQTT_CONNECTS.labels(self.kind).inc()
            MQTT_CONNECTED.labels(self.kind).inc()
            try:  # before `up`: the user's state of this connection comes first
                if self._on_up is not None:
                    self._on_up(client, bool(flags.session_present))
            finally:
                self._up.set()
                self._down_told = False
        except Exception:
            self._log.exception("%s: error handling the CONNACK", self.kind)
        finally:
            self._attempted.set()

    def _refused(self, client: paho.Client, refused: Refusal) -> None:
        MQTT_REFUSALS.labels(self.kind, f"0x{refused.code:02x}").inc()
        user = self._settings.mqtt.username
        if refused.fatal:
            self.refusal = refused
            self._log.error(
                "%s: the broker at %s refused the connection of user %r: %s; not retrying, "
                "check [MQTT] username and password and the broker's accounts and ACL",
                self.kind,
                self.address,
                user,
                refused,
            )
            client.disconnect()  # ends paho's reconnecting
        else:
            self._log.warning(
                "%s: the broker at %s refused the connection: %s; retrying",
                self.kind,
                self.address,
                refused,
            )
        if self._on_refused is not None:
            self._on_refused(refused)
        self._went_down(f"the broker refused the connection: {refused}")

    def _on_connect_fail(self, _client: paho.Client, _u: Any) -> None:
        try:
            self._went_down(f"cannot connect to {self.address}")
        finally:
            self._attempted.set()

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._went_down(STOPPED if self._stopping.is_set() else f"connection lost: {rc}")

    def _went_down(self, detail: str) -> None:
        """Down: the user hears once, however many ways this learns of it."""
        if not self._stopping.is_set():
            self.last_error = detail
        was_up = self._up.is_set()
        self._up.clear()
        if was_up:
            MQTT_CONNECTED.labels(self.kind).dec()
        elif self._down_told:
            return
        self._down_told = True
        if self._on_down is None:
            return
        try:
            self._on_down(detail)
        except Exception:
            self._log.exception("%s: error handling the connection going down", self.kind)

    def _loop_failed(self, exc: Exception) -> bool:
        """An exception escaped paho's loop: say so, report the connection down and connect
        again afresh (paho's state is unknown: a packet may be half handled), unless stopping
        or refused for good."""
        # As text: a record holding the traceback would keep paho's frames (and sockets) alive.
        trace = "".join(traceback.format_exception(exc)).rstrip()
        self._log.error("%s: the MQTT network loop failed; connecting again\n%s", self.kind, trace)
        self._went_down(f"the MQTT network loop failed: {exc!r}")
        if self.refusal is not None or self._stopping.wait(self._reconnect_min_s):
            return False
        self._connect_async()  # the loop then reconnects, closing the old socket first
        return True
