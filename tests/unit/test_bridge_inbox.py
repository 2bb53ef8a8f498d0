"""A lane's inbox: every reliable message kept in order; statuses too, until too many wait,
then the latest per enclosure."""

from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime, timedelta

import pytest

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.inbox import Inbox

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def message(eid: str, channel: str, n: int, *, retain: bool = False) -> Inbound:
    return Inbound(
        f"jaxmba/v1/enc/{eid}/{channel}",
        str(n).encode(),
        1,
        retain,
        T0 + timedelta(seconds=n),
        mid=n,
    )


def drain(inbox: Inbox) -> list[tuple[str, bytes]]:
    out = []
    while True:
        try:
            got = inbox.get_nowait()
        except queue.Empty:
            return out
        out.append((got.topic.removeprefix("jaxmba/v1/enc/"), got.payload))


def test_statuses_are_all_kept_until_too_many_wait():
    inbox = Inbox(maxsize=10, status_maxsize=3)
    for n in (1, 2, 3):
        assert inbox.put_status(message("enc-a", "status", n)) == []
    assert inbox.qsize() == 3
    assert drain(inbox) == [("enc-a/status", b"1"), ("enc-a/status", b"2"), ("enc-a/status", b"3")]


def test_beyond_the_limit_a_status_replaces_its_enclosures_in_the_place_of_the_oldest():
    inbox = Inbox(maxsize=10, status_maxsize=3)
    inbox.put_status(message("enc-a", "status", 1))
    inbox.put_status(message("enc-b", "status", 2))
    inbox.put_status(message("enc-a", "status", 3))
    replaced = inbox.put_status(message("enc-a", "status", 4))
    assert [m.payload for m in replaced] == [b"1", b"3"]
    assert inbox.qsize() == 2
    # An enclosure with nothing waiting is never refused: at most one per enclosure more.
    assert inbox.put_status(message("enc-c", "status", 5)) == []
    assert inbox.put_status(message("enc-d", "status", 6)) == []
    assert inbox.qsize() == 4
    assert inbox.oldest() == T0 + timedelta(seconds=1)  # when enc-a's first status came
    assert drain(inbox) == [
        ("enc-a/status", b"4"),
        ("enc-b/status", b"2"),
        ("enc-c/status", b"5"),
        ("enc-d/status", b"6"),
    ]
    assert inbox.empty()
    assert inbox.oldest() is None


def test_a_retained_copy_never_replaces_a_live_status():
    inbox = Inbox(maxsize=10, status_maxsize=1)
    inbox.put_status(message("enc-a", "status", 5))
    retained = message("enc-a", "status", 1, retain=True)
    assert inbox.put_status(retained) == [retained]
    assert drain(inbox) == [("enc-a/status", b"5")]
    inbox.put_status(message("enc-a", "status", 1, retain=True))
    assert len(inbox.put_status(message("enc-a", "status", 6))) == 1  # live replaces retained
    assert drain(inbox) == [("enc-a/status", b"6")]


def test_reliable_messages_come_first_all_of_them_in_order():
    inbox = Inbox(maxsize=10, status_maxsize=10)
    inbox.put_status(message("enc-a", "status", 1))
    for n in (2, 3):
        inbox.put(message("enc-a", "events", n))
    inbox.put(message("enc-a", "ack", 4))
    inbox.put(message("enc-a", "events", 5))
    assert drain(inbox) == [
        ("enc-a/events", b"2"),
        ("enc-a/events", b"3"),
        ("enc-a/ack", b"4"),
        ("enc-a/events", b"5"),
        ("enc-a/status", b"1"),
    ]


def test_a_full_fifo_makes_put_wait_but_never_put_status():
    inbox = Inbox(maxsize=2, status_maxsize=5)
    inbox.put(message("enc-a", "events", 1))
    inbox.put(message("enc-a", "events", 2))
    with pytest.raises(queue.Full):
        inbox.put(message("enc-a", "events", 3), timeout=0.01)
    for n in range(100):  # statuses are never refused or waited for
        inbox.put_status(message(f"enc-{n % 7}", "status", n))
    assert inbox.qsize() == 2 + 7  # at most one per enclosure beyond the limit
    done = threading.Event()

    def put_third() -> None:
        inbox.put(message("enc-a", "events", 3))
        done.set()

    waiting = threading.Thread(target=put_third)
    waiting.start()
    assert inbox.get().payload == b"1"  # room: the waiting put goes through
    waiting.join(10)
    assert done.is_set()
    assert [p for _t, p in drain(inbox)][:2] == [b"2", b"3"]


