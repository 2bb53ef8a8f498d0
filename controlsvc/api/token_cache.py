"""A short-lived, per-process cache of access-token checks: most requests need not read the
database to know who is asking.

Checking a token (its user, both denylists, the password-change cutoff) is one query, on every
request. Here a passed check is kept for ``service.token_check_cache_s`` seconds, by token id,
but only while this process hears about changes:

- a commit that changes what a user's tokens may do (logout, a password change or reset, a role
  change, disabling, a login revoked for a reused refresh token) drops that user's entries in
  this process at once and, through ``{prefix}/service/auth``, in every other API process;
- the cache is live only while the process's event feed is subscribed to that topic: it is
  emptied, and serves nothing, from the moment the feed's connection drops until the
  subscription is back;
- a check that read the database before a change arrived is not stored (``generation``).

So a change takes effect everywhere within the broker's delivery time; and at worst (a message
lost with a dying process, or a change made by the command line, which does not publish) once
the entries expire. Refresh tokens are never cached: a refresh checks the database.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["EXTENSION_KEY", "Identity", "TokenCache"]

EXTENSION_KEY = "jaxmba.token_cache"  # the app's TokenCache in app.extensions

MAX_ENTRIES = 10_000  # tokens in use at once per process; the least recently used go first


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a checked access token speaks for: all a request needs unless it reads the user."""

    user_id: int
    role: str


@dataclass(frozen=True, slots=True)
class _Entry:
    identity: Identity
    expires: float


class TokenCache:
    """Thread-safe: request threads read and store, the feed's network thread invalidates."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._live = False
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    @property
    def live(self) -> bool:
        """Changes reach this process now: what is cached can be served."""
        return self._live

    @property
    def generation(self) -> int:
        """Moves at every change heard and every change of connection; read it before the
        database, hand it to ``put``."""
        return self._generation

    def get(self, jti: uuid.UUID) -> Identity | None:
        if not self._live:
            return None
        with self._lock:
            entry = self._entries.get(jti)
            if entry is None:
                return None
            if entry.expires <= self._clock():
                del self._entries[jti]
                return None
            self._entries.move_to_end(jti)
            return entry.identity

    def put(self, jti: uuid.UUID, identity: Identity, generation: int) -> bool:
        """Keep a check that read the database after ``generation`` was read; False (nothing
        kept) when a change or a reconnection came in between, or the cache is not live."""
        if not self.enabled:
            return False
        with self._lock:
            if not self._live or generation != self._generation:
                return False
            self._entries[jti] = _Entry(identity, self._clock() + self.ttl_s)
            self._entries.move_to_end(jti)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def users_changed(self, user_ids: Iterable[int]) -> None:
        """Forget the checks of these users (their tokens may no longer pass)."""
        ids = set(user_ids)
        with self._lock:
            self._generation += 1
            for jti in [j for j, e in self._entries.items() if e.identity.user_id in ids]:
                del self._entries[jti]

    def connected(self) -> None:
        """Changes are heard again (subscribed): start afresh."""
        self._reset(live=True)

    def disconnected(self) -> None:
        """Changes may be missed from now on: serve nothing until ``connected``."""
        self._reset(live=False)

    def clear(self) -> None:
        self._reset(live=self._live)

    def _reset(self, *, live: bool) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._live = live

    def __len__(self) -> int:
        return len(self._entries)
