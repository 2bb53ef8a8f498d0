"""The bridge's batch writer against the real databases (no broker): validation, idempotence,
acks, and a poison message that must not take its batch down."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from controlsvc.bridge import writer as writer_module
from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.stats import BridgeStats
from controlsvc.bridge.writer import Writer
from controlsvc.store import commands, enclosure_rows, enclosures
from controlsvc.store.db import utcnow
from controlsvc.store.enclosures import Liveness
from controlsvc.store.models.commands import Command
from controlsvc.store.models.enclosures import Enclosure, StatusRecord
from controlsvc.store.models.events import EventRecord
from schemas.enums import CommandKind
from schemas.topics import Topics
from tests.integration.bridge_fixtures import (
    PREFIX,
    ack_payload,
    event_payload,
    state_payload,
    status_payload,
    transitions,
)


@pytest.fixture
def stats():
    return BridgeStats()


@pytest.fixture
def writer(database, stats):
    return Writer(database, Topics(PREFIX), Liveness(), stats)


def msg(channel, payload, eid="enc-a", retain=False):
    return Inbound(f"{PREFIX}/enc/{eid}/{channel}", payload, 1, retain, utcnow())


def write(writer, *messages):
    return writer.write(writer.parse(list(messages)))


def count(database, model, *where):
    with database.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_parse_refuses_and_counts_bad_input(writer, stats):
    parsed = writer.parse(
        [
            Inbound(f"{PREFIX}/enc/Bad_Id/status", b"{}", 1, False, utcnow()),
            Inbound("other/tree/x", b"{}", 1, False, utcnow()),
            msg("status", b"not json"),
            msg("status", b"\xff\xfe"),
            msg("status", b"{" + b" " * (256 * 1024) + b"}"),
            msg("ack", b'{"v": 1}'),
            msg("preview", b"\xff\xd8jpeg"),
            msg("state", b"", retain=True),  # a cleared retained topic
            msg("state", state_payload("ready", "b1")),
        ]
    )
    assert [p.channel.value for p in parsed] == ["state"]
    snapshot = stats.snapshot()
    assert snapshot["invalid"] == {
        "topic": 3,
        "invalid_json": 1,
        "not_utf8": 1,
        "too_large": 1,
        "schema": 1,
    }
    assert snapshot["ignored"] == {"cleared": 1}


def test_poison_message_does_not_lose_its_batch(writer, stats, database, monkeypatch):
    real = enclosures.apply_status

    def poisoned(session, enc, message, *args, **kwargs):
        if message.seq == 2:
            raise ValueError("poison")
        return real(session, enc, message, *args, **kwargs)

    monkeypatch.setattr(enclosures, "apply_status", poisoned)
    write(writer, *(msg("status", status_payload("b1", seq)) for seq in range(5)))
    snapshot = stats.snapshot()
    assert snapshot["batch_retries"] == 1
    assert snapshot["ignored"]["dropped"] == 1
    assert count(database, StatusRecord) == 4
    with database.sessionmaker() as session:
        assert session.get(Enclosure, "enc-a").status_seq == 4


def test_status_history_and_events_are_idempotent(writer, stats, database):
    payloads = [status_payload("b1", seq) for seq in range(3)]
    event = event_payload(str(uuid.uuid4()))
    write(writer, *(msg("status", p) for p in payloads), msg("events", event))
    write(writer, *(msg("status", p) for p in payloads), msg("events", event))  # redelivered
    assert count(database, StatusRecord) == 3
    # Redelivered: seq 0 and 1 are older than the latest (stale), seq 2 and the event repeat.
    assert stats.snapshot()["ignored"] == {"stale": 2, "duplicate": 2}
    assert stats.snapshot()["written"] == {"status": 3, "events": 1}


def test_acks(writer, stats, database):
    with database.session() as session:
        enclosure_rows.lock_rows(session, ["enc-a", "enc-b"])
        cmd = commands.create_command(session, "enc-a", CommandKind.PING, {}, 30)
        other = commands.create_command(session, "enc-b", CommandKind.PING, {}, 30)
    cid = str(cmd.id)
    write(
        writer,
        msg("ack", ack_payload(cid, "accepted")),
        msg("ack", ack_payload(cid, "accepted")),  # twice
        msg("ack", ack_payload(str(other.id), "succeeded")),  # another enclosure's command
        msg("ack", ack_payload(str(uuid.uuid4()), "succeeded")),  # unknown
        msg("ack", ack_payload(cid, "succeeded", "done", {"pong": True})),
        msg("ack", ack_payload(cid, "failed", "too late")),  # after settling
    )
    with database.sessionmaker() as session:
        row = session.get(Command, cmd.id)
        assert (row.state, row.detail, row.result) == ("succeeded", "done", {"pong": True})
        assert row.sent_at is not None
        assert row.settled_at is not None
        assert session.get(Command, other.id).state == "pending"
        updates = session.scalars(
            select(EventRecord.data).where(EventRecord.kind == "command.updated")
        ).all()
    assert [u["state"] for u in updates] == ["accepted", "succeeded"]
    assert stats.snapshot()["ignored"] == {
        "duplicate": 1,
        "foreign_ack": 1,
        "unknown_command": 1,
        "late_ack": 1,
    }
    assert stats.snapshot()["commands_settled"] == {"succeeded": 1}


def test_retired_enclosure_messages_are_ignored(writer, stats, database):
    write(writer, msg("state", state_payload("ready", "b1")))
    with database.session() as session:
        session.get(Enclosure, "enc-a").retired_at = utcnow()
    write(writer, msg("status", status_payload("b1", 0)))
    assert stats.snapshot()["ignored"] == {"retired": 1}
    assert count(database, StatusRecord) == 0


def test_time_out_and_republish_candidates(database):
    now = utcnow()
    with database.session() as session:
        enclosure_rows.lock_rows(session, ["enc-a"])
        old = commands.create_command(
            session, "enc-a", CommandKind.PING, {}, 1, now=now - timedelta(seconds=10)
        )
        fresh = commands.create_command(session, "enc-a", CommandKind.PING, {}, 60, now=now)
        lost = commands.create_command(
            session, "enc-a", CommandKind.PING, {}, 60, now=now - timedelta(seconds=5)
        )
    with database.session() as session:
        assert [c.id for c in commands.republishable(session, now)] == [lost.id]
        settled = commands.time_out_overdue(session, now)
        assert [c.id for c in settled] == [old.id]
        assert settled[0].state == "timed_out"
        assert settled[0].detail == "never reached the broker within 1 s"
    with database.sessionmaker() as session:
        assert session.get(Command, fresh.id).state == "pending"


def test_purge_status_history(writer, database):
    old = utcnow() - timedelta(days=40)
    write(writer, *(msg("status", status_payload("b1", seq)) for seq in range(3)))
    with database.session() as session:
        session.execute(
            StatusRecord.__table__.update().where(StatusRecord.seq < 2).values(received_at=old)
        )
    with database.session() as session:
        assert enclosures.purge_status_history(session, utcnow() - timedelta(days=30)) == 2
    with database.sessionmaker() as session:
        assert session.scalars(select(StatusRecord.seq)).all() == [2]


def test_a_will_replayed_with_the_next_connection_writes_no_lost(writer, database, stats):
    """After a broker restart the bridge gets the agent's Will (connection 1) and, at once,
    what the agent said on reconnecting (connection 2): no 0-second recording -> lost ->
    recording."""
    write(
        writer,
        msg("state", state_payload("ready", "b1", connection=1)),
        msg("status", status_payload("b1", 0, recording="s1")),
    )
    before = [("offline", "idle"), ("idle", "recording")]
    assert transitions(database, "enc-a") == before
    booted = utcnow() - timedelta(minutes=5)  # a Will's time is that of its registration
    write(
        writer,
        msg("state", state_payload("lost", "b1", connection=1, at=booted), retain=False),
        msg("state", state_payload("init", "b1", connection=2)),
        msg("status", status_payload("b1", 1, recording="s1")),
        msg("state", state_payload("ready", "b1", connection=2)),
    )
    assert transitions(database, "enc-a") == before
    with database.sessionmaker() as session:
        enc = session.get(Enclosure, "enc-a")
        assert (enc.state, enc.lifecycle, enc.lifecycle_connection) == ("recording", "ready", 2)
    assert stats.snapshot()["ignored"]["stale"] == 1


def test_a_will_of_an_older_connection_arriving_later_is_stale(writer, database):
    write(writer, msg("state", state_payload("ready", "b1", connection=3)))
    write(writer, msg("status", status_payload("b1", 0)))
    # a retained Will of connection 2 (restored by a broker from an older snapshot)
    write(writer, msg("state", state_payload("lost", "b1", connection=2), retain=True))
    assert transitions(database, "enc-a") == [("offline", "idle")]
    # the Will of the current connection is news
    write(writer, msg("state", state_payload("lost", "b1", connection=3)))
    assert transitions(database, "enc-a") == [("offline", "idle"), ("idle", "lost")]


def test_status_history_at_a_rate_keeps_changes_and_one_per_period(database, stats):
    """``status_history_every_s``: the first status, each one that changed what a user sees,
    and no other within the period; the enclosure always has the latest."""
    writer = Writer(database, Topics(PREFIX), Liveness(), stats, history_every_s=3600)
    write(writer, *(msg("status", status_payload("b1", seq)) for seq in range(5)))
    write(writer, msg("status", status_payload("b1", 5, error="camera unplugged")))
    write(writer, *(msg("status", status_payload("b1", seq)) for seq in range(6, 9)))
    write(writer, msg("status", status_payload("b2", 0)))  # a new boot: a transition
    with database.sessionmaker() as session:
        kept = session.execute(
            select(StatusRecord.boot_id, StatusRecord.seq).order_by(StatusRecord.id)
        ).all()
        latest = session.get(Enclosure, "enc-a")
        assert latest is not None
        assert (latest.status_boot_id, latest.status_seq) == ("b2", 0)
    # seq 0 (first), 5 (an error appeared), 6 (it went away), b2/0 (new boot)
    assert [tuple(row) for row in kept] == [("b1", 0), ("b1", 5), ("b1", 6), ("b2", 0)]
    assert stats.snapshot()["written"] == {"status": 10}


def test_status_history_rate_counts_only_what_was_committed(database, stats, monkeypatch):
    """A status whose write failed left no history row, so the next one is still due one."""
    now = {"t": 0.0}
    writer = Writer(
        database, Topics(PREFIX), Liveness(), stats, history_every_s=60, clock=lambda: now["t"]
    )
    write(writer, msg("status", status_payload("b1", 0)))
    real = writer_module.insert_rows
    calls = {"n": 0}

    def fail_twice(connection, table, rows):
        if table is StatusRecord.__table__:
            calls["n"] += 1
            if calls["n"] <= 2:  # the batch, then the message written alone: dropped
                raise RuntimeError("injected")
        return real(connection, table, rows)

    monkeypatch.setattr(writer_module, "insert_rows", fail_twice)
    now["t"] = 100.0  # seq 1 is due a row, and its write fails
    write(writer, msg("status", status_payload("b1", 1)))
    assert stats.snapshot()["ignored"] == {"dropped": 1}
    now["t"] = 101.0
    write(writer, msg("status", status_payload("b1", 2)))
    with database.sessionmaker() as session:
        assert session.scalars(select(StatusRecord.seq).order_by(StatusRecord.seq)).all() == [0, 2]
