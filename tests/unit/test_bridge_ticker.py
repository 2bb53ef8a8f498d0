"""The bridge's one timer: schedules of periodic tasks, run in order on one thread."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import pytest
from sqlalchemy.exc import OperationalError

from controlsvc.bridge.ticker import Schedule, Ticker
from controlsvc.domain.publisher import BrokerUnavailable
from tests.support.waiting import wait_for


def test_tasks_run_in_order_and_each_at_its_own_period() -> None:
    ran: list[str] = []
    schedule = Schedule("test")
    schedule.add("every tick", lambda _now: ran.append("a"))
    schedule.add("hourly", lambda _now: ran.append("b"), every_s=3600)
    schedule.add("later", lambda _now: ran.append("c"), every_s=3600, first_in_s=3600)
    schedule.run_due()
    schedule.run_due()
    assert ran == ["a", "b", "a"]


def test_the_time_given_reaches_every_task() -> None:
    seen: list[datetime | None] = []
    schedule = Schedule("test")
    schedule.add("one", seen.append)
    schedule.add("two", seen.append)
    at = datetime(2026, 12, 4, 12, 0)
    schedule.run_due(at)
    assert seen == [at, at]


def test_a_failing_task_neither_stops_the_others_nor_floods_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []

    def broken(_now: datetime | None) -> None:
        raise ValueError("a bug")

    schedule = Schedule("test")
    schedule.add("broken", broken)
    schedule.add("fine", lambda _now: ran.append(1))
    with caplog.at_level(logging.WARNING, logger="controlsvc.bridge.ticker"):
        for _ in range(5):
            schedule.run_due()
    assert ran == [1] * 5
    failures = [r for r in caplog.records if "broken failed" in r.getMessage()]
    assert len(failures) == 1  # once a minute, not once a tick
    assert failures[0].exc_info is not None  # a bug: with its traceback


@pytest.mark.parametrize(
    "outage",
    [
        OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        BrokerUnavailable("the bridge is not connected to the broker"),
    ],
    ids=["database", "broker"],
)
def test_an_outage_is_logged_without_a_traceback(
    outage: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    def away(_now: datetime | None) -> None:
        raise outage

    schedule = Schedule("test")
    schedule.add("away", away)
    with caplog.at_level(logging.WARNING, logger="controlsvc.bridge.ticker"):
        schedule.run_due()
    (record,) = caplog.records
    assert "bridge test: away failed" in record.getMessage()
    assert record.exc_info is None


def test_one_thread_runs_every_schedule_and_stop_interrupts_long_tasks() -> None:
    ran: set[tuple[str, str]] = set()
    first, second = Schedule("first"), Schedule("second")
    first.add("a", lambda _now: ran.add(("a", threading.current_thread().name)))
    second.add("b", lambda _now: ran.add(("b", threading.current_thread().name)))
    ticker = Ticker([first, second], tick_s=0.01)
    ticker.start()
    try:
        wait_for(lambda: {task for task, _ in ran} == {"a", "b"})
    finally:
        ticker.stop()
    assert {thread for _, thread in ran} == {"jaxmba-bridge-ticker"}
    assert first.stopping.is_set()
    assert second.stopping.is_set()


class _Lease:
    def __init__(self) -> None:
        self.held = False
        self.asked = 0

    def refresh(self) -> bool:
        self.asked += 1
        return self.held


def test_led_schedules_run_only_while_the_lease_is_held() -> None:
    ran: list[str] = []
    own, led = Schedule("own"), Schedule("led")
    own.add("heartbeat", lambda _now: ran.append("own"))
    led.add("sessions", lambda _now: ran.append("led"))
    lease = _Lease()
    ticker = Ticker([own], led=[led], lease=lease)
    ticker.run_once()
    assert ran == ["own"]  # another bridge leads: only this bridge's own tasks
    lease.held = True
    ticker.run_once()
    assert ran == ["own", "own", "led"]
    lease.held = False
    ticker.run_once()
    assert ran == ["own", "own", "led", "own"]
    assert lease.asked == 3  # asked at every tick, so a lost lease stops the led tasks at once
