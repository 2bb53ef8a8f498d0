"""Messages carrying NaN, Infinity, NUL characters or overlong strings, through a real broker
into the bridge: each is dropped with its reason logged (naming the field) and counted, nothing
of it is stored, and the bridge goes on storing what follows. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from sqlalchemy import select

from controlsvc.store.models.enclosures import AgentEvent
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    agents,
    bridge_settings,
    broker,
    enclosure_attr,
    event_payload,
    make_bridge,
    mosquitto_factory,
    state_payload,
    status_payload,
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
