"""A fleet of simulated enclosures in one process: thousands of MQTT connections, a few threads.

::

    accounts = fleet_accounts(2000)                   # sim-0001..sim-2000, own passwords
    install_accounts(broker, accounts)                # before broker.start(), or reloads it
    with Fleet("127.0.0.1", broker.port, accounts, status_interval_s=1.0) as fleet:
        fleet.kill("sim-0007")                        # no DISCONNECT: the Will says lost
        print(fleet.counters())

Each enclosure has its own connection, client id, credentials and Will, and behaves as the
contract's agent does (``SimulatedAgent``). The connections are spread over ``loops`` selector
threads (``NetworkLoop``); one loop holds thousands of connections.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from controlsvc import __version__
from fleet_simulator.agent import DEFAULT_FPS, AgentOptions, SimulatedAgent
from fleet_simulator.counters import FleetCounters, LoopCounters
from fleet_simulator.enclosure import ConnectGate, LinkState, SimulatedEnclosure
from fleet_simulator.errors import FleetNotReady, SimulatorError, UnknownEnclosure
from fleet_simulator.loop import NetworkLoop
from schemas import (
    DEFAULT_PREFIX,
    DEFAULT_STATUS_INTERVAL_S,
    Topics,
    utc_now,
    validate_enclosure_id,
)

__all__ = ["AGENT_VERSION", "EnclosureView", "Fleet", "parse_broker_url"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

AGENT_VERSION = f"jaxmba-sim/{__version__}"
DEFAULT_KEEPALIVE_S = 5  # as the real agent: the broker notices a silent enclosure in 7.5 s
CONNECT_WINDOW = 64  # connections per loop waiting for their CONNACK at once (see ConnectGate)
START_TIMEOUT_S = 120.0  # 5,000 enclosures are ready in a few seconds on loopback
STOP_TIMEOUT_S = 15.0
CALL_TIMEOUT_S = 10.0  # a request to a loop thread (kill, revive, snapshot) answers within this
POLL_S = 0.02  # how often wait_until re-reads the counters


@dataclass(frozen=True, slots=True)
class EnclosureView:
    """A snapshot of one simulated enclosure."""

    eid: str
    state: LinkState
    boot_id: str
    seq: int
    recording_session: str | None
    frames_written: int
    desired_version: int
    status_interval_s: float
    last_error: str | None


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``host:port``) → ``(host, port)``; port defaults to 1883."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise SimulatorError(f"broker URL {url!r} must look like mqtt://host:port (no TLS)")
    return parts.hostname, parts.port or 1883


class Fleet:
    """Many simulated enclosures on one broker (see the module docstring).

    ``accounts`` maps enclosure ids to broker passwords. ``status_interval_s`` is the heartbeat
    period (the contract's default is 5 s). ``loops`` selector threads share the connections.
    """

    def __init__(
        self,
        broker_host: str,
        port: int,
        accounts: Mapping[str, str],
        *,
        prefix: str = DEFAULT_PREFIX,
        status_interval_s: float = DEFAULT_STATUS_INTERVAL_S,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
        loops: int = 1,
        connect_window: int = CONNECT_WINDOW,
        default_fps: int = DEFAULT_FPS,
        agent_version: str = AGENT_VERSION,
        clean_start: bool = True,
        tcp_nodelay: bool = True,
        seed: int | None = None,
    ) -> None:
        if status_interval_s <= 0:
            raise ValueError(f"status_interval_s must be positive, not {status_interval_s}")
        if loops < 1:
            raise ValueError(f"loops must be at least 1, not {loops}")
        for eid in accounts:
            validate_enclosure_id(eid)
        self.host = broker_host
        self.port = port
        self.topics = Topics(prefix)
        self.status_interval_s = status_interval_s
        options = AgentOptions(self.topics, agent_version, status_interval_s, default_fps)
        rng = random.Random(seed)  # noqa: S311 - spreads timings, not secrets
        self._loops = [NetworkLoop(f"sim-loop-{i}", tcp_nodelay=tcp_nodelay) for i in range(loops)]
        self._counters = [LoopCounters() for _ in range(loops)]
        gates = [ConnectGate(connect_window) for _ in range(loops)]
        self._enclosures: dict[str, SimulatedEnclosure] = {}
        for index, (eid, password) in enumerate(accounts.items()):
            i = index % loops
            agent = SimulatedAgent(eid, options, rng=random.Random(rng.random()))  # noqa: S311
            self._enclosures[eid] = SimulatedEnclosure(
                agent,
                password,
                loop=self._loops[i],
                gate=gates[i],
                counters=self._counters[i],
                host=broker_host,
                port=port,
                keepalive_s=keepalive_s,
                clean_start=clean_start,
                rng=random.Random(rng.random()),  # noqa: S311
            )
        self._started = False

    @classmethod
    def from_url(cls, url: str, accounts: Mapping[str, str], **options: object) -> Fleet:
        host, port = parse_broker_url(url)
        return cls(host, port, accounts, **options)  # type: ignore[arg-type]

    # -- what it holds ----------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return list(self._enclosures)

    def __len__(self) -> int:
        return len(self._enclosures)

    def _get(self, eid: str) -> SimulatedEnclosure:
        try:
            return self._enclosures[eid]
        except KeyError:
            raise UnknownEnclosure(f"{eid!r} is not an enclosure of this fleet") from None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT_S) -> Fleet:
        """Start the loops and connect every enclosure; with ``wait``, return once all are
        ready (raises ``FleetNotReady`` naming the others after ``timeout``)."""
        if not self._started:
            self._started = True
            for loop in self._loops:
                loop.start()
        self._each(self._enclosures.values(), SimulatedEnclosure.start)
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def wait_ready(
        self, eids: Iterable[str] | None = None, *, timeout: float = START_TIMEOUT_S
    ) -> None:
        """Wait until the enclosures (default: all) are ready; raises ``FleetNotReady``."""
        wanted = (
            [self._get(e) for e in eids] if eids is not None else list(self._enclosures.values())
        )
        deadline = time.monotonic() + timeout
        while True:
            missing = [e.eid for e in wanted if e.state is not LinkState.READY]
            if not missing:
                return
            refused = [e for e in wanted if e.state is LinkState.REFUSED]
            if refused or time.monotonic() >= deadline:
                if refused:
                    logger.error("%s: %s", refused[0].eid, refused[0].last_error)
                raise FleetNotReady(missing, len(wanted), timeout)
            time.sleep(POLL_S * 5)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Disconnect every enclosure cleanly (``state: disconnected``, then DISCONNECT), then
        stop the loops. Enclosures still connected after ``timeout`` are dropped."""
        if not self._started:
            return
        self._each(self._enclosures.values(), SimulatedEnclosure.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(e.state.settled for e in self._enclosures.values()):
                break
            time.sleep(POLL_S)
        else:
            left = [e.eid for e in self._enclosures.values() if not e.state.settled]
            logger.warning("%d enclosures did not disconnect cleanly in time: %s", len(left),
                           ", ".join(left[:10]))  # fmt: skip
        for loop in self._loops:
            loop.stop()
        for enclosure in self._enclosures.values():  # close what is left (paho would at exit)
            sock = enclosure.client.socket()
            if sock is not None:
                sock.close()
        self._started = False

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- acting on enclosures ---------------------------------------------------------------------
    def kill(self, eid: str) -> None:
        """Drop ``eid``'s connection without DISCONNECT: the broker publishes its Will (``lost``).
        It stays down until ``revive(eid)``."""
        enclosure = self._get(eid)
        self._call(enclosure.loop, enclosure.kill)

    def revive(self, eid: str) -> None:
        """Start a stopped or killed enclosure again as a new boot (new ``boot_id``)."""
        enclosure = self._get(eid)
        self._call(enclosure.loop, enclosure.revive)

    def stop_enclosure(self, eid: str) -> None:
        """Clean shutdown of one enclosure (``state: disconnected``)."""
        enclosure = self._get(eid)
        self._call(enclosure.loop, enclosure.stop)

    def publish_statuses(self, per_enclosure: int, eids: Iterable[str] | None = None) -> None:
        """Make each enclosure (default: all ready ones) publish ``per_enclosure`` statuses at
        once, back to back. Returns when they are handed to the loops; watch
        ``counters().statuses_acked`` to know when the broker has them all."""
        wanted = (
            [self._get(e) for e in eids] if eids is not None else list(self._enclosures.values())
        )
        self._each(wanted, lambda e: e.publish_statuses(per_enclosure))

    # -- observing --------------------------------------------------------------------------------
    def counters(self) -> FleetCounters:
        enclosures = list(self._enclosures.values())
        gauges = {
            "enclosures": len(enclosures),
            "connected": sum(1 for e in enclosures if e.state.connected),
            "ready": sum(1 for e in enclosures if e.state is LinkState.READY),
            "recording": sum(
                1 for e in enclosures if e.state.connected and e.agent.recording is not None
            ),
        }
        errors = sum(loop.errors for loop in self._loops)
        return FleetCounters.total(self._counters, gauges=gauges, errors=errors)

    def enclosure(self, eid: str) -> EnclosureView:
        enclosure = self._get(eid)
        return self._call(enclosure.loop, lambda: _view(enclosure))

    def wait_until(
        self, predicate: Callable[[FleetCounters], bool], *, timeout: float
    ) -> FleetCounters:
        """Poll the counters until ``predicate`` holds; raises ``TimeoutError`` with the last
        snapshot otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.counters()
            if predicate(snapshot):
                return snapshot
            if time.monotonic() >= deadline:
                raise TimeoutError(f"fleet condition not met after {timeout:g} s: {snapshot}")
            time.sleep(POLL_S)

    # -- plumbing ---------------------------------------------------------------------------------
    def _each(
        self,
        enclosures: Iterable[SimulatedEnclosure],
        action: Callable[[SimulatedEnclosure], Any],
    ) -> None:
        """Run ``action`` for each enclosure on its loop, one call per enclosure so the loops
        keep serving sockets in between."""
        for enclosure in enclosures:
            call: Callable[[], None] = functools.partial(action, enclosure)
            enclosure.loop.call_soon_threadsafe(call)

    def _call(self, loop: NetworkLoop, fn: Callable[[], T]) -> T:
        if not self._started:
            return fn()
        future: Future[T] = loop.submit(fn)
        try:
            return future.result(CALL_TIMEOUT_S)
        except FutureTimeout:
            raise SimulatorError(
                f"{loop.name} did not answer within {CALL_TIMEOUT_S:g} s"
            ) from None


def _view(enclosure: SimulatedEnclosure) -> EnclosureView:
    agent = enclosure.agent
    rec = agent.recording
    return EnclosureView(
        eid=enclosure.eid,
        state=enclosure.state,
        boot_id=agent.boot_id,
        seq=agent.seq,
        recording_session=rec.session_id if rec else None,
        frames_written=rec.frames(utc_now()) if rec else 0,
        desired_version=agent.desired_version,
        status_interval_s=agent.status_interval_s,
        last_error=enclosure.last_error,
    )
