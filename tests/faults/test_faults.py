"""The fault suite (issue 13): the whole system as production runs it, one fault at a time.

Each case runs a fresh PostgreSQL database, a Mosquitto of its own (one account and ACL per
enclosure, as shipped), the bridge and the API (gunicorn) as separate processes, and three real
``jaxmba-agent`` processes recording the test pattern (80x60 at 10 fps, 8 s segments) through a
60 s session started over the REST API. One fault is injected 20 s into the session. Then:

- the session and every enclosure end in the state docs/reliability.md gives for the case;
- every event the agents logged as queued (``event <kind> <session> <event_id>``, logged once
  the event is in the agent's durable outbox) is stored exactly once in ``agent_events``, and
  nothing else is;
- the frames decoded from the files (PyAV) equal the frames the API reports, per enclosure, and
  the frames lost beyond the faulty part's own downtime are at most 0.5 s worth;
- no API call got a 5xx: neither the test's own nor those of a "browser" thread reading the
  session and the fleet every 0.5 s throughout, as an operator's page does;
- no process logged a traceback.

Each case's figures (detection time, events lost/duplicated, frames lost beyond downtime, run
time) are printed at the end of the run; docs/reliability.md has the table.
"""

# ruff: noqa: F811 (pytest fixtures are imported by name, then requested as parameters)

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL

from controlsvc.broker import LocalBroker
from controlsvc.store import migrate, users
from controlsvc.store.db import Database
from controlsvc.store.models.enclosures import AgentEvent
from enclosure_agent.recorder import read_sidecar, sidecar_path_for
from tests.integration.test_agent_harness import decode_times, segments
from tests.support import faketime
from tests.support.auth import PASSWORD
from tests.support.broker import default_accounts, mosquitto_factory  # noqa: F401
from tests.support.postgres import create_database, drop_database
from tests.support.relay import TcpRelay
from tests.support.stack import TRACEBACK, Agents, ServiceProcess, service_env
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.mosquitto, pytest.mark.postgres]

EIDS = ("enc-a", "enc-b", "enc-c")
FAULTY = "enc-c"  # the enclosure a per-enclosure fault hits
FPS = 10
WIDTH, HEIGHT = 80, 60  # the test pattern's smallest is 68x48
SEGMENT_S = 8
DURATION_S = 60
FAULT_AT_S = 20.0
START_DELAY_S = 3.0  # the session starts this long after it is created: every agent on time
LOST_FRAMES_ALLOWED = FPS // 2  # 0.5 s worth
END_TIMEOUT_S = 150.0  # the session must have ended this long after its end time
EVENT_LINE = re.compile(r"enclosure_agent\.agent: event (\S+) (\S*) (\S+)$")
OPERATOR = "faults@example.com"
POLL_S = 0.2  # how often the API is asked while waiting
BROWSE_INTERVAL_S = 0.5  # how often the "browser" reads the session and the fleet


# -- the API, as a client sees it -----------------------------------------------------------------


class Api:
    """HTTP calls to the API process; every answer's status is kept (no 5xx allowed)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=15)
        self.server_errors: list[str] = []
        response = self.request(
            "POST", "/api/auth/login", json={"email": OPERATOR, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 500:
            self.server_errors.append(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def json(self, path: str) -> Any:
        response = self.request("GET", path)
        return response.json() if response.status_code == 200 else None

    def session(self, sid: str) -> dict[str, Any]:
        body = self.json(f"/api/sessions/{sid}")
        assert body is not None, f"GET /api/sessions/{sid} failed"
        return body  # type: ignore[no-any-return]

    def enclosure_state(self, eid: str) -> str | None:
        body = self.json(f"/api/enclosures/{eid}")
        return body.get("state") if body else None

    def close(self) -> None:
        self.client.close()


def per_enclosure(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["enclosure_id"]: e for e in body["enclosures"]}


# -- the stack ------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one case measured (printed at the end of the run, kept in docs/reliability.md)."""

    case: str
    detection_s: float | None = None
    events_lost: int = 0
    events_duplicated: int = 0
    frames_lost_beyond_downtime: dict[str, int] = field(default_factory=dict)
    run_s: float = 0.0


FIGURES: list[Figures] = []


