"""What one transaction of the bridge takes from its inbox (``next_batch``): a message someone
waits for (a state, an ack, an agent event) is not followed by statuses in its batch, except,
for agent events, the statuses of their own enclosures (``events_suffix``)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlsvc.bridge.batching import next_batch
from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.inbox import Inbox

T0 = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)


def message(eid: str, channel: str, n: int, payload: bytes | None = None) -> Inbound:
    return Inbound(
        f"jaxmba/v1/enc/{eid}/{channel}",
        payload if payload is not None else str(n).encode(),
        1,
        False,
        T0 + timedelta(milliseconds=n),
        mid=n,
    )


def ack(eid: str, n: int, command_id: str, result: str) -> Inbound:
    body = json.dumps({"command_id": command_id, "result": result}).encode()
    return message(eid, "ack", n, body)


class Clock:
    """Time that moves only when told (a linger then ends at once: nothing more will come)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0  # every look at the clock is a second later
        return self.now


def collect(inbox: Inbox, **given: Any) -> list[Inbound]:
    """``next_batch`` with this module's defaults (nothing lingers unless told)."""
    settings: dict[str, Any] = {
        "batch_max": 500,
        "fill_linger_s": 0.0,
        "ack_suffix": "/ack",
        "state_suffix": "/state",
        "first_timeout": 0.0,
    }
    return next_batch(inbox, **{**settings, **given})


def take(inbox: Inbox, *, batch_max: int = 500, fill_linger_s: float = 0.0) -> list[str]:
    batch = collect(inbox, batch_max=batch_max, fill_linger_s=fill_linger_s, clock=Clock())
    return [f"{m.topic.split('/')[3]}/{m.topic.split('/')[4]}" for m in batch]


def inbox_of(*messages: Inbound) -> Inbox:
    inbox = Inbox(maxsize=1000, status_maxsize=1000)
    for m in messages:
        if m.topic.endswith("/status"):
            inbox.put_status(m)
        else:
            inbox.put(m)
    return inbox


def test_a_state_is_written_without_the_statuses_behind_it():
    inbox = inbox_of(
        *[message(f"e{i}", "status", i) for i in range(300)],
        message("e7", "state", 300),  # a Will: "lost"
    )
    assert take(inbox) == ["e7/state"]
    assert len(take(inbox)) == 300  # the statuses, in the next batch
    assert take(inbox) == []


def test_messages_someone_waits_for_go_together_but_without_statuses():
    inbox = inbox_of(
        message("e1", "status", 0),
        message("e1", "state", 1),
        message("e2", "events", 2),
        ack("e3", 3, "c1", "succeeded"),
        message("e2", "status", 4),
    )
    assert take(inbox) == ["e1/state", "e2/events", "e3/ack"]
    assert take(inbox) == ["e1/status", "e2/status"]


def test_a_batch_of_statuses_still_takes_a_state_that_arrives_then_stops_taking_statuses():
    inbox = inbox_of(message("e1", "status", 0))
    # What arrives while the batch lingers, a group per look at the clock.
    arrivals = [
        [message("e2", "status", 1)],
        [message("e3", "state", 2), message("e4", "status", 3)],
    ]

    class Feeding(Clock):
        def __call__(self) -> float:
            if not arrivals:
                return 1e9  # nothing more comes: the linger is over
            for m in arrivals.pop(0):
                (inbox.put_status if m.topic.endswith("/status") else inbox.put)(m)
            return super().__call__()

    batch = collect(inbox, batch_max=500, fill_linger_s=100.0, clock=Feeding())
    topics = [m.topic.removeprefix("jaxmba/v1/enc/") for m in batch]
    assert topics == ["e1/status", "e2/status", "e3/state"]  # e4's status was there: left
    assert take(inbox) == ["e4/status"]


def test_a_batch_of_statuses_fills_up_to_its_maximum():
    inbox = inbox_of(*[message(f"e{i}", "status", i) for i in range(12)])
    assert len(take(inbox, batch_max=5)) == 5
    assert len(take(inbox, batch_max=5)) == 5
    assert len(take(inbox, batch_max=5)) == 2


def test_the_first_message_is_reported_as_soon_as_it_is_taken():
    inbox = inbox_of(message("e1", "state", 0), message("e2", "state", 1))
    seen: list[str] = []

    def first(m: Inbound) -> None:
        seen.append(m.topic)
        assert inbox.qsize() == 1  # before the rest of the batch was taken

    batch = collect(inbox, batch_max=10, on_first=first)
    assert seen == ["jaxmba/v1/enc/e1/state"]
    assert len(batch) == 2


