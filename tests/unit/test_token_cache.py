"""The per-process cache of access-token checks: served only while changes are heard, never
past its lifetime, and never a check that read the database before a change arrived."""

from __future__ import annotations

import uuid

from controlsvc.api.token_cache import Identity, TokenCache

ALICE = Identity(1, "admin")
BOB = Identity(2, "viewer")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live_cache(ttl_s: float = 5.0, **kwargs) -> tuple[TokenCache, Clock]:
    clock = Clock()
    cache = TokenCache(ttl_s, clock=clock, **kwargs)
    cache.connected()
    return cache, clock


def test_a_check_is_served_until_it_expires():
    cache, clock = live_cache()
    jti = uuid.uuid4()
    assert cache.get(jti) is None
    assert cache.put(jti, ALICE, cache.generation)
    assert cache.get(jti) == ALICE
    clock.now += 4.9
    assert cache.get(jti) == ALICE
    clock.now += 0.2
    assert cache.get(jti) is None


def test_nothing_is_kept_or_served_unless_changes_are_heard():
    clock = Clock()
    cache = TokenCache(5.0, clock=clock)
    jti = uuid.uuid4()
    assert not cache.put(jti, ALICE, cache.generation)  # never connected
    cache.connected()
    assert cache.put(jti, ALICE, cache.generation)
    cache.disconnected()
    assert cache.get(jti) is None
    cache.connected()  # what was kept before the gap is gone, not back
    assert cache.get(jti) is None


def test_a_change_forgets_that_users_checks_only():
    cache, _ = live_cache()
    alice_1, alice_2, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for jti, who in ((alice_1, ALICE), (alice_2, ALICE), (bob, BOB)):
        cache.put(jti, who, cache.generation)
    cache.users_changed([ALICE.user_id])
    assert cache.get(alice_1) is None
    assert cache.get(alice_2) is None
    assert cache.get(bob) == BOB


def test_a_check_read_before_a_change_arrived_is_not_kept():
    """The race: a request reads the database, another process commits a logout and its message
    arrives, then the request would store what it read."""
    cache, _ = live_cache()
    jti = uuid.uuid4()
    generation = cache.generation  # the request reads the generation, then the database
    cache.users_changed([BOB.user_id])  # any change, even another user's, moves it
    assert not cache.put(jti, ALICE, generation)
    assert cache.get(jti) is None
    generation = cache.generation
    cache.disconnected()
    cache.connected()  # a reconnection in between, too
    assert not cache.put(jti, ALICE, generation)


def test_off_when_its_lifetime_is_zero_and_bounded_in_size():
    off = TokenCache(0)
    off.connected()
    assert not off.enabled
    assert not off.put(uuid.uuid4(), ALICE, off.generation)
    cache, _ = live_cache(max_entries=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.put(first, ALICE, cache.generation)
    cache.put(second, ALICE, cache.generation)
    assert cache.get(first) == ALICE  # now the most recently used
    cache.put(third, BOB, cache.generation)
    assert len(cache) == 2
    assert cache.get(second) is None
    assert cache.get(first) == ALICE
    assert cache.get(third) == BOB
