"""Rate limits: login attempts per account AND per client address, counted across workers.

The same limit also guards password-reset requests and password changes, each counted in its
own scope (so asking for reset mails cannot lock an account out of logging in).
Both counters take a hit on every attempt, whatever its outcome, before the password is checked:
so guessing one account's password from many addresses, or many accounts' passwords from one
address, both stop at `[SERVICE] login_rate_limit`. A refused attempt is a 429 problem+json
with `Retry-After` (seconds).

The counts are sliding windows (the last period's attempts, estimated from the current and the
previous fixed window): a fixed window would let twice the limit through, half before and half
after its boundary.

The counts live where `[SERVICE] ratelimit_storage_uri` says: `database` (the default: the
service's database, shared by every worker and process), `redis://...` (flask-limiter's
storage), or `memory://` (this process only: each worker would count apart). The client address
is the peer's, or what a trusted reverse proxy says it is (controlsvc/api/proxies.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, cast

from flask import Flask, abort, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from controlsvc.api.errors import problem
from controlsvc.api.web import DATABASE_KEY
from controlsvc.config.sections import DATABASE_STORAGE
from controlsvc.config.settings import Settings
from controlsvc.store.db import Database
from controlsvc.store.models.ratelimit import AttemptCount

log = logging.getLogger(__name__)

__all__ = [
    "LIMITER_KEY",
    "THROTTLE_KEY",
    "DatabaseCounter",
    "LimiterCounter",
    "Throttle",
    "check_attempt",
    "init_app",
]

LIMITER_KEY = "jaxmba.limiter"
THROTTLE_KEY = "jaxmba.login_throttle"
# Keys longer than the column (long email addresses) are stored as their SHA-256.
MAX_KEY_LENGTH = 200
# Each process deletes the counters of past windows at most this often.
PURGE_EVERY_S = 60.0


class Counter(Protocol):
    def hit(self, item: RateLimitItem, key: str) -> tuple[bool, float]:
        """Count one attempt under `key`: (still within the limit, epoch seconds of reset)."""
        ...


@dataclass(frozen=True)
class LimiterCounter:
    """Counts in flask-limiter's storage (memory:// or redis://...)."""

    limiter: Limiter

    def hit(self, item: RateLimitItem, key: str) -> tuple[bool, float]:
        strategy = self.limiter.limiter
        allowed = strategy.hit(item, key)
        return allowed, strategy.get_window_stats(item, key).reset_time


def sliding_count(previous: int, current: int, elapsed: float) -> float:
    """The attempts of the last period, estimated from two fixed windows: all of the current
    one's and the share of the previous one's that still falls in the period (`elapsed` is the
    fraction of the current window gone by). Unlike a fixed window, this cannot let twice the
    limit through around a window's boundary."""
    return previous * (1.0 - elapsed) + current


def sliding_reset(amount: int, previous: int, current: int, start: float, period: float) -> float:
    """When one more attempt would be within `amount` again, if none is made meanwhile (epoch
    seconds; `start` is when the current window began)."""
    if current + 1 <= amount:
        # within this window, once enough of the previous one's share has passed out of it
        needed = 1.0 - (amount - current - 1) / previous if previous else 0.0
        return start + period * max(needed, 0.0)
    # in the next window, where this one's attempts are the previous ones
    needed = 1.0 - (amount - 1) / current
    return start + period * (1.0 + max(needed, 0.0))


