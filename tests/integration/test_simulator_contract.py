"""The fleet simulator against the real agent: one scenario played to both, the same story.

The simulator stands in for thousands of agents in bench/ and tests; if it drifted from what
the agent really sends, the figures and tests it serves would be about a protocol nobody
speaks. Each enclosure is born, answers a ping, records a short session from its ``desired``
document and stops cleanly; what each published (lifecycle states, acks, events in order, and
the fields of every message type) must be the same.
"""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controlsvc.broker import LocalBroker, generate_password
from fleet_simulator import Fleet
from schemas import Ack, EnclosureStateMessage, Event, Lifecycle, parse_message
from tests.integration.test_agent_harness import (  # noqa: F401 (fixtures)
    AgentThread,
    Service,
    agent_config,
    broker_enclosure,
    mosquitto,
    mqtt_client,
    plan,
    run_agent,
    service_for,
)
from tests.support.broker import BrokerAccount
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # a real agent records real video

RECORD_S = 3.0


def _play(service: Service, stop: Callable[[], None]) -> None:
    """The scenario, the same for both: born, ping, a short recording, a clean stop."""
    wait_for(
        lambda: any(s.state is Lifecycle.READY for s in service.states()),
        message=f"{service.eid} never said ready",
    )
    pinged = service.command("ping")
    assert service.ack(pinged).result.value == "succeeded"
    # One file whatever the hour (the default policy cuts at the top of every UTC hour).
    service.desired(1, plan("contract-1", 0.5, RECORD_S, segment_minutes=60))
    service.event("recording_stopped", timeout=RECORD_S + 30)
    wait_for(lambda: len(service.statuses()) >= 2, message="no statuses")
    stop()
    wait_for(
        lambda: any(s.state is Lifecycle.DISCONNECTED for s in service.states()),
        message=f"{service.eid} never said disconnected",
    )


def _story(service: Service) -> list[str]:
    """What the enclosure said, in order (statuses left out: their number depends on time)."""
    story: list[str] = []
    for message in service.client.received(f"{service.topic('')}+"):
        channel = message.topic.rsplit("/", 1)[1]
        if channel == "state" and message.payload:
            story.append(f"state {parse_message(EnclosureStateMessage, message.payload).state}")
        elif channel == "ack":
            story.append(f"ack {parse_message(Ack, message.payload).result}")
        elif channel == "events":
            story.append(f"event {parse_message(Event, message.payload).kind}")
    return story


def _fields(service: Service) -> dict[str, set[str]]:
    """Every field path each kind of message carried (``status.recording.frames``, ...)."""
    found: dict[str, set[str]] = {}

    def walk(label: str, value: Any, prefix: str = "") -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                path = f"{prefix}{key}"
                found.setdefault(label, set()).add(path)
                walk(label, inner, f"{path}.")

    for message in service.client.received(f"{service.topic('')}+"):
        channel = message.topic.rsplit("/", 1)[1]
        if channel in ("cmd", "desired") or not message.payload:
            continue
        document = json.loads(message.payload)
        label = channel
        if channel == "events":
            label = f"event {document['kind']}"
        elif channel == "state":
            label = f"state {document['state']}"
        walk(label, document)
    return found


def test_the_simulator_says_what_the_agent_says(
    tmp_path: Path,
    mosquitto: LocalBroker,
    broker_enclosure: BrokerAccount,
    run_agent: Callable[..., AgentThread],
    service_for: Callable[..., Service],
) -> None:
    real_id = broker_enclosure.username
    real = service_for(mosquitto, real_id)
    agent = run_agent(agent_config(tmp_path, mosquitto, real_id, broker_enclosure.password))
    _play(real, agent.stop)

    sim_id = f"enc-{secrets.token_hex(4)}"
    password = generate_password()
    mosquitto.set_account(sim_id, password)
    try:
        simulated = service_for(mosquitto, sim_id)
        fleet = Fleet(mosquitto.host, mosquitto.port, {sim_id: password}, status_interval_s=1)
        fleet.start(timeout=30)
        try:
            _play(simulated, fleet.stop)
        finally:
            fleet.stop()
    finally:
        mosquitto.remove_account(sim_id, reload=False)

    assert (
        _story(simulated)
        == _story(real)
        == [
            "state init",
            "state ready",
            "ack succeeded",
            "event recording_started",
            "event segment_closed",
            "event recording_stopped",
            "state disconnected",
        ]
    )
    agent_fields, simulator_fields = _fields(real), _fields(simulated)
    drift = {
        label: {
            "agent only": sorted(
                agent_fields.get(label, set()) - simulator_fields.get(label, set())
            ),
            "simulator only": sorted(
                simulator_fields.get(label, set()) - agent_fields.get(label, set())
            ),
        }
        for label in sorted(set(agent_fields) | set(simulator_fields))
        if agent_fields.get(label) != simulator_fields.get(label)
    }
    assert drift == {}
