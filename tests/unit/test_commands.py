"""The command message a command becomes on the wire (pure, no I/O)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from controlsvc.store.commands import outgoing
from controlsvc.store.models.commands import Command
from schemas.codec import parse_message
from schemas.commands import Command as CommandMessage
from schemas.enums import CommandState
from schemas.topics import Topics

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def command(**kw):
    values = {
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "enclosure_id": "enc-a",
        "kind": "start_live_view",
        "params": {"duration_s": 10.0},
        "state": CommandState.PENDING.value,
        "created_at": NOW,
        "deadline_at": NOW + timedelta(seconds=30),
    }
    values.update(kw)
    return Command(**values)


def test_outgoing_has_mqtt5_properties_and_the_same_fields_in_json():
    out = outgoing(command(), Topics("jaxmba/v1"), now=NOW + timedelta(seconds=0.5))
    assert out.topic == "jaxmba/v1/enc/enc-a/cmd"
    assert out.properties.response_topic == "jaxmba/v1/enc/enc-a/ack"
    assert out.properties.correlation_data == b"12345678-1234-5678-1234-567812345678"
    assert out.properties.message_expiry_interval == 30  # ceil(29.5)
    assert out.properties.content_type == "application/json"
    body = json.loads(out.payload)
    assert body["id"] == "12345678-1234-5678-1234-567812345678"
    assert body["kind"] == "start_live_view"
    assert body["params"] == {"duration_s": 10.0}
    assert body["response_topic"] == "jaxmba/v1/enc/enc-a/ack"
    assert body["correlation_data"] == body["id"]
    message = parse_message(CommandMessage, out.payload)
    assert message.expires_at == NOW + timedelta(seconds=30)
    assert not message.is_expired(NOW + timedelta(seconds=29))


def test_outgoing_expiry_is_at_least_one_second():
    out = outgoing(command(), Topics(), now=NOW + timedelta(seconds=29.99))
    assert out.properties.message_expiry_interval == 1


def test_outgoing_uses_the_prefix():
    out = outgoing(command(enclosure_id="b-2"), Topics("site/x"), now=NOW)
    assert out.topic == "site/x/enc/b-2/cmd"
    assert out.properties.response_topic == "site/x/enc/b-2/ack"
