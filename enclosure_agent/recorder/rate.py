"""Frame-rate measurement over a sliding window."""

from __future__ import annotations

from collections import deque

__all__ = ["FPS_WINDOW_S", "RateMeter"]

FPS_WINDOW_S = 5.0  # long enough to smooth jitter, short enough to show a drop within seconds


class RateMeter:
    """Events per second over the last ``window_s`` (not thread-safe; guard it externally)."""

    def __init__(self, window_s: float = FPS_WINDOW_S) -> None:
        self._window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque()

    def add(self, monotonic_ns: int) -> None:
        self._times.append(monotonic_ns)
        horizon = monotonic_ns - self._window_ns
        while self._times and self._times[0] < horizon:
            self._times.popleft()

    def rate(self, now_ns: int | None = None) -> float:
        """The measured rate; 0 when fewer than two events, or none within the window."""
        times = self._times
        if len(times) < 2:
            return 0.0
        if now_ns is not None and now_ns - times[-1] > self._window_ns:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) * 1e9 / span if span > 0 else 0.0

    def reset(self) -> None:
        self._times.clear()