class Stack:
    def __init__(self, tmp_path: Path, db_url: URL, broker: LocalBroker) -> None:
        self.tmp_path = tmp_path
        self.db_url = db_url
        self.broker = broker
        self.env = service_env(
            db_url.render_as_string(hide_password=False),
            broker,
            metrics_dir=tmp_path / "metrics",
            status_interval_s=1,
        )
        self.bridges: list[ServiceProcess] = []
        self.bridge = self.start_bridge()
        # The API boots while the agents do (start_session waits for it).
        self.api_process = ServiceProcess.api(self.env, tmp_path / "api.log", wait=False)
        self.agents = Agents(
            tmp_path, broker, width=WIDTH, height=HEIGHT, fps=FPS, segment_seconds=SEGMENT_S
        )
        self.start_at = datetime.now(UTC)
        self.sid = ""
        self._clients: list[Api] = []
        self._browsing = threading.Event()
        self._browser_thread = threading.Thread(target=self._browse, name="browser", daemon=True)
        self.api: Api
        self.browser: Api

    def _browse(self) -> None:
        while not self._browsing.wait(BROWSE_INTERVAL_S):
            try:
                self.browser.request("GET", f"/api/sessions/{self.sid}")
                self.browser.request("GET", "/api/enclosures")
            except httpx.HTTPError as exc:
                self.browser.server_errors.append(f"browser: {type(exc).__name__}: {exc}")

    def stop_browsing(self) -> list[str]:
        """Stop the browser; return the 5xx (and transport errors) it saw."""
        self._browsing.set()
        if self._browser_thread.is_alive():
            self._browser_thread.join(10)
        return self.browser.server_errors if self._clients else []

    def start_bridge(self) -> ServiceProcess:
        bridge = ServiceProcess(
            ["bridge"], self.env, self.tmp_path / f"bridge-{len(self.bridges) + 1}.log"
        )
        self.bridges.append(bridge)
        return bridge

    def close(self) -> None:
        self.stop_browsing()
        for client in self._clients:
            client.close()
        self.agents.close()
        processes = [*self.bridges, self.api_process]
        for process in processes:
            process.terminate()  # all at once, then wait for each
        for process in processes:
            process.close()

    # -- the session ------------------------------------------------------------------------------
    def start_session(self) -> None:
        for eid in EIDS:
            self.agents.start(eid)
        self.api_process.wait_answering()
        self.api = Api(self.api_process.base)
        # What an operator's browser does meanwhile: read the session and the fleet, often.
        self.browser = Api(self.api_process.base)
        self._clients += [self.api, self.browser]
        wait_for(
            lambda: (
                all(self.api.enclosure_state(eid) == "idle" for eid in EIDS) or self.agents.exited()
            ),
            60,
            interval=POLL_S,
            message=lambda: f"not all idle: {[self.api.enclosure_state(e) for e in EIDS]}",
        )
        assert not self.agents.exited(), f"an agent exited: {self.agents.exited()}"
        self.start_at = datetime.now(UTC) + timedelta(seconds=START_DELAY_S)
        response = self.api.request(
            "POST",
            "/api/sessions",
            json={
                "name": "faults",
                "enclosures": [{"id": e, "file_prefix": f"cage-{e}"} for e in EIDS],
                "duration_s": DURATION_S,
                "target_fps": FPS,
                "start_at": self.start_at.isoformat(),
            },
        )
        assert response.status_code == 201, response.text
        self.sid = response.json()["id"]
        self._browser_thread.start()

    @property
    def end_at(self) -> datetime:
        return self.start_at + timedelta(seconds=DURATION_S)

    def at(self, seconds: float) -> datetime:
        """The moment ``seconds`` into the session."""
        return self.start_at + timedelta(seconds=seconds)

    def wait_until(self, moment: datetime) -> None:
        wait_for(
            lambda: datetime.now(UTC) >= moment, (moment - datetime.now(UTC)).total_seconds() + 10
        )

    def wait_recording(self, eids: tuple[str, ...] = EIDS) -> None:
        wait_for(
            lambda: all(
                per_enclosure(self.api.session(self.sid))[e]["state"] == "recording" for e in eids
            ),
            30,
            interval=POLL_S,
            message=lambda: f"not all recording: {self.states()}",
        )

    def states(self) -> dict[str, str]:
        return {e: v["state"] for e, v in per_enclosure(self.api.session(self.sid)).items()}

    def wait_end(self) -> dict[str, Any]:
        deadline = (self.end_at - datetime.now(UTC)).total_seconds() + END_TIMEOUT_S
        final = {"completed", "completed_with_failures", "canceled"}
        body: dict[str, Any] = wait_for(
            lambda: (b := self.api.session(self.sid))["status"] in final and b,
            deadline,
            interval=0.5,
            message=lambda: f"session not ended: {self.api.session(self.sid)}",
        )
        return body

    # -- the evidence -----------------------------------------------------------------------------
    def logged_events(self) -> dict[str, set[str]]:
        """Event ids each agent logged as queued in its outbox (every run of it)."""
        out: dict[str, set[str]] = {}
        for eid in EIDS:
            ids = out.setdefault(eid, set())
            for line in self.agents.log(eid).splitlines():
                match = EVENT_LINE.search(line)
                if match:
                    ids.add(match.group(3))
        return out

    def stored_events(self) -> dict[str, list[str]]:
        db = Database(self.db_url)
        try:
            with db.sessionmaker() as session:
                rows = session.execute(select(AgentEvent.enclosure_id, AgentEvent.event_id)).all()
        finally:
            db.dispose()
        out: dict[str, list[str]] = {eid: [] for eid in EIDS}
        for eid, event_id in rows:
            out.setdefault(eid, []).append(event_id)
        return out

    def frame_times(self, eid: str) -> list[datetime]:
        """Capture times of every frame decoded from the enclosure's files (from the sidecars,
        as many rows as each file decodes to)."""
        times: list[datetime] = []
        for path in segments(self.agents.roots[eid], self.sid):
            decoded = len(decode_times(path))
            rows = read_sidecar(sidecar_path_for(path))
            assert len(rows) >= decoded, f"{path}: {decoded} frames, {len(rows)} sidecar rows"
            times.extend(row.capture_utc for row in rows[:decoded])
        return sorted(times)

    def logs(self) -> dict[str, str]:
        out = {f"agent {eid}": self.agents.log(eid) for eid in EIDS}
        out.update({b.log_file.name: b.log() for b in self.bridges})
        out["api"] = self.api_process.log()
        return out


