"""The sliding count of the login throttle and when it lets the next attempt through."""

from __future__ import annotations

import pytest

from controlsvc.api.ratelimit import sliding_count, sliding_reset


def test_the_previous_window_weighs_by_what_is_left_of_it() -> None:
    assert sliding_count(previous=10, current=2, elapsed=0.0) == 12
    assert sliding_count(previous=10, current=2, elapsed=0.25) == pytest.approx(9.5)
    assert sliding_count(previous=10, current=2, elapsed=1.0) == 2


def test_a_burst_at_the_end_of_a_window_still_counts_after_its_boundary() -> None:
    # 3 attempts in the last moment of a window, one just after: 4 in the last minute
    assert sliding_count(previous=3, current=1, elapsed=0.001) > 3


def test_the_reset_within_this_window_is_when_enough_of_the_last_one_has_passed() -> None:
    # limit 3, 4 attempts last window, 1 in this one: the next is allowed once 4*(1-e)+2 <= 3
    reset = sliding_reset(amount=3, previous=4, current=1, start=600.0, period=60.0)
    assert reset == pytest.approx(600.0 + 60.0 * 0.75)
    assert sliding_count(4, 1 + 1, (reset - 600.0) / 60.0) == pytest.approx(3)


def test_a_full_window_resets_in_the_next_one() -> None:
    # limit 3, 4 attempts in this window: in the next, 4*(1-e)+1 <= 3 once half of it is gone
    reset = sliding_reset(amount=3, previous=0, current=4, start=600.0, period=60.0)
    assert reset == pytest.approx(660.0 + 30.0)
    # a limit of one waits out the whole next window
    assert sliding_reset(amount=1, previous=0, current=1, start=600.0, period=60.0) == 720.0
