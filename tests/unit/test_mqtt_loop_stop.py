"""Stopping paho's network thread without its race (eclipse-paho/paho.mqtt.python#872): paho's
``loop_stop`` reads ``client._thread`` again after the thread may have ended and cleared it.
The race is made certain here: the client's ``_thread`` reads the thread once, then None (the
thread ended between the reads), as it does when the loop ends on its own just after a
``disconnect()``. Seen in CI as an agent's traceback on SIGTERM."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controlsvc.ctl import mqtt as ctl_mqtt
from controlsvc.mqtt.loop_stop import stop_loop
from enclosure_agent import mqtt as agent_mqtt
from enclosure_agent.link import Outgoing


def ending_thread() -> tuple[threading.Thread, threading.Event]:
    """A started thread that ends when told."""
    end = threading.Event()
    thread = threading.Thread(target=end.wait, daemon=True)
    thread.start()
    return thread, end


class Racing:
    """Mixed into a paho client: ``_thread`` is the network thread for one read, then None."""

    _reads: list[threading.Thread | None]

    @property
    def _thread(self) -> threading.Thread | None:
        reads = self.__dict__.setdefault("_reads", [])
        return reads.pop(0) if reads else None

    @_thread.setter
    def _thread(self, value: threading.Thread | None) -> None:
        self.__dict__["_reads"] = [value] if value is not None else []


class RacingClient(Racing, paho.Client):
    pass


def racing(cls: type[Any] = RacingClient) -> tuple[Any, threading.Thread, threading.Event]:
    client = cls(CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv5)
    thread, end = ending_thread()
    client._thread = thread
    return client, thread, end


def test_paho_loop_stop_has_the_race():
    client, _thread, end = racing()
    end.set()
    with pytest.raises(AttributeError, match="join"):
        client.loop_stop()


def test_stop_loop_reads_the_thread_once_and_joins_it():
    client, thread, end = racing()
    end.set()
    assert stop_loop(client, timeout_s=30) is True
    assert not thread.is_alive()
    assert client._thread_terminate is True


def test_stop_loop_waits_up_to_its_timeout():
    client, thread, end = racing()
    assert stop_loop(client, timeout_s=0.01) is False  # still running
    end.set()
    thread.join()


def test_stop_loop_from_the_network_thread_itself_does_not_join():
    client = RacingClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv5)
    outcome: list[bool] = []

    def network_thread() -> None:
        client._thread = threading.current_thread()
        outcome.append(stop_loop(client))

    thread = threading.Thread(target=network_thread)
    thread.start()
    thread.join()
    assert outcome == [True]


class RacingAgentClient(Racing, agent_mqtt._Client):
    pass


def test_the_agent_link_stops_through_the_race(monkeypatch):
    monkeypatch.setattr(agent_mqtt, "_Client", RacingAgentClient)
    link = agent_mqtt.MqttLink(
        agent_mqtt.LinkSettings(
            host="127.0.0.1",
            port=1,
            client_id="enc-a",
            username="enc-a",
            password="x",
            keepalive_s=5,
            session_expiry_s=300,
            will=Outgoing("jaxmba/v1/enc/enc-a/state", b"{}", qos=1, retain=False),
            reconnect_min_s=0.2,
            reconnect_max_s=1,
        ),
        listener=None,  # type: ignore[arg-type]  # never called: it never connects
    )
    thread, end = ending_thread()
    link._client._thread = thread
    end.set()
    link.stop(timeout_s=30)  # before: AttributeError from paho's loop_stop
    assert not thread.is_alive()


class RacingCtlClient(Racing, paho.Client):
    pass


def test_jaxmba_ctl_stops_through_the_race():
    connection = ctl_mqtt.Connection.__new__(ctl_mqtt.Connection)
    client, thread, end = racing(RacingCtlClient)
    connection._client = client
    end.set()
    connection._stop()  # before: AttributeError from paho's loop_stop
    assert not thread.is_alive()
