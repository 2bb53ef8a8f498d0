"""The bodies API processes keep (``controlsvc.api.kept_bodies``), for tests that watch them:
a clock the test moves, and settings that keep them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controlsvc.api.kept_bodies import KeptBodies
from controlsvc.config.settings import Settings


class ManualClock:
    """A monotonic clock that moves only when the test moves ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def keeping(settings: Settings, max_age_s: float) -> Settings:
    """``settings`` with bodies kept for ``max_age_s`` (the tests' default keeps none)."""
    service = settings.service.model_copy(update={"summary_cache_s": max_age_s})
    return settings.model_copy(update={"service": service})


def kept_until_too_old(
    client: Any,
    url: str,
    headers: dict[str, str],
    clock: ManualClock,
    kept: KeptBodies,
    max_age_s: float,
    move_live: Callable[[], Any],
) -> tuple[Any, Any]:
    """What a kept body promises while only live figures move (``move_live``): the same body
    and ETag, 304 on that ETag, until it is ``max_age_s`` old; then a fresh body. The first
    response and the fresh one, for the caller's own checks of their figures."""
    first = client.get(url, headers=headers)
    assert first.status_code == 200
    assert kept.builds == 1

    move_live()
    clock.now += max_age_s / 2
    again = client.get(url, headers=headers)
    assert again.data == first.data
    assert again.headers["ETag"] == first.headers["ETag"]
    assert kept.builds == 1
    # Its ETag gives 304 while it is kept.
    named = client.get(url, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert named.status_code == 304

    clock.now += max_age_s / 2  # now as old as it may be
    fresh = client.get(url, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] != first.headers["ETag"]
    assert kept.builds == 2
    return first, fresh


def each_in_the_next_read(
    client: Any,
    url: str,
    headers: dict[str, str],
    clock: ManualClock,
    kept: KeptBodies,
    changes: Mapping[str, Callable[[], Any]],
    shown: Callable[[Any], Any] = lambda body: body,
) -> None:
    """Each of ``changes`` (what a user acts on or waits for) is in the very next read: built
    anew, ``shown`` (the part of the body it changes) different, no time passing."""
    start = clock.now
    for what, change in changes.items():
        before = client.get(url, headers=headers)
        builds = kept.builds
        change()
        after = client.get(url, headers={**headers, "If-None-Match": before.headers["ETag"]})
        assert after.status_code == 200, what
        assert shown(after.get_json()) != shown(before.get_json()), what
        assert kept.builds == builds + 1, what
    assert clock.now == start  # no time passed: none of it waited for the body to age