class DatabaseCounter:
    """Sliding-window counts kept in the `attempt_counts` table, one row per key and fixed window:
    one atomic upsert per attempt and a read of the previous window's row, in a transaction of
    its own (a refused login rolls its request back; the count must stay)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._purged_at = -math.inf
        self._lock = threading.Lock()

    def hit(self, item: RateLimitItem, key: str) -> tuple[bool, float]:
        period = item.get_expiry()
        now = self._clock()
        window = int(now // period)
        start = window * period
        stored = key if len(key) <= MAX_KEY_LENGTH else hashlib.sha256(key.encode()).hexdigest()
        insert = (
            postgresql.insert(AttemptCount)
            if self.engine.dialect.name == "postgresql"
            else sqlite.insert(AttemptCount)
        )
        count = (
            insert.values(
                key=stored,
                window_index=window,
                hits=1,
                # the row still counts, as the previous window, through the next one
                expires_at=datetime.fromtimestamp(start + 2 * period, UTC),
            )
            .on_conflict_do_update(
                index_elements=["key", "window_index"],
                set_={"hits": AttemptCount.hits + 1},
            )
            .returning(AttemptCount.hits)
        )
        previous = select(AttemptCount.hits).where(
            AttemptCount.key == stored, AttemptCount.window_index == window - 1
        )
        with self.engine.begin() as conn:
            self._purge(conn, now)
            current = int(conn.execute(count).scalar_one())
            before = int(conn.execute(previous).scalar() or 0)
        allowed = sliding_count(before, current, (now - start) / period) <= item.amount
        return allowed, sliding_reset(item.amount, before, current, start, period)

    def _purge(self, conn: Connection, now: float) -> None:
        with self._lock:
            if now - self._purged_at < PURGE_EVERY_S:
                return
            self._purged_at = now
        conn.execute(
            delete(AttemptCount).where(AttemptCount.expires_at <= datetime.fromtimestamp(now, UTC))
        )


@dataclass(frozen=True)
class Throttle:
    """One limit counted separately per account and per client address, in named scopes."""

    counter: Counter
    item: RateLimitItem

    def hit(self, scope: str, account: str, address: str) -> int | None:
        """Count one attempt; None when allowed, else the seconds until it would be."""
        keys = (("account", account.strip().lower()), ("address", address))
        breached: list[tuple[str, str, float]] = []
        for kind, value in keys:
            allowed, reset = self.counter.hit(self.item, f"{scope}:{kind}:{value}")
            if not allowed:
                breached.append((kind, value, reset))
        if not breached:
            return None
        log.warning(
            "%s rate limit reached (%s) for %s",
            scope,
            self.item,
            ", ".join(f"{kind} {value}" for kind, value, _ in breached),
        )
        return max(1, math.ceil(max(reset for *_, reset in breached) - time.time()))


def _counter(app: Flask, settings: Settings) -> Counter:
    uri = settings.service.ratelimit_storage_uri
    if uri == DATABASE_STORAGE:
        return DatabaseCounter(cast(Database, app.extensions[DATABASE_KEY]).engine)
    limiter = Limiter(
        key_func=get_remote_address,
        app=app,
        storage_uri=uri,
        strategy="sliding-window-counter",
        headers_enabled=False,
        key_prefix="jaxmba",
    )
    app.extensions[LIMITER_KEY] = limiter
    return LimiterCounter(limiter)


def init_app(app: Flask, settings: Settings) -> None:
    """The login throttle of `app` (idempotent); no limit applies to any route by default."""
    if THROTTLE_KEY in app.extensions:
        return
    # [SERVICE] login_rate_limit was checked when the settings were loaded.
    item = parse(settings.service.login_rate_limit)
    app.extensions[THROTTLE_KEY] = Throttle(counter=_counter(app, settings), item=item)


def check_attempt(scope: str, account: str) -> None:
    """Count an attempt in `scope` ("login", "password-reset", "password-change") for the
    account and the client address; abort with 429 problem+json when either is over the limit.
    """
    throttle: Throttle = current_app.extensions[THROTTLE_KEY]
    wait_s = throttle.hit(scope, account, request.remote_addr or "unknown")
    if wait_s is not None:
        abort(
            problem(
                429,
                "Too many requests",
                f"too many attempts; try again in {wait_s} seconds",
                headers={"Retry-After": str(wait_s)},
            )
        )
