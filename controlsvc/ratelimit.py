"""Rate limits (flask-limiter): login attempts per account AND per client address.

The same limit also guards password-reset requests and password changes, each counted in its
own scope (so asking for reset mails cannot lock an account out of logging in).
Both counters take a hit on every attempt, whatever its outcome, before the password is checked:
so guessing one account's password from many addresses, or many accounts' passwords from one
address, both stop at `[SERVICE] login_rate_limit`. A refused attempt is a 429 problem+json
with `Retry-After` (seconds). Storage is `[SERVICE] ratelimit_storage_uri` (memory:// counts
per process; use redis:// to share the counts between workers).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from flask import Flask, abort, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse

from controlsvc.api.errors import problem
from controlsvc.config import Settings
from controlsvc.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["LIMITER_KEY", "THROTTLE_KEY", "Throttle", "check_attempt", "init_app"]

LIMITER_KEY = "jaxmba.limiter"
THROTTLE_KEY = "jaxmba.login_throttle"


@dataclass(frozen=True)
class Throttle:
    """One limit counted separately per account and per client address, in named scopes."""

    limiter: Limiter
    item: RateLimitItem

    def hit(self, scope: str, account: str, address: str) -> int | None:
        """Count one attempt; None when allowed, else the seconds until it would be."""
        strategy = self.limiter.limiter
        keys = (("account", account.strip().lower()), ("address", address))
        breached = [key for key in keys if not strategy.hit(self.item, scope, *key)]
        if not breached:
            return None
        resets = [strategy.get_window_stats(self.item, scope, *key).reset_time for key in breached]
        log.warning(
            "%s rate limit reached (%s) for %s",
            scope,
            self.item,
            ", ".join(f"{kind} {value}" for kind, value in breached),
        )
        return max(1, math.ceil(max(resets) - time.time()))


def init_app(app: Flask, settings: Settings) -> Limiter:
    """A limiter for `app` (idempotent); no limit applies to any route by default."""
    existing = app.extensions.get(LIMITER_KEY)
    if isinstance(existing, Limiter):
        return existing
    raw = settings.service.login_rate_limit
    try:
        item = parse(raw)
    except ValueError as exc:
        raise ConfigError(
            f"[SERVICE] login_rate_limit: {raw!r} is not a rate limit such as 10/minute ({exc})"
        ) from None
    limiter = Limiter(
        key_func=get_remote_address,
        app=app,
        storage_uri=settings.service.ratelimit_storage_uri,
        strategy="fixed-window",
        headers_enabled=False,
        key_prefix="jaxmba",
    )
    app.extensions[LIMITER_KEY] = limiter
    app.extensions[THROTTLE_KEY] = Throttle(limiter=limiter, item=item)
    return limiter


def check_attempt(scope: str, account: str) -> None:
    """Count an attempt in `scope` ("login", "password-reset", "password-change") for the
    account and the client address; abort with 429 problem+json when either is over the limit.
    """
    throttle: Throttle = current_app.extensions[THROTTLE_KEY]
    wait_s = throttle.hit(scope, account, get_remote_address() or "unknown")
    if wait_s is not None:
        abort(
            problem(
                429,
                "Too many requests",
                f"too many attempts; try again in {wait_s} seconds",
                headers={"Retry-After": str(wait_s)},
            )
        )
