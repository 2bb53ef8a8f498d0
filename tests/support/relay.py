"""A TCP relay that can cut the network silently, for fault tests.

``TcpRelay(host, port)`` listens on a free loopback port and forwards every connection to
``host:port``. ``cut()`` stops forwarding in both directions without closing any socket (and
accepts no new connection): to both ends it looks like a network that drops every packet, so
only their keepalives can notice. ``restore()`` forwards again: whatever the ends sent meanwhile
is delivered, and an end that gave up and closed its socket is closed on the other side too.

::

    with TcpRelay(broker.host, broker.port) as relay:
        client.connect("127.0.0.1", relay.port)
        relay.cut()
        ...
        relay.restore()
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

__all__ = ["TcpRelay"]

CHUNK = 64 * 1024
TICK_S = 0.05  # how soon cut()/restore()/close() take effect


class TcpRelay:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._cut = False
        self._stop = threading.Event()
        self.connections = 0  # accepted so far
        self._thread = threading.Thread(target=self._run, name=f"relay:{self.port}", daemon=True)
        self._thread.start()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Stop forwarding and accepting; no socket is closed."""
        with self._lock:
            self._cut = True

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [self._listener, *self._peers]:
            with contextlib.suppress(OSError):
                sock.close()
        self._peers.clear()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the forwarding thread --------------------------------------------------------------------
    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        registered: set[socket.socket] = set()
        try:
            while not self._stop.is_set():
                with self._lock:
                    wanted = set() if self._cut else {self._listener, *self._peers}
                for sock in registered - wanted:
                    selector.unregister(sock)
                for sock in wanted - registered:
                    selector.register(sock, selectors.EVENT_READ)
                registered = wanted
                for key, _mask in selector.select(TICK_S) if registered else ():
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._peers and not self._forward(sock):
                        for end in self._unpair(sock):
                            if end in registered:
                                selector.unregister(end)
                                registered.discard(end)
                            with contextlib.suppress(OSError):
                                end.close()
                if not registered:
                    self._stop.wait(TICK_S)
        finally:
            selector.close()

    def _accept(self) -> None:
        try:
            client, _addr = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._peers[client] = upstream
            self._peers[upstream] = client
        self.connections += 1

    def _forward(self, sock: socket.socket) -> bool:
        """Move what ``sock`` has to its peer; False when either end is gone."""
        try:
            data = sock.recv(CHUNK)
            if not data:
                return False
            self._peers[sock].sendall(data)
        except OSError:
            return False
        return True

    def _unpair(self, sock: socket.socket) -> tuple[socket.socket, ...]:
        """Forget ``sock`` and its peer; the caller closes them."""
        with self._lock:
            peer = self._peers.pop(sock, None)
            if peer is not None:
                self._peers.pop(peer, None)
        return (sock,) if peer is None else (sock, peer)
