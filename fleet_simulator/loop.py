"""One thread that drives many paho clients through a selector (epoll), with timers.

paho's own ``loop_start()`` runs a thread per client; 2,000 of them would spend the machine on
context switches. Here a client is attached to a ``NetworkLoop`` instead: paho tells the loop
through its socket callbacks when a socket opens or closes and when it has bytes to write, and
the loop calls ``loop_read`` when the selector says a socket is readable, ``loop_write`` once
per turn for every client that queued something (and again when a socket that could not take
everything becomes writable), and ``loop_misc`` (keepalive) for every client a few times per
keepalive period. Writing at the end of the turn instead of registering every socket for
writability saves two ``epoll_ctl`` calls per message and sends a burst in one go.

Every paho call for an attached client happens on the loop's thread: other threads hand work
over with ``call_soon_threadsafe`` (or ``submit``, which returns a ``Future``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import paho.mqtt.client as mqtt

__all__ = ["NetworkLoop", "Timer"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MISC_INTERVAL_S = 0.5  # keepalive checks; well under any keepalive the fleet uses (>= 2 s)
MAX_WAIT_S = 0.5  # longest select() while idle, so stop() is noticed promptly
# Handed-over calls run per turn at most; the rest wait for the next turn, so sockets are read
# and written in between (a burst handed over as thousands of calls must not stall the loop
# for seconds: the broker would drop clients it has not heard from for 1.5 x keepalive).
MAX_CALLS_PER_TURN = 64
STOP_TIMEOUT_S = 10.0


class Timer:
    """A callback due at a ``time.monotonic()`` instant; ``cancel()`` before it runs."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class NetworkLoop:
    """A selector loop on its own thread for many paho clients (see the module docstring)."""

    def __init__(self, name: str = "sim-loop", *, tcp_nodelay: bool = True) -> None:
        self.name = name
        self.tcp_nodelay = tcp_nodelay
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: deque[Callable[[], object]] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._clients: set[mqtt.Client] = set()
        self._to_flush: dict[mqtt.Client, None] = {}  # queued bytes; written at the end of a turn
        self._write_watched: set[mqtt.Client] = set()  # socket full: waiting for writability
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.errors = 0  # exceptions caught around paho calls (logged with the client id)
        self.sockets_open = 0

    # -- thread -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the thread (attached clients are left as they are) and close the selector."""
        thread = self._thread
        self._stopping = True
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s did not stop within %.1f s", self.name, timeout)
                return
        self._thread = None
        with contextlib.suppress(OSError):
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    # -- scheduling -------------------------------------------------------------------------------
    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the loop thread, soon (from any thread)."""
        self._calls.append(callback)
        self._wake()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the loop thread; its result or exception arrives in the future."""
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller through the future
                future.set_exception(exc)

        if self.in_loop():
            run()
        else:
            self.call_soon_threadsafe(run)
        return future

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the loop thread after ``delay`` seconds (loop thread only)."""
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        return timer

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    # -- clients ----------------------------------------------------------------------------------
    def attach(self, client: mqtt.Client) -> None:
        """Let this loop drive ``client`` (before its first ``connect``/``reconnect``)."""
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._clients.add(client)

    def detach(self, client: mqtt.Client) -> None:
        self._clients.discard(client)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self.tcp_nodelay:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._selector.register(sock, selectors.EVENT_READ, client)
        self.sockets_open += 1

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._write_watched.discard(client)
        self._to_flush.pop(client, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            return
        self.sockets_open -= 1

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._to_flush[client] = None

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if client in self._write_watched:
            self._write_watched.discard(client)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.modify(sock, selectors.EVENT_READ, client)

    def _flush(self) -> None:
        """Write what clients queued this turn; watch the sockets that could not take it all."""
        while self._to_flush:
            pending, self._to_flush = self._to_flush, {}
            for client in pending:
                if client in self._write_watched:
                    continue  # the selector will say when this socket takes more
                self._guard(client, client.loop_write)
                sock = client.socket()
                if sock is not None and client.want_write():
                    self._write_watched.add(client)
                    with contextlib.suppress(KeyError, ValueError):
                        self._selector.modify(
                            sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client
                        )

    # -- the loop ---------------------------------------------------------------------------------
    def _run(self) -> None:
        next_misc = time.monotonic() + MISC_INTERVAL_S
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        while not self._stopping:
            now = time.monotonic()
            timeout = min(MAX_WAIT_S, next_misc - now)
            if self._timers:
                timeout = min(timeout, self._timers[0][0] - now)
            if self._calls or self._to_flush:
                timeout = 0.0
            for key, mask in self._selector.select(max(0.0, timeout)):
                client = key.data
                if client is None:
                    self._drain_wake()
                    continue
                if mask & read:
                    self._guard(client, client.loop_read)
                if mask & write:
                    self._guard(client, client.loop_write)
            self._run_calls()
            self._run_timers()
            self._flush()
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + MISC_INTERVAL_S
                for client in list(self._clients):
                    if client.socket() is not None:
                        self._guard(client, client.loop_misc)
                self._flush()

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass

    def _run_calls(self) -> None:
        for _ in range(min(len(self._calls), MAX_CALLS_PER_TURN)):
            callback = self._calls.popleft()
            self._guard(None, callback)

    def _run_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                self._guard(None, timer.callback)

    def _guard(self, client: mqtt.Client | None, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self.errors += 1
            who = getattr(client.user_data_get(), "eid", "-") if client is not None else "-"
            logger.exception("%s: error in the simulator loop (client %s)", self.name, who)