@pytest.fixture
def fault_db(pg_server: URL) -> Iterator[URL]:
    """A fresh, migrated PostgreSQL database for one case, dropped after it."""
    url = create_database(pg_server, prefix="jaxmba_faults")
    try:
        migrate.upgrade(migrate.alembic_config(url.render_as_string(hide_password=False)))
        db = Database(url)
        try:
            with db.session() as session:
                users.create_user(session, email=OPERATOR, password=PASSWORD, role="operator")
        finally:
            db.dispose()
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def broker(mosquitto_factory) -> LocalBroker:
    return mosquitto_factory(default_accounts(EIDS))


@pytest.fixture
def stack(tmp_path: Path, fault_db: URL, broker: LocalBroker) -> Iterator[Stack]:
    made = Stack(tmp_path, fault_db, broker)
    try:
        yield made
    finally:
        made.close()


# -- the checks every case makes ------------------------------------------------------------------


def check(
    stack: Stack,
    figures: Figures,
    *,
    session_status: str = "completed",
    states: dict[str, str] | None = None,
    downtime: Callable[[str, list[datetime]], float] = lambda eid, times: 0.0,
) -> dict[str, Any]:
    """The session's end, events exactly once, frames, no 5xx, no traceback."""
    done = stack.wait_end()
    # The evidence is complete once every agent's outbox has drained into the database.
    logged = stack.logged_events()
    wait_for(
        lambda: all(logged[e] <= set(stack.stored_events()[e]) for e in EIDS),
        30,
        interval=0.5,
        message=lambda: (
            f"events not stored: { {e: logged[e] - set(stack.stored_events()[e]) for e in EIDS} }"
        ),
    )
    logged = stack.logged_events()
    stored = stack.stored_events()
    figures.events_lost = sum(len(logged[e] - set(stored[e])) for e in EIDS)
    figures.events_duplicated = sum(len(stored[e]) - len(set(stored[e])) for e in EIDS)
    done = stack.api.session(stack.sid)
    encs = per_enclosure(done)
    expected_states = {eid: "completed" for eid in EIDS} | (states or {})
    problems: list[str] = []
    if done["status"] != session_status:
        problems.append(f"session {done['status']}, expected {session_status}")
    for eid in EIDS:
        if encs[eid]["state"] != expected_states[eid]:
            problems.append(
                f"{eid} {encs[eid]['state']} ({encs[eid].get('message')}), "
                f"expected {expected_states[eid]}"
            )
        extra = set(stored[eid]) - logged[eid]
        if logged[eid] != set(stored[eid]) or len(stored[eid]) != len(set(stored[eid])):
            problems.append(
                f"{eid} events: {len(logged[eid] - set(stored[eid]))} lost, {len(extra)} stored "
                f"but never queued, {len(stored[eid]) - len(set(stored[eid]))} duplicated"
            )
        times = stack.frame_times(eid)
        if encs[eid]["frames"] != len(times):
            problems.append(
                f"{eid}: the API reports {encs[eid]['frames']} frames, the files hold {len(times)}"
            )
        lost = FPS * DURATION_S - len(times) - round(FPS * downtime(eid, times))
        figures.frames_lost_beyond_downtime[eid] = lost
        if lost > LOST_FRAMES_ALLOWED:
            problems.append(
                f"{eid}: {lost} frames lost beyond the downtime (≤ {LOST_FRAMES_ALLOWED})"
            )
    problems.extend(stack.api.server_errors)
    problems.extend(stack.stop_browsing())
    problems.extend(
        f"traceback in the {name} log:\n{text[text.index(TRACEBACK) :][:3000]}"
        for name, text in stack.logs().items()
        if TRACEBACK in text
    )
    assert not problems, "\n".join(problems)
    return done


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    started = time.monotonic()
    made = Figures(request.node.name.removeprefix("test_"))
    yield made
    made.run_s = round(time.monotonic() - started, 1)
    FIGURES.append(made)


