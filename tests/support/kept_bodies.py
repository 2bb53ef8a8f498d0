"""The bodies API processes keep (``controlsvc.api.kept_bodies``), for tests that watch them:
a clock the test moves, and settings that keep them."""

from __future__ import annotations

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
