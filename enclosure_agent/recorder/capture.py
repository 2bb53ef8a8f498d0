"""The capture owner: keeps one camera open and fans its frames out.

A :class:`Capture` runs one thread that reads the source continuously, keeps the latest
frame for live preview (:meth:`Capture.latest_frame`), and copies every frame into the
queues of subscribers (a :class:`~enclosure_agent.recorder.recorder.Recorder`). So the camera
is opened once whether the agent records, previews, or both.

It also watches the camera: when no frame arrives for ``stall_timeout_s`` it declares a
stall (subscribers get a :class:`StallNotice`), closes the source and reopens it with
exponential backoff (``BACKOFF_INITIAL_S`` doubling up to ``BACKOFF_MAX_S``) until frames
flow again (subscribers get a :class:`RecoveryNotice`). A source that cannot be opened at
all is retried the same way, and counts as stalled once the timeout has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .errors import SourceError
from .frame import CapturedFrame, FrameSource, utc_now
from .rate import RateMeter

__all__ = [
    "BACKOFF_INITIAL_S",
    "BACKOFF_MAX_S",
    "STALL_TIMEOUT_S",
    "SUBSCRIPTION_MAX_BYTES",
    "Capture",
    "CaptureState",
    "FrameSubscription",
    "RecoveryNotice",
    "StallNotice",
]

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 5.0  # no frame for this long while open means the camera is stalled
BACKOFF_INITIAL_S = 1.0  # first wait before reopening a stalled or unopenable camera
BACKOFF_MAX_S = 30.0  # reopening backs off to at most one attempt every 30 s
READ_POLL_S = 0.25  # longest a read blocks, so stop() and stall checks stay prompt
SUBSCRIPTION_MAX_BYTES = 256 * 1024 * 1024  # ~3 s of 1280x720 RGB buffered behind a slow encoder
CLOSE_TIMEOUT_S = 10.0  # how long close() waits for the capture thread


@dataclass(frozen=True, slots=True)
class StallNotice:
    """The camera delivered nothing for the stall timeout; ``since`` = last frame (or start)."""

    since: datetime


@dataclass(frozen=True, slots=True)
class RecoveryNotice:
    """Frames flow again after a stall; ``gap_s`` = time between the last and the next frame."""

    gap_s: float


CaptureItem = CapturedFrame | StallNotice | RecoveryNotice


class FrameSubscription:
    """A bounded queue of frames and notices from a capture (one consumer thread).

    Frames beyond ``max_bytes`` of backlog are dropped and counted in ``dropped``
    (a consumer that far behind cannot catch up anyway); notices are never dropped.
    """

    def __init__(self, max_bytes: int = SUBSCRIPTION_MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._items: deque[CaptureItem] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: CaptureItem) -> bool:
        with self._cond:
            if isinstance(item, CapturedFrame):
                if self._bytes + item.nbytes > self._max_bytes and self._items:
                    self.dropped += 1
                    return False
                self._bytes += item.nbytes
            self._items.append(item)
            self._cond.notify()
            return True

    def get(self, timeout_s: float) -> CaptureItem | None:
        """The next item, or ``None`` when nothing came within ``timeout_s``."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout_s):
                return None
            item = self._items.popleft()
            if isinstance(item, CapturedFrame):
                self._bytes -= item.nbytes
            return item

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass(frozen=True, slots=True)
class CaptureState:
    """A snapshot of the camera's health for status reports and ``check``."""

    source: str
    running: bool
    connected: bool  # the source is open
    stalled: bool
    stalled_since: datetime | None
    frames_captured: int
    measured_fps: float
    last_frame_at: datetime | None
    last_error: str | None
    reopen_attempts: int