def detect(predicate: Callable[[], Any], since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` (monotonic) until ``predicate`` holds."""
    wait_for(predicate, timeout, interval=POLL_S, message="the fault never showed in the API")
    return round(time.monotonic() - since, 1)


# -- the cases ------------------------------------------------------------------------------------


def test_agent_killed(stack: Stack, figures: Figures) -> None:
    """kill -9 of one agent, restarted 10 s later: it resumes the session, the gap is reported."""
    stack.start_session()
    stack.wait_recording()
    stack.wait_until(stack.at(FAULT_AT_S))
    stack.agents.kill(FAULTY)
    killed_at, since = datetime.now(UTC), time.monotonic()
    figures.detection_s = detect(lambda: stack.api.enclosure_state(FAULTY) == "lost", since)
    wait_for(lambda: time.monotonic() >= since + 10, 20)
    stack.agents.start(FAULTY)

    def downtime(eid: str, times: list[datetime]) -> float:
        if eid != FAULTY:
            return 0.0
        first_after = min(t for t in times if t > killed_at)
        return (first_after - killed_at).total_seconds()

    done = check(stack, figures, downtime=downtime)
    gaps = per_enclosure(done)[FAULTY]["gaps"]
    assert any(g["cause"] == "agent_restart" for g in gaps), gaps


def health(stack: Stack, part: str) -> bool:
    """Whether ``/api/health`` says ``part`` (broker, bridge, database) is ok."""
    return bool((stack.api.json("/api/health") or {}).get(part, {}).get("ok", True))


def test_bridge_killed(stack: Stack, figures: Figures) -> None:
    """kill -9 of the bridge, restarted once ``/api/health`` shows it down: the new bridge
    catches up from the database and the broker."""
    stack.start_session()
    stack.wait_recording()
    stack.wait_until(stack.at(FAULT_AT_S))
    assert health(stack, "bridge"), "the bridge is not up before the fault"
    stack.bridge.kill()
    since = time.monotonic()
    figures.detection_s = detect(lambda: not health(stack, "bridge"), since)
    stack.bridge = stack.start_bridge()
    wait_for(lambda: health(stack, "bridge"), 60, interval=POLL_S, message="bridge not back")
    check(stack, figures)


def test_broker_killed_and_restarted(stack: Stack, figures: Figures) -> None:
    """kill -9 of Mosquitto, started again at once (its persistence file kept)."""
    stack.start_session()
    stack.wait_recording()
    stack.wait_until(stack.at(FAULT_AT_S))
    stack.broker.kill()
    stack.broker.start()
    check(stack, figures)


def test_broker_down_60_s(stack: Stack, figures: Figures) -> None:
    """Mosquitto killed for 60 s, past the session's end: the agents record on and deliver
    everything when it is back."""
    stack.start_session()
    stack.wait_recording()
    stack.wait_until(stack.at(FAULT_AT_S))
    stack.broker.kill()
    since = time.monotonic()
    figures.detection_s = detect(lambda: not health(stack, "broker"), since)
    wait_for(lambda: time.monotonic() >= since + 60, 80)
    stack.broker.start()
    check(stack, figures)


def test_database_connections_terminated_twice(stack: Stack, figures: Figures) -> None:
    """Every connection to the database terminated (pg_terminate_backend), twice, 10 s apart."""
    stack.start_session()
    stack.wait_recording()
    server = create_engine(stack.db_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        for moment in (FAULT_AT_S, FAULT_AT_S + 10):
            stack.wait_until(stack.at(moment))
            with server.connect() as conn:
                terminated = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": stack.db_url.database},
                ).scalar_one()
            assert terminated > 0, "no connection to terminate: the test proves nothing"
    finally:
        server.dispose()
    check(stack, figures)


@pytest.fixture
def small_disk(stack: Stack) -> Iterator[Path]:
    """A 4 MiB tmpfs as the faulty enclosure's recordings volume."""
    root = stack.tmp_path / f"rec-{FAULTY}"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        stack.agents.close()
        subprocess.run(["umount", "-l", str(root)], check=False)


def fill(directory: Path) -> None:
    """Write a file until the volume is full."""
    with (directory / "filler").open("wb") as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()


def test_recordings_disk_fills(stack: Stack, figures: Figures, small_disk: Path) -> None:
    """The faulty enclosure's recordings volume fills up: it fails with the reason, its files
    up to the fill are intact and reported, the others complete."""
    stack.start_session()
    stack.wait_recording()
    stack.wait_until(stack.at(FAULT_AT_S))
    fill(small_disk)
    filled_at, since = datetime.now(UTC), time.monotonic()
    figures.detection_s = detect(
        lambda: per_enclosure(stack.api.session(stack.sid))[FAULTY]["state"] == "failed", since
    )

    def downtime(eid: str, times: list[datetime]) -> float:
        return (stack.end_at - filled_at).total_seconds() if eid == FAULTY else 0.0

    check(
        stack,
        figures,
        session_status="completed_with_failures",
        states={FAULTY: "failed"},
        downtime=downtime,
    )


@pytest.mark.skipif(faketime.LIBFAKETIME is None, reason=faketime.MISSING)
def test_agent_clock_10_min_ahead(stack: Stack, figures: Figures) -> None:
    """One agent runs 10 min ahead (libfaketime; its wall clock only, as a wrong clock is): it
    still records the whole session, and the service alerts on the skew, naming the enclosure.
    Detection: from the enclosure's first state change the service stored (it came online)
    to the alert's ``raised_at``, both the service's clock."""
    stack.agents.env[FAULTY] = faketime.shifted_clock(600)
    stack.start_session()
    check(stack, figures)
    alerts = stack.api.json(f"/api/alerts?enclosure_id={FAULTY}") or {"items": []}
    skew = [a for a in alerts["items"] if a["kind"] == "clock_skew"]
    assert len(skew) == 1, f"expected one clock_skew alert for {FAULTY}: {alerts}"
    said = re.search(rf"The clock of {FAULTY} is ([0-9.]+) s ahead", skew[0]["message"])
    assert said is not None, skew
    assert 590 <= float(said.group(1)) <= 610, skew
    transitions = stack.api.json(f"/api/enclosures/{FAULTY}/transitions?limit=100")
    assert transitions is not None
    online = min(datetime.fromisoformat(t["at"]) for t in transitions["items"])
    raised = datetime.fromisoformat(skew[0]["raised_at"])
    figures.detection_s = round((raised - online).total_seconds(), 1)


def test_agent_network_cut_30_s(stack: Stack, figures: Figures, broker: LocalBroker) -> None:
    """The faulty agent's network silently drops everything for 30 s (a relay that stops
    forwarding without closing a socket): it goes lost, records on, and delivers on return."""
    with TcpRelay(broker.host, broker.port) as relay:
        password = broker.accounts[FAULTY]
        stack.agents.overrides[FAULTY] = {
            "broker": {"url": f"mqtt://{FAULTY}:{password}@127.0.0.1:{relay.port}"}
        }
        stack.start_session()
        stack.wait_recording()
        stack.wait_until(stack.at(FAULT_AT_S))
        relay.cut()
        since = time.monotonic()
        figures.detection_s = detect(lambda: stack.api.enclosure_state(FAULTY) == "lost", since)
        wait_for(lambda: time.monotonic() >= since + 30, 40)
        relay.restore()
        check(stack, figures)
