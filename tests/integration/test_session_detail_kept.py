"""A session's detail an API process keeps (``service.summary_cache_s``), SQLite and PostgreSQL:
served again while only the figures statuses move have changed and it is young enough, built
anew at once when anything a user acts on or waits for changed; 304 on its cheap validator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from controlsvc.api.kept_bodies import KeptBodies
from controlsvc.config.settings import Settings
from controlsvc.store.db import Database, utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure, SessionGap
from tests.integration.bridge_fixtures import (  # noqa: F401 (fixtures)
    operator,
    state_payload,
    viewer,
)
from tests.integration.test_fleet_summary_api import ingest
from tests.support.kept_bodies import (
    ManualClock,
    each_in_the_next_read,
    keeping,
    kept_until_too_old,
)
from tests.support.sessions import add_session

MAX_AGE_S = 1.0
DETAIL = "/api/sessions/s-1"
KEPT = "jaxmba.session_details_kept"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return keeping(settings, MAX_AGE_S)


@pytest.fixture
def clock(app) -> ManualClock:
    clock = ManualClock()
    app.extensions[KEPT].clock = clock
    return clock


@pytest.fixture
def kept(app) -> KeptBodies:
    bodies: KeptBodies = app.extensions[KEPT]
    return bodies


@pytest.fixture
def recording(database: Database) -> None:
    """Session ``s-1`` recording on enc-a and enc-b."""
    ingest(
        database,
        ("enc-a", "state", state_payload("ready", "b1")),
        ("enc-b", "state", state_payload("ready", "b2")),
    )
    with database.session() as session:
        add_session(session, "s-1", {"enc-a": "recording", "enc-b": "recording"}, start=utcnow())
        session.commit()


def _part(database: Database, eid: str, **values: Any) -> None:
    with database.session() as session:
        session.execute(
            update(SessionEnclosure)
            .where(SessionEnclosure.session_id == "s-1", SessionEnclosure.enclosure_id == eid)
            .values(**values)
        )
        session.commit()


def _live_figures(database: Database, n: int) -> None:
    """What the session driver writes from each status: the open file's seconds and frames."""
    _part(
        database,
        "enc-a",
        live_s=1.5 * n,
        live_frames=45 * n,
        last_frame_at=utcnow(),
    )


@pytest.mark.usefixtures("recording")
def test_live_figures_are_served_from_the_kept_body_until_it_is_too_old(
    client, viewer, database, clock, kept
):
    _live_figures(database, 1)
    _first, fresh = kept_until_too_old(
        client, DETAIL, viewer, clock, kept, MAX_AGE_S, lambda: _live_figures(database, 2)
    )
    enc_a = next(e for e in fresh.get_json()["enclosures"] if e["enclosure_id"] == "enc-a")
    assert enc_a["progress"]["frames"] == 90


@pytest.mark.usefixtures("recording")
def test_an_unchanged_detail_is_304_on_its_validator_without_being_built(
    client, viewer, database, kept
):
    first = client.get(DETAIL, headers=viewer)
    kept.clear()  # as when another process built it: only the validator is compared
    named = client.get(DETAIL, headers={**viewer, "If-None-Match": first.headers["ETag"]})
    assert named.status_code == 304
    assert kept.builds == 1
    _live_figures(database, 1)  # a status moves it: no longer the same
    moved = client.get(DETAIL, headers={**viewer, "If-None-Match": first.headers["ETag"]})
    assert moved.status_code == 200
    assert kept.builds == 2


def _ok(response: Any) -> None:
    assert response.status_code == 200, response.get_json()


def _settled_changes(client, database: Database, operator) -> dict[str, Callable[[], Any]]:
    def later() -> Any:
        return utcnow() + timedelta(milliseconds=1)

    def gap() -> None:
        with database.session() as session:
            at = later()
            session.add(
                SessionGap(
                    session_id="s-1",
                    enclosure_id="enc-b",
                    event_id="ev-gap",
                    cause="agent_restart",
                    started_at=at - timedelta(seconds=5),
                    ended_at=at,
                    gap_s=5.0,
                )
            )
            session.commit()
        _part(database, "enc-b", gaps=1, gap_s=5.0)

    def enclosure_lost() -> None:
        with database.session() as session:
            session.execute(
                update(Enclosure)
                .where(Enclosure.id == "enc-b")
                .values(state="lost", state_changed_at=later())
            )
            session.commit()

    def session_notes() -> None:
        with database.session() as session:
            session.execute(
                update(RecordingSession)
                .where(RecordingSession.id == "s-1")
                .values(notes="moved to rack B")
            )
            session.commit()

    return {
        "a segment closed": lambda: _part(
            database, "enc-a", segments=1, frames=1800, bytes=10**6, segments_s=60.0
        ),
        "a gap": gap,
        "the enclosure lost": enclosure_lost,
        "the bridge records the loss": lambda: _part(database, "enc-b", lost_since=later()),
        "a state with its message": lambda: _part(
            database, "enc-b", state="failed", message="camera gone", state_changed_at=later()
        ),
        "an enclosure renamed": lambda: _ok(
            client.patch("/api/enclosures/enc-a", json={"name": "Rack A/1"}, headers=operator)
        ),
        "the session's own fields": session_notes,
        "the session canceled": lambda: _ok(
            client.post("/api/sessions/s-1/cancel", headers=operator)
        ),
    }


@pytest.mark.usefixtures("recording")
def test_what_a_user_acts_on_is_in_the_next_read(client, viewer, operator, database, clock, kept):
    changes = _settled_changes(client, database, operator)
    each_in_the_next_read(client, DETAIL, viewer, clock, kept, changes)