def test_get_waits_for_a_message_or_times_out():
    inbox = Inbox(maxsize=1, status_maxsize=1)
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.01)
    threading.Timer(0.05, lambda: inbox.put_status(message("enc-a", "status", 1))).start()
    assert inbox.get(timeout=10).payload == b"1"


def test_once_the_lane_is_behind_a_status_replaces_its_enclosures_at_once():
    """However many may wait, a status does not queue up behind stale ones: once the oldest
    waiting came more than ``status_behind_s`` before it, it replaces its enclosure's."""
    inbox = Inbox(maxsize=10, status_maxsize=1000, status_behind_s=2.0)
    inbox.put_status(message("enc-a", "status", 1))
    inbox.put_status(message("enc-b", "status", 2))
    # 2 s after the oldest: not yet behind, every status is kept
    assert inbox.put_status(message("enc-a", "status", 3)) == []
    # 3 s after the oldest: behind
    replaced = inbox.put_status(message("enc-a", "status", 4))
    assert [m.payload for m in replaced] == [b"1", b"3"]
    # an enclosure with nothing waiting still joins
    assert inbox.put_status(message("enc-c", "status", 5)) == []
    assert drain(inbox) == [("enc-a/status", b"4"), ("enc-b/status", b"2"), ("enc-c/status", b"5")]
    # caught up: nothing waits, a burst is kept whole again
    for n in (10, 11):
        assert inbox.put_status(message("enc-a", "status", n)) == []
    assert inbox.qsize() == 2


def test_without_an_age_limit_only_the_count_makes_a_lane_behind():
    inbox = Inbox(maxsize=10, status_maxsize=1000, status_behind_s=None)
    for n in (1, 20, 40):
        assert inbox.put_status(message("enc-a", "status", n)) == []
    assert inbox.qsize() == 3


def test_wake_ends_a_waiting_get_at_once_and_only_once():
    """A stopping bridge wakes its workers instead of letting each wait out its poll."""
    inbox = Inbox(maxsize=10, status_maxsize=10)
    outcome: list[str] = []

    def reader() -> None:
        try:
            inbox.get()  # no timeout: only wake() can end it
        except queue.Empty:
            outcome.append("empty")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    inbox.wake()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome == ["empty"]
    # The wake is spent: the next get waits for a message again, and a message still comes first.
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.01)
    inbox.wake()
    inbox.put(message("enc-a", "ack", 1))
    assert inbox.get(timeout=0).payload == b"1"


class _CountingCondition(threading.Condition):
    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


def _waiting_reader(inbox: Inbox, enough: int) -> tuple[threading.Thread, list[bytes]]:
    """A reader in ``get(enough=...)``, returned once it waits (it set its wish under the lock
    that its wait releases, so every later put comes after the wait began)."""
    got: list[bytes] = []
    reader = threading.Thread(
        target=lambda: got.append(inbox.get(timeout=60, enough=enough).payload), daemon=True
    )
    reader.start()
    while inbox._statuses_enough != enough:  # noqa: SLF001 - the state that proves it waits
        threading.Event().wait(0.001)
    return reader, got


def test_a_reader_filling_a_batch_is_woken_by_enough_statuses_not_by_each():
    inbox = Inbox(maxsize=10, status_maxsize=100)
    inbox._not_empty = condition = _CountingCondition(inbox._lock)  # noqa: SLF001
    reader, got = _waiting_reader(inbox, enough=3)
    inbox.put_status(message("enc-a", "status", 1))
    inbox.put_status(message("enc-b", "status", 2))
    assert condition.notified == 0
    inbox.put_status(message("enc-c", "status", 3))
    reader.join(10)
    assert got == [b"1"]
    assert condition.notified == 1
    assert inbox._statuses_enough == 1  # noqa: SLF001 - the next reader's wish is its own


def test_a_reader_filling_a_batch_is_woken_at_once_by_a_message_that_must_be_written():
    inbox = Inbox(maxsize=10, status_maxsize=100)
    reader, got = _waiting_reader(inbox, enough=50)
    inbox.put_status(message("enc-a", "status", 1))
    inbox.put(message("enc-b", "state", 2))
    reader.join(10)
    assert got == [b"2"]  # the state first, the status stays for the rest of the batch
    assert drain(inbox) == [("enc-a/status", b"1")]


def test_a_reader_that_waited_for_more_statuses_than_came_takes_those_there():
    inbox = Inbox(maxsize=10, status_maxsize=100)
    inbox.put_status(message("enc-a", "status", 1))
    assert inbox.get(timeout=0.0, enough=5).payload == b"1"
