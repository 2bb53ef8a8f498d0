"""The fleet summary an API process keeps (``service.summary_cache_s``), SQLite and PostgreSQL:
served again while only statuses moved and it is young enough, built anew at once when a state,
an edit, an alert or a session's membership changed, and compressed once."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest

from controlsvc.api import kept_bodies
from controlsvc.api.kept_bodies import KeptBodies
from controlsvc.config.settings import Settings
from controlsvc.store.db import Database
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    operator,
    state_payload,
    status_payload,
    viewer,
)
from tests.integration.test_fleet_summary_api import (
    SUMMARY,
    _session,
    as_dicts,
    ingest,
    settled_changes,
)
from tests.support.kept_bodies import (
    ManualClock,
    each_in_the_next_read,
    keeping,
    kept_until_too_old,
)

MAX_AGE_S = 1.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return keeping(settings, MAX_AGE_S)


@pytest.fixture
def clock(app) -> ManualClock:
    clock = ManualClock()
    app.extensions["jaxmba.summary_kept"].clock = clock
    return clock


@pytest.fixture
def cache(app) -> KeptBodies:
    kept: KeptBodies = app.extensions["jaxmba.summary_kept"]
    return kept


def a_status(database: Database, seq: int, offset_s: float) -> None:
    clock = {"offset_s": offset_s, "skewed": False}
    ingest(database, ("enc-a", "status", status_payload("b1", seq, clock=clock)))


def two_enclosures(database: Database) -> None:
    ingest(
        database,
        ("enc-a", "state", state_payload("ready", "b1")),
        ("enc-a", "status", status_payload("b1", 0)),
        ("enc-b", "state", state_payload("ready", "b2")),
    )


def offset_of(body: dict[str, Any]) -> float | None:
    value: float | None = as_dicts(body)["enc-a"]["clock_offset_s"]
    return value


def test_a_status_alone_is_served_from_the_kept_body_until_it_is_too_old(
    client, viewer, database, clock, cache
):
    two_enclosures(database)
    a_status(database, 1, 0.25)
    first, fresh = kept_until_too_old(
        client,
        SUMMARY,
        viewer,
        clock,
        cache,
        MAX_AGE_S,
        # Moves last_seen_at and the offset: only status figures (the kept body, as_of included,
        # stays the same).
        lambda: a_status(database, 2, 0.5),
    )
    assert offset_of(first.get_json()) == 0.25
    assert offset_of(fresh.get_json()) == 0.5


def test_what_a_user_acts_on_is_in_the_next_read(client, viewer, operator, database, clock, cache):
    two_enclosures(database)
    changes: dict[str, Callable[[], Any]] = {
        **settled_changes(client, database, operator),
        "a session starts on it": lambda: _session(database, "s-1", ["enc-a"]),
        "an enclosure appears": lambda: ingest(
            database, ("enc-c", "state", state_payload("ready", "b3"))
        ),
    }
    each_in_the_next_read(
        client, SUMMARY, viewer, clock, cache, changes, shown=lambda body: body["rows"]
    )


def test_the_kept_body_is_compressed_once(client, viewer, database, clock, cache, monkeypatch):
    ingest(
        database, *[(f"enc-{i:02d}", "state", state_payload("ready", f"b{i}")) for i in range(30)]
    )
    compressed: list[int] = []
    real_compress = gzip.compress

    def counting(data: bytes, *args: Any, **kwargs: Any) -> bytes:
        compressed.append(len(data))
        return real_compress(data, *args, **kwargs)

    monkeypatch.setattr(kept_bodies.gzip, "compress", counting)
    zipped = {**viewer, "Accept-Encoding": "gzip"}
    first = client.get(SUMMARY, headers=zipped)
    second = client.get(SUMMARY, headers=zipped)
    plain = client.get(SUMMARY, headers=viewer)
    assert first.headers["Content-Encoding"] == second.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in first.headers["Vary"]
    assert first.data == second.data
    assert int(first.headers["Content-Length"]) == len(first.data) < len(plain.data) / 3
    assert json.loads(gzip.decompress(first.data)) == plain.get_json()
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["ETag"] == first.headers["ETag"]
    assert compressed == [len(plain.data)]  # once, for both gzip reads
    assert cache.builds == 1


def test_a_zero_age_builds_every_read(app, client, viewer, database):
    app.extensions["jaxmba.summary_kept"] = kept = KeptBodies(0)
    two_enclosures(database)
    for _ in range(3):
        assert client.get(SUMMARY, headers=viewer).status_code == 200
    assert kept.builds == 3