def test_an_accepted_command_waits_for_its_outcome_not_for_statuses():
    inbox = inbox_of(ack("e1", 0, "c1", "accepted"), message("e2", "status", 1))
    done = threading.Event()

    def later() -> None:
        inbox.put(ack("e1", 2, "c1", "succeeded"))
        done.set()

    timer = threading.Thread(target=later)
    timer.start()
    batch = collect(inbox, batch_max=10)
    timer.join()
    # Whether the outcome made it depends on the thread; a status never does.
    assert all(m.topic.endswith("/ack") for m in batch)
    assert take(inbox)[-1] == "e2/status"


def test_nothing_within_the_first_timeout_is_an_empty_batch():
    assert take(Inbox(maxsize=10, status_maxsize=10)) == []


class Recording(Inbox):
    """An inbox that notes how long each ``get`` was asked to wait."""

    def __init__(self) -> None:
        super().__init__(maxsize=100, status_maxsize=100)
        self.waits: list[float | None] = []
        self.enough: list[int] = []

    def get(
        self, timeout: float | None = None, *, statuses: bool = True, enough: int = 1
    ) -> Inbound:
        self.waits.append(timeout)
        self.enough.append(enough)
        return super().get(timeout, statuses=statuses, enough=enough)


@pytest.mark.parametrize(
    ("first", "lingers"),
    [
        (message("e1", "state", 0), False),  # a Will: written at once
        (message("e1", "events", 0), True),  # a fan-out's events: wait for company
        (message("e1", "status", 0), True),
    ],
)
def test_a_state_message_is_written_as_soon_as_the_inbox_runs_dry(first, lingers):
    inbox = Recording()
    (inbox.put_status if first.topic.endswith("/status") else inbox.put)(first)
    looks = iter([0.0, 0.0, 1.0])  # the batch starts, looks once in its linger, then it is over
    batch = collect(inbox, batch_max=10, fill_linger_s=0.05, clock=lambda: next(looks, 1.0))
    assert batch == [first]
    assert inbox.waits[0] == 0.0  # the first message
    assert (len(inbox.waits) > 1) is lingers  # a second get: it waited for company


def test_a_batch_lingering_for_company_asks_for_the_statuses_that_would_fill_it():
    inbox = Recording()
    inbox.put_status(message("e1", "status", 0))
    looks = iter([0.0, 0.0, 1.0])
    collect(inbox, batch_max=10, fill_linger_s=0.05, clock=lambda: next(looks, 1.0))
    assert inbox.enough == [1, 9]  # the first message, then the other nine


def test_a_batch_of_events_takes_the_statuses_of_their_enclosures_along():
    """A cancel: each agent sends its events and the status that no longer says recording;
    the status goes with the events, the others wait for their own batch."""
    inbox = inbox_of(
        message("e1", "status", 0),
        message("e1", "events", 1),
        message("e2", "events", 2),
        message("e2", "status", 3),
        message("e3", "status", 4),
        message("e1", "status", 5),
    )
    batch = collect(inbox, events_suffix="/events", clock=Clock())
    topics = [f"{m.topic.split('/')[3]}/{m.topic.split('/')[4]}:{m.mid}" for m in batch]
    assert topics[:2] == ["e1/events:1", "e2/events:2"]
    assert sorted(topics[2:]) == ["e1/status:0", "e1/status:5", "e2/status:3"]
    assert [m.mid for m in batch if m.topic.endswith("e1/status")] == [0, 5]  # oldest first
    assert inbox.qsize() == 1
    assert take(inbox) == ["e3/status"]
    assert take(inbox) == []


def test_the_statuses_taken_along_stay_within_the_batch_maximum():
    inbox = inbox_of(
        message("e1", "events", 0),
        message("e2", "events", 1),
        message("e1", "status", 2),
        message("e1", "status", 3),
        message("e2", "status", 4),
    )
    batch = collect(inbox, batch_max=3, events_suffix="/events", clock=Clock())
    assert [m.mid for m in batch] == [0, 1, 4]  # e1's two statuses would not fit: left
    assert [m.mid for m in (inbox.get_nowait(), inbox.get_nowait())] == [2, 3]


def test_without_events_a_batch_takes_no_statuses_along():
    inbox = inbox_of(
        message("e1", "state", 0),
        message("e1", "status", 1),
        ack("e2", 2, "c1", "succeeded"),
        message("e2", "status", 3),
    )
    assert [m.mid for m in collect(inbox, events_suffix="/events", clock=Clock())] == [0, 2]
    assert inbox.qsize() == 2
