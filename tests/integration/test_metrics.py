"""GET /metrics: who may scrape, what it shows, and that every process's metrics are merged."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.engine import URL

from controlsvc import metrics
from controlsvc.api import tokens
from controlsvc.config.sections import SecretsSettings
from controlsvc.config.settings import Settings
from controlsvc.store import users
from controlsvc.store.db import Database, utcnow
from controlsvc.store.models.enclosures import Enclosure
from tests.conftest import TEST_SECRET
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
SCRAPE_TOKEN = "scrape-" + "s" * 40
# gunicorn with two workers is up within a few seconds on a loaded CI machine.
SERVER_START_TIMEOUT_S = 30.0
# A port found free can be taken by another process before gunicorn binds it.
PORT_RETRIES = 3

# What `run` does before starting gunicorn (controlsvc.ops.runner), with the hooks this feature
# needs.
SERVE = """
import sys
from controlsvc.api import event_feed
from controlsvc import metrics
from controlsvc.config.settings import load_settings
from controlsvc.ops.runner import _Gunicorn, gunicorn_options
settings = load_settings(profile="test")
metrics.setup_process(settings)
options = gunicorn_options(settings, "127.0.0.1", int(sys.argv[1]), int(sys.argv[2]))
options.update(
    post_worker_init=event_feed.gunicorn_post_worker_init,
    child_exit=metrics.gunicorn_child_exit,
    accesslog=None,
    loglevel="warning",
)
_Gunicorn(settings, options).run()
"""
# A stand-in for the bridge process: counts, then waits until its stdin closes.
BRIDGE = """
import sys
from controlsvc import metrics
metrics.setup_multiprocess(sys.argv[1])
metrics.export_bridge_stats({
    "received": {"status": 5, "ack": 1},
    "invalid": {"schema": 2},
    "commands_settled": {"succeeded": 1},
    "batches": 1,
    "batch_seconds_total": 0.004,
    "last_batch_seconds": 0.004,
    "queue_depth": 3,
    "connected": True,
})
print("ready", flush=True)
sys.stdin.read()
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def scrape_settings(settings: Settings) -> Settings:
    secrets = SecretsSettings(
        secret_key=SecretStr(TEST_SECRET),
        jwt_secret_key=SecretStr(TEST_SECRET),
        metrics_token=SecretStr(SCRAPE_TOKEN),
    )
    return settings.model_copy(update={"secrets": secrets})


@pytest.fixture
def scrape_app(scrape_settings: Settings, database: Database) -> Flask:
    from controlsvc.ops.app import create_app

    return create_app(scrape_settings, database=database)


def _bearer(app: Flask, database: Database, role: str) -> dict[str, str]:
    with database.session() as session:
        user = users.create_user(
            session, email=f"{role}@example.org", password="a long enough password", role=role
        )
    with app.app_context():
        return {"Authorization": f"Bearer {tokens.issue_tokens(user).access_token}"}


def test_scraping_needs_admin_operator_or_the_scrape_token(scrape_app, database):
    client = scrape_app.test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.mimetype == "application/problem+json"
    assert (
        client.get("/metrics", headers=_bearer(scrape_app, database, "viewer")).status_code == 403
    )
    for role in ("operator", "admin"):
        ok = client.get("/metrics", headers=_bearer(scrape_app, database, role))
        assert ok.status_code == 200
        assert ok.content_type.startswith("text/plain; version=")
    by_token = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert by_token.status_code == 200
    assert "jaxmba_mqtt_messages" in by_token.text


def test_without_a_scrape_token_only_tokens_work(app, database):
    client = app.test_client()
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics", headers=_bearer(app, database, "admin")).status_code == 200


def test_enclosures_by_state_are_counted_at_scrape_time(scrape_app, database):
    scrape = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    client = scrape_app.test_client()
    text = client.get("/metrics", headers=scrape).text
    assert _value(text, "jaxmba_enclosures", state="idle") == 0.0
    with database.session() as session:
        for eid, state in [("enc-1", "idle"), ("enc-2", "idle"), ("enc-3", "lost")]:
            session.add(Enclosure(id=eid, name=eid, state=state))
        session.add(Enclosure(id="enc-4", name="old", state="idle", retired_at=utcnow()))
    text = client.get("/metrics", headers=scrape).text
    assert _value(text, "jaxmba_enclosures", state="idle") == 2.0
    assert _value(text, "jaxmba_enclosures", state="lost") == 1.0
    assert _value(text, "jaxmba_enclosures", state="recording") == 0.0


