"""Bodies an API process built last, served again while they are still true enough: the fleet
summary and sessions' details.

In a live fleet both change with every status, many times a second, so their ETags seldom
repeat and every dashboard that opens (or polls) would have the process read and serialise
every enclosure again. Here a body is kept, with its gzip form, for ``service.summary_cache_s``
(1 s) as long as its ``settled`` version holds: a state change, an edit, an alert or a session
joined or left makes the next read build it anew at once, so what a user acts on or waits for
is never shown late; only the figures every status moves (last seen, disk, fps, recorded
seconds) may be up to that long old. Each process keeps its own; no Flask here.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Built", "KeptBodies"]


@dataclass(slots=True)
class Built:
    """One body, the version it was built under and its ETag."""

    settled: str
    etag: str
    body: bytes
    built_at: float
    gzip_level: int
    _gzipped: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        """The body gzip-compressed, once (two threads may both compress it: same bytes)."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=self.gzip_level, mtime=0)
        return self._gzipped


class KeptBodies:
    """The last body built for each key (the summary, a session's id), for ``max_age_s``
    seconds of ``clock`` (0: never kept); the ``entries`` keys used last."""

    def __init__(
        self,
        max_age_s: float,
        *,
        entries: int = 1,
        gzip_level: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s = max_age_s
        self.entries = entries
        self.gzip_level = gzip_level
        self.clock = clock
        self._kept: OrderedDict[str, Built] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0  # bodies built: what the tests read to see the cache's effect

    def get(self, key: str, settled: str) -> Built | None:
        """The body built for ``key`` under ``settled`` if it is younger than ``max_age_s``."""
        last = self._kept.get(key)
        if last is None or last.settled != settled:
            return None
        if self.clock() - last.built_at >= self.max_age_s:
            return None
        return last

    def put(self, key: str, settled: str, etag: str, body: bytes) -> Built:
        """Keep ``body`` for ``key`` (when keeping is on) and return it as a ``Built``."""
        built = Built(settled, etag, body, self.clock(), self.gzip_level)
        with self._lock:
            self.builds += 1
            if self.max_age_s > 0:
                self._kept[key] = built
                self._kept.move_to_end(key)
                while len(self._kept) > self.entries:
                    self._kept.popitem(last=False)
        return built

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