class Capture:
    """Owns a :class:`FrameSource`: one capture thread, a latest-frame tap, subscriber queues.

    ``on_change`` (optional) is called from the capture thread with a fresh
    :class:`CaptureState` whenever connected/stalled/error changes; it must not block.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        on_change: Callable[[CaptureState], None] | None = None,
    ) -> None:
        self._source = source
        self._stall_timeout_ns = int(stall_timeout_s * 1e9)
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._on_change = on_change
        self._lock = threading.Condition()
        self._subscribers: list[FrameSubscription] = []
        self._latest: CapturedFrame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rate = RateMeter()
        self._connected = False
        self._stalled_since: datetime | None = None
        self._frames = 0
        self._last_error: str | None = None
        self._open_attempts = 0

    @property
    def source(self) -> FrameSource:
        return self._source

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the capture thread (idempotent); opening happens, and is retried, in it."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the thread and close the source (idempotent)."""
        thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("capture thread did not stop within %.0f s", timeout_s)
        self._thread = None

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def latest_frame(self) -> CapturedFrame | None:
        """The most recent frame (read-only image), or ``None`` before the first one. Cheap."""
        return self._latest

    def wait_for_frame(
        self, newer_than_ns: int | None = None, timeout_s: float = STALL_TIMEOUT_S
    ) -> CapturedFrame | None:
        """The latest frame newer than ``newer_than_ns`` (monotonic); waits up to ``timeout_s``"""

        def fresh() -> bool:
            latest = self._latest
            return latest is not None and (
                newer_than_ns is None or latest.monotonic_ns > newer_than_ns
            )

        with self._lock:
            if not self._lock.wait_for(fresh, timeout_s):
                return None
            return self._latest

    def subscribe(self, max_bytes: int = SUBSCRIPTION_MAX_BYTES) -> FrameSubscription:
        """A queue that receives every frame from now on (and a ``StallNotice`` if stalled now)."""
        subscription = FrameSubscription(max_bytes)
        with self._lock:
            if self._stalled_since is not None:
                subscription.put(StallNotice(self._stalled_since))
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: FrameSubscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def state(self) -> CaptureState:
        with self._lock:
            latest = self._latest
            return CaptureState(
                source=self._source.describe(),
                running=self.running,
                connected=self._connected,
                stalled=self._stalled_since is not None,
                stalled_since=self._stalled_since,
                frames_captured=self._frames,
                measured_fps=self._rate.rate(time.monotonic_ns()),
                last_frame_at=latest.captured_at if latest else None,
                last_error=self._last_error,
                reopen_attempts=max(0, self._open_attempts - 1),
            )

    # -- capture thread -------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._backoff_initial_s
        started_utc = utc_now()
        # the stall clock: last frame, or the last (re)open, or the start
        progress_ns = time.monotonic_ns()
        try:
            while not self._stop.is_set():
                if not self._connected:
                    if self._open():
                        progress_ns = time.monotonic_ns()
                    else:
                        self._check_stall(progress_ns, started_utc)
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self._backoff_max_s)
                        continue
                try:
                    frame = self._source.read(READ_POLL_S)
                except SourceError as exc:
                    self._fail(f"camera read failed: {exc}")
                    frame = None
                except Exception as exc:  # a broken driver must not kill the capture thread
                    log.exception("unexpected error reading %s", self._source.describe())
                    self._fail(f"camera read failed: {exc!r}")
                    frame = None
                if frame is not None:
                    self._deliver(frame)
                    progress_ns = frame.monotonic_ns
                    backoff = self._backoff_initial_s
                    continue
                if self._check_stall(progress_ns, started_utc) or not self._connected:
                    self._close_source()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._backoff_max_s)
        finally:
            self._close_source()
            self._changed()

    def _open(self) -> bool:
        with self._lock:
            self._open_attempts += 1
        try:
            self._source.open()
        except Exception as exc:  # SourceError, or anything a driver raises
            if not isinstance(exc, SourceError):
                log.exception("unexpected error opening %s", self._source.describe())
            self._set_error(str(exc))
            return False
        log.info("camera open: %s", self._source.describe())
        with self._lock:
            self._connected = True
        self._changed()
        return True

    def _close_source(self) -> None:
        if not self._connected:
            return
        try:
            self._source.close()
        except Exception:
            log.exception("closing %s failed", self._source.describe())
        with self._lock:
            self._connected = False
        self._changed()

    def _fail(self, message: str) -> None:
        self._set_error(message)
        self._close_source()

    def _set_error(self, message: str) -> None:
        with self._lock:
            changed = message != self._last_error
            self._last_error = message
        if changed:
            log.warning("%s", message)
            self._changed()

    def _check_stall(self, progress_ns: int, started_utc: datetime) -> bool:
        """Declare a stall once no progress for the timeout; True while stalled."""
        if time.monotonic_ns() - progress_ns < self._stall_timeout_ns:
            return False
        with self._lock:
            if self._stalled_since is not None:
                return True
            latest = self._latest
            since = latest.captured_at if latest else started_utc
            self._stalled_since = since
            self._rate.reset()
            notice = StallNotice(since)
            for subscription in self._subscribers:
                subscription.put(notice)
        self._set_error(f"camera stalled: no frame since {since.isoformat()}")
        self._changed()
        return True

    def _deliver(self, frame: CapturedFrame) -> None:
        recovered: RecoveryNotice | None = None
        with self._lock:
            if self._stalled_since is not None:
                previous = self._latest
                if previous is not None:
                    gap_s = (frame.monotonic_ns - previous.monotonic_ns) / 1e9
                else:
                    gap_s = (frame.captured_at - self._stalled_since).total_seconds()
                recovered = RecoveryNotice(gap_s)
                self._stalled_since = None
            cleared = self._last_error is not None
            self._last_error = None
            self._latest = frame
            self._frames += 1
            self._rate.add(frame.monotonic_ns)
            for subscription in self._subscribers:
                if recovered is not None:
                    subscription.put(recovered)
                subscription.put(frame)
            self._lock.notify_all()
        if recovered is not None:
            log.info("camera recovered after %.1f s", recovered.gap_s)
        if cleared:
            self._changed()

    def _changed(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(self.state())
        except Exception:
            log.exception("capture on_change callback failed")
