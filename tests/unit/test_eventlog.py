"""The event log's pure parts: notifications, kinds, SSE frames, filters, queues, watches."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controlsvc import metrics
from controlsvc.api.events import sse_frame
from controlsvc.api.streaming import client_gone
from controlsvc.config.settings import Settings
from controlsvc.mqtt.event_feed import COMMAND_UPDATED, EventFeed
from controlsvc.mqtt.event_streams import EventFilter, FeedEvent
from controlsvc.store import eventlog
from controlsvc.store.models.events import EventRecord
from schemas import SERVICE_EVENTS_QOS, ServiceEvents, Topics, parse_message

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _event(
    event_id: int,
    kind: str = "enclosure.state",
    enclosure_id: str | None = "enc-a",
    command_id: uuid.UUID | None = None,
) -> FeedEvent:
    row = EventRecord(
        id=event_id,
        kind=kind,
        at=AT,
        enclosure_id=enclosure_id,
        session_id=None,
        command_id=command_id,
        data={"state": "idle", "note": "ünïcode\nline"},
    )
    return FeedEvent.from_record(row)


def _feed() -> EventFeed:
    """A feed that is never started: dispatch works without a database or broker."""
    return EventFeed(Settings(), database=None)  # type: ignore[arg-type]


# -- notifications --------------------------------------------------------------------------------
def test_notification_round_trip():
    payload = eventlog.notification_payload(42, at=AT)
    assert json.loads(payload) == {"v": 1, "at": "2026-11-25T12:00:00+00:00", "last_id": 42}
    assert eventlog.parse_notification(payload) == 42
    assert eventlog.notification_topic("jaxmba/v1") == "jaxmba/v1/service/events"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"last_id": "7"}',
        b'{"last_id": -1}',
        b'{"last_id": true}',
        b"\xff",
    ],
)
def test_bad_notification_means_read_anyway(payload):
    assert eventlog.parse_notification(payload) is None


@pytest.mark.parametrize(
    "kind", ["enclosure.state", "command.updated", "alert", "session.progress"]
)
def test_good_kinds(kind):
    assert eventlog.check_kind(kind) == kind


@pytest.mark.parametrize(
    "kind", ["", "Enclosure.state", "a..b", ".a", "a.", "a b", "x" * 65, "a/b"]
)
def test_bad_kinds(kind):
    with pytest.raises(ValueError, match="event kind"):
        eventlog.check_kind(kind)


# -- SSE frames -----------------------------------------------------------------------------------
def test_sse_frame_is_one_data_line():
    cid = uuid.uuid4()
    frame = sse_frame(_event(7, COMMAND_UPDATED, command_id=cid)).decode()
    lines = frame.split("\n")
    assert lines[0] == "id: 7"
    assert lines[1] == "event: command.updated"
    assert lines[2].startswith("data: ")
    assert lines[3:] == ["", ""]  # the blank line ends the event
    body = json.loads(lines[2].removeprefix("data: "))
    assert body == {
        "id": 7,
        "kind": "command.updated",
        "at": "2026-11-25T12:00:00+00:00",
        "enclosure_id": "enc-a",
        "session_id": None,
        "command_id": str(cid),
        "data": {"state": "idle", "note": "ünïcode\nline"},
    }


# -- filters and subscriptions --------------------------------------------------------------------
def test_filter():
    assert EventFilter().matches(_event(1))
    assert EventFilter(kinds=frozenset({"enclosure.state"})).matches(_event(1))
    assert not EventFilter(kinds=frozenset({"command.updated"})).matches(_event(1))
    assert EventFilter(enclosure_id="enc-a").matches(_event(1))
    assert not EventFilter(enclosure_id="enc-b").matches(_event(1))
    assert not EventFilter(enclosure_id="enc-a").matches(_event(1, enclosure_id=None))


def test_dispatch_reaches_matching_subscribers_in_order():
    feed = _feed()
    a = feed_subscribe(feed, EventFilter())
    b = feed_subscribe(feed, EventFilter(enclosure_id="enc-b"))
    feed._dispatch([_event(1), _event(2, enclosure_id="enc-b"), _event(3)])
    assert [e.id for e in a.get(0)] == [1, 2, 3]
    assert [e.id for e in b.get(0)] == [2]
    assert a.get(0) == []


def feed_subscribe(feed: EventFeed, event_filter: EventFilter, maxsize: int = 10):
    """Subscribe without starting the feed (no database in unit tests)."""
    feed._started = True
    return feed.subscribe(event_filter, maxsize=maxsize)


def test_slow_subscriber_is_dropped_without_blocking_others():
    feed = _feed()
    slow = feed_subscribe(feed, EventFilter(), maxsize=2)
    fast = feed_subscribe(feed, EventFilter(), maxsize=100)
    before = metrics.SSE_CLIENTS_DROPPED._value.get()
    feed._dispatch([_event(1), _event(2)])
    assert fast.get(0)
    assert not slow.overflowed
    feed._dispatch([_event(3)])
    assert slow.overflowed
    assert slow.ended
    assert slow.get(0) == []  # it gets nothing more: the stream tells it to reconnect
    assert feed.subscriber_count == 1
    assert metrics.SSE_CLIENTS_DROPPED._value.get() == before + 1
    feed._dispatch([_event(4)])
    assert [e.id for e in fast.get(0)] == [3, 4]


def test_closing_the_feed_ends_waiting_subscribers():
    feed = _feed()
    sub = feed_subscribe(feed, EventFilter())
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(sub.get(30)))
    waiter.start()
    feed.close()
    waiter.join(5)
    assert not waiter.is_alive()
    assert got == [[]]
    assert sub.closed
    assert feed.subscriber_count == 0


def test_unsubscribe():
    feed = _feed()
    with feed_subscribe(feed, EventFilter()) as sub:
        assert feed.subscriber_count == 1
    assert feed.subscriber_count == 0
    assert sub.closed


# -- command watches ------------------------------------------------------------------------------
def test_command_watch_sees_an_update_between_read_and_wait():
    feed = _feed()
    feed._started = True
    cid = uuid.uuid4()
    with feed.watch_command(cid) as watch:
        # the update lands after the caller read the command but before it waits
        feed._dispatch([_event(1, COMMAND_UPDATED, command_id=cid)])
        assert watch.wait(0) is True
        assert watch.wait(0.01) is False  # consumed
    assert feed._watches == {}


def test_command_watch_keeps_the_newest_update():
    feed = _feed()
    feed._started = True
    cid = uuid.uuid4()
    with feed.watch_command(cid) as watch:
        assert watch.latest is None
        first, second = _event(1, COMMAND_UPDATED, command_id=cid), _event(2, COMMAND_UPDATED)
        feed._dispatch([first, second])  # the second is another command's
        assert watch.wait(0) is True
        assert watch.latest is first.data
        newest = _event(3, COMMAND_UPDATED, command_id=cid)
        feed._dispatch([newest])
        assert watch.latest is newest.data


def test_wait_for_command_ignores_other_commands_and_kinds():
    feed = _feed()
    feed._started = True
    cid = uuid.uuid4()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(feed.wait_for_command(cid, 10)))
    waiter.start()
    while cid not in feed._watches:
        threading.Event().wait(0.001)
    feed._dispatch([_event(1, COMMAND_UPDATED, command_id=uuid.uuid4())])
    feed._dispatch([_event(2, "enclosure.state", command_id=cid)])
    assert waiter.is_alive()
    feed._dispatch([_event(3, COMMAND_UPDATED, command_id=cid)])
    waiter.join(5)
    assert result == [True]


def test_wait_for_command_times_out():
    feed = _feed()
    feed._started = True
    assert feed.wait_for_command(uuid.uuid4(), 0.01) is False


# -- notifications coalesce -----------------------------------------------------------------------
class _Msg:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.topic = "jaxmba/v1/service/events"


def test_notifications_coalesce_to_the_newest_id():
    feed = _feed()
    feed._on_message(None, None, _Msg(eventlog.notification_payload(5)))  # type: ignore[arg-type]
    feed._on_message(None, None, _Msg(eventlog.notification_payload(9)))  # type: ignore[arg-type]
    feed._on_message(None, None, _Msg(eventlog.notification_payload(7)))  # type: ignore[arg-type]
    assert feed._pending
    assert feed._notified == 9
    feed._on_message(None, None, _Msg(b"garbage"))  # type: ignore[arg-type]
    assert feed._notified is None  # unknown: read whatever is there


# -- notifications that carry their events ------------------------------------------------------
def _body(event_id: int, kind: str = "enclosure.state") -> dict[str, object]:
    return json.loads(_event(event_id, kind).json)


def test_a_notification_carries_one_transactions_events():
    bodies = [_body(6), _body(7, COMMAND_UPDATED)]
    note = eventlog.read_notification(eventlog.notification_payload(7, at=AT, events=bodies))
    assert note == eventlog.Notification(7, bodies)
    assert eventlog.parse_notification(eventlog.notification_payload(7, events=bodies)) == 7


def test_events_too_large_to_carry_are_left_to_the_log():
    big = _body(6)
    big["data"] = {"blob": "x" * eventlog.NOTIFICATION_EVENTS_MAX_BYTES}
    payload = eventlog.notification_payload(6, at=AT, events=[big])
    assert json.loads(payload) == {"v": 1, "at": "2026-11-25T12:00:00+00:00", "last_id": 6}
    assert eventlog.read_notification(payload) == eventlog.Notification(6, None)


@pytest.mark.parametrize(
    "events",
    [[], {"id": 1}, [1], [{"id": "1"}], [{"id": 2}, {"id": 2}], [{"id": 3}, {"id": 1}], [{}]],
)
def test_carried_events_in_a_strange_shape_are_not_trusted(events):
    payload = json.dumps({"v": 1, "last_id": 3, "events": events}).encode()
    assert eventlog.read_notification(payload) == eventlog.Notification(3, None)


def test_notifications_are_the_contracts_service_events_message():
    row = EventRecord(
        id=7,
        kind=COMMAND_UPDATED,
        at=AT,
        enclosure_id="enc-a",
        session_id="s-1",
        command_id=uuid.UUID(int=9),
        data={"state": "sent"},
    )
    body = eventlog.event_body(row)
    carrying = parse_message(ServiceEvents, eventlog.notification_payload(7, at=AT, events=[body]))
    assert carrying.last_id == 7
    assert carrying.events is not None
    assert [e.model_dump(mode="json") for e in carrying.events] == [
        {**body, "at": "2026-11-25T12:00:00Z"}
    ]
    bare = parse_message(ServiceEvents, eventlog.notification_payload(7))
    assert (bare.v, bare.last_id, bare.events) == (1, 7, None)
    assert eventlog.notification_topic("site/x") == Topics("site/x").service_events()
    assert eventlog.NOTIFICATION_QOS == SERVICE_EVENTS_QOS


def test_event_body_is_what_a_stream_sends():
    row = EventRecord(
        id=4,
        kind=COMMAND_UPDATED,
        at=datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
        enclosure_id="enc-a",
        session_id="s-1",
        command_id=uuid.UUID(int=9),
        data={"state": "sent"},
    )
    body = eventlog.event_body(row)
    assert body["at"] == "2026-11-25T13:00:00+00:00"
    assert body["command_id"] == str(uuid.UUID(int=9))
    assert FeedEvent.from_body(body) == FeedEvent.from_record(row)


def _carry(feed: EventFeed, *ids: int) -> None:
    bodies = [_body(i) for i in ids]
    payload = eventlog.notification_payload(ids[-1], events=bodies)
    feed._on_message(None, None, _Msg(payload))  # type: ignore[arg-type]


def test_carried_events_that_follow_on_are_handed_out_without_reading():
    feed = _feed()
    feed._started = True
    feed._cursor = 5
    with feed.subscribe() as sub:
        _carry(feed, 6, 7)
        _carry(feed, 8)
        _carry(feed, 7)  # overtaken: already handed out
        feed._take(feed._carried)
        assert [e.id for e in sub.get(0)] == [6, 7, 8]
    assert feed.cursor == 8


def test_a_gap_before_carried_events_leaves_them_to_the_log():
    feed = _feed()
    feed._started = True
    feed._cursor = 5
    with feed.subscribe() as sub:
        _carry(feed, 7, 8)  # 6 is missing: a lost notification or another writer's
        _carry(feed, 9)
        feed._take(feed._carried)
        assert sub.get(0) == []
    assert feed.cursor == 5  # the reader reads the log from here


# -- client disconnect detection ------------------------------------------------------------------
def test_client_gone_detects_a_closed_peer():
    server, client = socket.socketpair()
    try:
        assert client_gone(server) is False
        client.sendall(b"GET / HTTP/1.1\r\n")  # a pipelined request is not a goodbye
        assert client_gone(server) is False
        client.close()
        server.recv(100)
        assert client_gone(server) is True
    finally:
        server.close()
    assert client_gone(None) is False


# -- metrics helpers ------------------------------------------------------------------------------
def test_enclosure_states_lists_every_state():
    family = metrics.enclosure_states({"idle": 3, "weird": 1}, ["offline", "idle"])
    samples = {s.labels["state"]: s.value for s in family.samples}
    assert samples == {"offline": 0.0, "idle": 3.0, "weird": 1.0}


def test_stale_metric_files_of_dead_processes_are_removed(tmp_path: Path):
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    dead_pid = int(dead.stdout)
    for name in (
        f"counter_{dead_pid}.db",
        f"gauge_livesum_{dead_pid}.db",
        f"counter_{os.getpid()}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "histogram_notapid.db").write_bytes(b"")
    assert metrics.remove_stale_files(tmp_path) == 3
    assert [p.name for p in tmp_path.iterdir()] == [f"counter_{os.getpid()}.db"]
