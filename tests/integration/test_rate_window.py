"""The database's login counters slide: a burst cannot double the limit across a window's
boundary (CI once logged in at the 4th attempt of a "3/minute" limit: its three guesses fell at
23:12:59.99 and the login at 23:13:00.002, in the next fixed window)."""

from __future__ import annotations

from limits import parse

from controlsvc.api.ratelimit import DatabaseCounter
from controlsvc.store.db import Database


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_burst_across_the_boundary_is_refused(database: Database) -> None:
    limit = parse("3/minute")
    clock = Clock(60.0 * 1_000_000 - 0.01)  # 10 ms before a window ends
    counter = DatabaseCounter(database.engine, clock=clock)
    assert all(counter.hit(limit, "login:account:a")[0] for _ in range(3))
    clock.now += 0.02  # 10 ms into the next window
    allowed, reset = counter.hit(limit, "login:account:a")
    assert not allowed
    # the 3 attempts of the last window must mostly pass out of the last minute first
    assert clock.now + 20 < reset <= clock.now + 60
    # other keys have their own count
    assert counter.hit(limit, "login:account:b")[0]


def test_the_count_slides_back_under_the_limit(database: Database) -> None:
    limit = parse("3/minute")
    clock = Clock(60.0 * 2_000_000)
    counter = DatabaseCounter(database.engine, clock=clock)
    for _ in range(3):
        assert counter.hit(limit, "login:address:10.0.0.1")[0]
    refused, reset = counter.hit(limit, "login:address:10.0.0.1")
    assert not refused
    clock.now = reset  # as told: the next attempt is allowed then
    assert counter.hit(limit, "login:address:10.0.0.1")[0]
    # and two windows on, nothing of these is left
    clock.now += 120.0
    assert all(counter.hit(limit, "login:address:10.0.0.1")[0] for _ in range(3))


def test_a_limits_storage_counts_in_sliding_windows_too(settings, database) -> None:
    """`ratelimit_storage_uri = memory://` (redis:// alike) goes through flask-limiter's
    sliding-window-counter strategy, which every storage of `limits` supports."""
    from controlsvc.api.ratelimit import THROTTLE_KEY
    from controlsvc.ops.app import create_app

    service = settings.service.model_copy(
        update={"login_rate_limit": "3/minute", "ratelimit_storage_uri": "memory://"}
    )
    app = create_app(settings.model_copy(update={"service": service}), database=database)
    assert (
        "SlidingWindowCounter"
        in type(app.extensions[THROTTLE_KEY].counter.limiter.limiter).__name__
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/api/auth/login",
            json={"email": "nobody@example.com", "password": "wrong-guess"},
            environ_base={"REMOTE_ADDR": f"10.0.1.{i}"},
        ).status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
