"""Messages carrying NaN, Infinity, NUL characters or overlong strings, through a real broker
into the bridge: each is dropped with its reason logged (naming the field) and counted, nothing
of it is stored, and the bridge goes on storing what follows. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from sqlalchemy import select

from controlsvc.store.models.enclosures import AgentEvent, StatusRecord
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    agents,
    bridge_settings,
    broker,
    enclosure_attr,
    enclosure_state,
    event_payload,
    make_bridge,
    mosquitto_factory,
    state_payload,
    status_payload,
    wait_state,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mosquitto


def _edited(payload: bytes, edit) -> bytes:
    document = json.loads(payload)
    edit(document)
    return json.dumps(document).encode()


def test_unplain_values_are_dropped_logged_and_counted(
    settings, database, broker, make_bridge, agents, caplog
):
    caplog.set_level(logging.WARNING, logger="controlsvc.bridge")
    bridge = make_bridge(bridge_settings(settings, broker))
    a, b, c, d = (agents(eid) for eid in ("enc-a", "enc-b", "enc-c", "enc-d"))
    bad_ids = [str(uuid.uuid4()) for _ in range(2)]
    cases = [
        # (agent, channel, payload, the reason logged)
        (
            a,
            "status",
            _edited(
                status_payload(a.boot_id, 0),
                lambda doc: doc["system"].update(hostname="host\x00name"),
            ),
            "status.system.hostname: must not contain NUL characters",
        ),
        (
            b,
            "events",
            event_payload(bad_ids[0], free_bytes=10, reserve_bytes=100, note="@@").replace(
                b'"@@"', b"NaN"
            ),
            "event.data.note: must be a finite number",
        ),
        (
            c,
            "events",
            event_payload(bad_ids[1], free_bytes=10, reserve_bytes=100, note="x" * 5000),
            "event.data.note: is longer than 4096 characters",
        ),
        (
            d,
            "state",
            _edited(
                state_payload("ready", "b" * 80),
                lambda doc: doc.update(agent_version="9" * 100),
            ),
            "state.boot_id: String should have at most 64 characters",
        ),
    ]
    for agent, channel, payload, _ in cases:
        agent.publish(f"{PREFIX}/enc/{agent.eid}/{channel}", payload)
    # What follows each refused message is stored.
    good_ids = [str(uuid.uuid4()) for _ in cases]
    for (agent, *_), event_id in zip(cases, good_ids, strict=True):
        agent.event(event_id)
    a.status(seq=1)

    wait_for(
        lambda: bridge.stats.snapshot()["written"].get("events") == len(good_ids),
        timeout=30,
        message=lambda: f"stats: {bridge.stats.snapshot()}",
    )
    wait_for(lambda: enclosure_attr(database, "enc-a", "status_seq") == 1, timeout=30)
    assert bridge.stats.snapshot()["invalid"].get("schema") == len(cases)
    with database.sessionmaker() as session:
        stored = set(session.scalars(select(AgentEvent.event_id)))
    assert stored == set(good_ids)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for agent, channel, _, reason in cases:
        assert f"refused message on {PREFIX}/enc/{agent.eid}/{channel} (schema)" in logged
        assert reason in logged, logged


HUGE_SEQ = 2**62  # far beyond any agent's count, still a valid (storable) seq


def test_a_status_with_a_huge_seq_does_not_wedge_the_enclosure(
    settings, database, broker, make_bridge, agents
):
    """One valid status of the current boot with a huge ``seq`` (a corrupted counter, or
    forged): stored as it came, but the agent's next statuses, counting on from where they
    were, are not judged stale for good: the enclosure shows them again."""
    bridge = make_bridge(bridge_settings(settings, broker))
    agent = agents("enc-a", interval=1.0)
    agent.online()
    wait_state(database, "enc-a", "idle")
    agent.status(seq=HUGE_SEQ)
    wait_for(lambda: enclosure_attr(database, "enc-a", "status_seq") == HUGE_SEQ, timeout=30)
    assert enclosure_state(database, "enc-a") == "idle"

    # The agent goes on with its own count; one of its statuses reports a fault, which the
    # enclosure must show (the status is applied, not ignored as older than the huge one).
    def recovered() -> bool:
        seq = agent.status(error="camera unplugged")
        return enclosure_attr(database, "enc-a", "status_seq") in range(seq + 1)

    wait_for(recovered, timeout=30, interval=0.5, message=lambda: f"{bridge.stats.snapshot()}")
    assert enclosure_attr(database, "enc-a", "status_seq") < 100
    assert enclosure_state(database, "enc-a") == "error"
    # what arrived is kept: the huge one in the history too
    with database.sessionmaker() as session:
        seqs = set(session.scalars(select(StatusRecord.seq)))
    assert HUGE_SEQ in seqs


def test_a_status_seq_beyond_64_bits_is_refused_naming_the_field(
    settings, database, broker, make_bridge, agents, caplog
):
    caplog.set_level(logging.WARNING, logger="controlsvc.bridge")
    bridge = make_bridge(bridge_settings(settings, broker))
    agent = agents("enc-a", interval=1.0)
    agent.online()
    wait_state(database, "enc-a", "idle")
    agent.publish(f"{PREFIX}/enc/enc-a/status", status_payload(agent.boot_id, 2**63))
    reason = "status.seq: Input should be less than or equal to 9223372036854775807"
    # counted, then logged: wait for the log line
    wait_for(
        lambda: any(reason in r.getMessage() for r in list(caplog.records)),
        timeout=30,
        message=lambda: f"not logged; stats: {bridge.stats.snapshot()}",
    )
    assert bridge.stats.snapshot()["invalid"] == {"schema": 1}
    seq = agent.status()
    wait_for(lambda: enclosure_attr(database, "enc-a", "status_seq") == seq, timeout=30)