def test_http_requests_are_counted_by_route_template(scrape_app):
    client = scrape_app.test_client()
    scrape = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    labels = {"method": "GET", "route": "/api/health", "status": "200"}
    before = _value(
        client.get("/metrics", headers=scrape).text, "jaxmba_http_requests_total", **labels
    )
    client.get("/api/health")
    client.get("/api/no/such/thing/42")
    text = client.get("/metrics", headers=scrape).text
    assert _value(text, "jaxmba_http_requests_total", **labels) == (before or 0) + 1
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert (_value(text, "jaxmba_http_requests_total", **unmatched) or 0) >= 1
    assert "/api/no/such/thing/42" not in text  # raw paths never become labels


def _run_bridge(directory: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BRIDGE, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin:
        proc.stdin.close()
    if proc.stdout:
        proc.stdout.close()
    proc.wait(10)


def test_metrics_of_another_process_are_shown(scrape_app, tmp_path, monkeypatch):
    bridge = _run_bridge(tmp_path)
    try:
        monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
        client = scrape_app.test_client()
        text = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text
        assert _value(text, "jaxmba_mqtt_messages_total", kind="status") == 5.0
        assert _value(text, "jaxmba_mqtt_invalid_messages_total", reason="schema") == 2.0
        assert _value(text, "jaxmba_bridge_batch_write_seconds_count") == 1.0
        assert _value(text, "jaxmba_bridge_queue_depth") == 3.0
        assert _value(text, "jaxmba_commands_settled_total", result="succeeded") == 1.0
    finally:
        _stop(bridge)
    # the bridge has exited: its queue depth goes (livesum), its counters stay until restart
    metrics.process_exited(bridge.pid)
    text = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text
    assert _value(text, "jaxmba_bridge_queue_depth") is None
    assert _value(text, "jaxmba_mqtt_messages_total", kind="status") == 5.0
    assert metrics.remove_stale_files(tmp_path) > 0
    text = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text
    assert _value(text, "jaxmba_mqtt_messages_total", kind="status") is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    db_url: URL, directory: Path, *, workers: int = 2, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The API under gunicorn as `run` starts it, answering on the returned URL."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JAXMBA_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "JAXMBA_SECRETS_SECRET_KEY": TEST_SECRET,
        "JAXMBA_SECRETS_JWT_SECRET_KEY": TEST_SECRET,
        "JAXMBA_SERVICE_METRICS_DIR": str(directory / "metrics"),
        "JAXMBA_SERVICE_THREADS": "16",
        "JAXMBA_MQTT_PORT": str(_free_port()),  # no broker unless the caller gives one
        **(env or {}),
    }
    for _attempt in range(PORT_RETRIES):
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(port), str(workers)], env=full_env, cwd=directory
        )
        url = f"http://127.0.0.1:{port}"

        def up(proc: subprocess.Popen[bytes] = proc, url: str = url) -> bool:
            if proc.poll() is not None:
                return True  # exited: the port was taken meanwhile, or a real failure
            try:
                return httpx.get(f"{url}/api/health", timeout=1).status_code in (200, 503)
            except httpx.TransportError:
                return False

        try:
            wait_for(up, timeout=SERVER_START_TIMEOUT_S, interval=0.1)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.poll() is None:
            return proc, url
    raise AssertionError(
        f"gunicorn did not start in {PORT_RETRIES} attempts (exit {proc.returncode})"
    )


