"""The outbox: durable, ordered, deleted on PUBACK only, bounded in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from enclosure_agent.outbox import Outbox, OutboxPump
from schemas.codec import parse_message
from schemas.events import DiskLow, Event


def event(free: int) -> Event:
    return Event.of(DiskLow(free_bytes=free, reserve_bytes=100))


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


def test_wal_mode_and_order(outbox: Outbox) -> None:
    assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    events = [event(i) for i in range(5)]
    for e in events:
        outbox.append(e)
    assert [e.event_id for e in outbox.events()] == [e.event_id for e in events]
    items = outbox.take(0, 3)
    assert [parse_message(Event, i.payload).event_id for i in items] == [
        e.event_id for e in events[:3]
    ]
    assert [i.seq for i in outbox.take(items[-1].seq, 10)] == [items[-1].seq + 1, items[-1].seq + 2]


def test_same_event_id_is_stored_once(outbox: Outbox) -> None:
    e = event(1)
    first = outbox.append(e)
    assert outbox.append(e) == first
    assert len(outbox) == 1


def test_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    ids = [box_event.event_id for box_event in (event(1), event(2))]
    for i, eid in enumerate(ids):
        box.append(event(i).model_copy(update={"event_id": eid}))
    box.close()
    again = Outbox(path)
    assert [e.event_id for e in again.events()] == ids
    again.close()


def test_pump_hands_over_a_window_and_deletes_on_puback(outbox: Outbox) -> None:
    for i in range(7):
        outbox.append(event(i))
    published: list[bytes] = []

    def publish(payload: bytes) -> int:
        published.append(payload)
        return 100 + len(published)

    pump = OutboxPump(outbox, window=3)
    assert pump.pump(publish) == 3
    assert pump.pump(publish) == 0  # the window is full: nothing more is loaded
    assert pump.in_flight == 3
    assert pump.acked(102, ok=True)
    assert not pump.acked(999, ok=True)
    assert len(outbox) == 6
    assert pump.pump(publish) == 1
    order = [parse_message(Event, p).data["free_bytes"] for p in published]
    assert order == [0, 1, 2, 3]


def test_pump_stops_when_publish_fails(outbox: Outbox) -> None:
    outbox.append(event(1))
    pump = OutboxPump(outbox)
    assert pump.pump(lambda payload: None) == 0
    assert pump.pump(lambda payload: 7) == 1


def test_refused_events_are_kept_aside(outbox: Outbox) -> None:
    outbox.append(event(1))
    pump = OutboxPump(outbox)
    pump.pump(lambda payload: 5)
    assert pump.acked(5, ok=False, reason="not authorized")
    assert len(outbox) == 0
    assert outbox._db.execute("SELECT reason FROM refused").fetchone()[0] == "not authorized"


def test_restart_resends_from_the_oldest(outbox: Outbox) -> None:
    outbox.append(event(1))
    pump = OutboxPump(outbox)
    pump.pump(lambda payload: 1)
    pump.restart()
    sent: list[bytes] = []
    pump.pump(lambda payload: sent.append(payload) or 2)
    assert len(sent) == 1
