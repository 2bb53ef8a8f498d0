"""When the bridge holds a batch open for a command's outcome (``OutcomeWait``)."""

from __future__ import annotations

import json
import uuid

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.linger import OutcomeWait
from controlsvc.store.db import utcnow

ACK = "jaxmba/v1/enc/enc-a/ack"


def _msg(topic: str, payload: object) -> Inbound:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Inbound(topic=topic, payload=raw, qos=1, retain=False, received_at=utcnow())


def _ack(command_id: uuid.UUID, result: str) -> Inbound:
    return _msg(ACK, {"v": 1, "command_id": str(command_id), "result": result})


def test_an_accepted_command_waits_for_its_outcome():
    one, two = uuid.uuid4(), uuid.uuid4()
    wait = OutcomeWait("/ack")
    assert not wait.waiting
    wait.add(_ack(one, "accepted"))
    assert wait.waiting
    wait.add(_ack(two, "accepted"))
    wait.add(_ack(one, "succeeded"))
    assert wait.waiting  # two still has none
    wait.add(_ack(two, "failed"))
    assert not wait.waiting


def test_outcomes_alone_and_other_messages_wait_for_nothing():
    wait = OutcomeWait("/ack")
    wait.add(_ack(uuid.uuid4(), "succeeded"))
    wait.add(_ack(uuid.uuid4(), "rejected"))
    wait.add(_msg("jaxmba/v1/enc/enc-a/status", {"result": "accepted", "command_id": "x"}))
    assert not wait.waiting


def test_an_outcome_before_its_accepted_counts():
    command = uuid.uuid4()
    wait = OutcomeWait("/ack")
    wait.add(_ack(command, "succeeded"))
    wait.add(_ack(command, "accepted"))
    assert not wait.waiting


def test_malformed_acks_wait_for_nothing():
    wait = OutcomeWait("/ack")
    for payload in (b"not json", b"[1]", b"\xff", {"result": "accepted"}, {"command_id": 5}):
        wait.add(_msg(ACK, payload))
    assert not wait.waiting