@pytest.fixture
def gunicorn_api(db_url: URL, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The API under gunicorn (two gthread workers) with multiprocess metrics in tmp_path."""
    proc, url = start_gunicorn(db_url, tmp_path, env={"JAXMBA_SECRETS_METRICS_TOKEN": SCRAPE_TOKEN})
    try:
        yield url, tmp_path / "metrics"
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_any_gunicorn_worker_shows_the_bridge_and_all_workers(gunicorn_api):
    url, metrics_dir = gunicorn_api
    bridge = _run_bridge(metrics_dir)
    try:
        scrape = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        labels = {"method": "GET", "route": "/api/health", "status": "200"}
        health_before = 0.0
        for _ in range(10):  # a new connection each time: both workers answer some
            text = httpx.get(f"{url}/metrics", headers=scrape, timeout=5).text
            assert _value(text, "jaxmba_mqtt_messages_total", kind="status") == 5.0
            assert _value(text, "jaxmba_bridge_queue_depth") == 3.0
            health_before = _value(text, "jaxmba_http_requests_total", **labels) or 0.0
        for _ in range(20):
            httpx.get(f"{url}/api/health", timeout=5)
        text = httpx.get(f"{url}/metrics", headers=scrape, timeout=5).text
        # every worker's requests are in the sum, whichever worker answers the scrape
        assert _value(text, "jaxmba_http_requests_total", **labels) == health_before + 20
        writers = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
        assert str(bridge.pid) in writers
        assert len(writers) >= 2  # the bridge and the worker(s) that answered, one file each
    finally:
        _stop(bridge)


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_bridge_stats_are_exported_as_deltas():
    exporter = metrics.StatsExporter()
    before = {
        "status": _sample("jaxmba_mqtt_messages_total", kind="status"),
        "schema": _sample("jaxmba_mqtt_invalid_messages_total", reason="schema"),
        "duplicate": _sample("jaxmba_mqtt_ignored_messages_total", reason="duplicate"),
        "settled": _sample("jaxmba_commands_settled_total", result="timed_out"),
        "batches": _sample("jaxmba_bridge_batch_write_seconds_count"),
        "fast": _sample("jaxmba_bridge_batch_write_seconds_bucket", le="0.005"),
        "retries": _sample("jaxmba_bridge_batch_retries_total"),
    }
    snapshot = {
        "received": {"status": 10},
        "invalid": {"schema": 2},
        "ignored": {"duplicate": 1},
        "written": {"status": 9},
        "commands_settled": {"timed_out": 1},
        "transitions": {"lost": 1},
        "batches": 1,
        "batch_seconds_total": 0.002,
        "last_batch_seconds": 0.002,
        "batch_retries": 0,
        "database_errors": 0,
        "queue_depth": 4,
        "connected": True,
        "connects": 1,
    }
    exporter.export(snapshot)
    exporter.export(snapshot)  # nothing new: nothing added
    assert _sample("jaxmba_mqtt_messages_total", kind="status") == before["status"] + 10
    assert _sample("jaxmba_mqtt_invalid_messages_total", reason="schema") == before["schema"] + 2
    assert (
        _sample("jaxmba_mqtt_ignored_messages_total", reason="duplicate") == before["duplicate"] + 1
    )
    assert _sample("jaxmba_commands_settled_total", result="timed_out") == before["settled"] + 1
    assert _sample("jaxmba_bridge_batch_write_seconds_count") == before["batches"] + 1
    assert _sample("jaxmba_bridge_batch_write_seconds_bucket", le="0.005") == before["fast"] + 1
    assert _sample("jaxmba_bridge_queue_depth") == 4
    assert _sample("jaxmba_bridges_connected") == 1

    later = {
        **snapshot,
        "received": {"status": 15, "ack": 1},
        "batches": 4,
        "batch_seconds_total": 0.302,
        "last_batch_seconds": 0.2,
        "batch_retries": 1,
        "queue_depth": 0,
        "connected": False,
    }
    exporter.export(later)
    assert _sample("jaxmba_mqtt_messages_total", kind="status") == before["status"] + 15
    assert _sample("jaxmba_bridge_batch_write_seconds_count") == before["batches"] + 4
    assert _sample("jaxmba_bridge_batch_retries_total") == before["retries"] + 1
    assert _sample("jaxmba_bridge_queue_depth") == 0
    assert _sample("jaxmba_bridges_connected") == 0
    # a new Bridge in the same process starts its counters at zero again
    exporter.export({"received": {"status": 2}, "batches": 0})
    assert _sample("jaxmba_mqtt_messages_total", kind="status") == before["status"] + 17
