"""A session's detail as the API serves it (``session_views.session_json``) is exactly what
``SessionOut`` dumps, on both databases: the document is serialised without a model, so these
tests are what holds it to the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from controlsvc.store import enclosure_rows, session_views
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import RecordingSession, SessionEnclosure, SessionGap
from schemas.rest.sessions import SessionOut
from tests.support.sessions import add_session

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
GRACE_S = 600.0


def _furnished(database) -> None:
    """One session with an enclosure in every situation the detail distinguishes."""
    parts = {
        "enc-rec": "recording",  # live, with a gap and a fraction of a second
        "enc-lost": "recording",  # the enclosure is lost: lost, since and fails_at
        "enc-lost-recorded": "recording",  # the bridge has recorded since when
        "enc-done": "completed",  # evidence only
        "enc-pending": None,  # the model's default
        "enc-failed": "failed",  # with a message
    }
    with database.sessionmaker() as s:
        enclosure_rows.lock_rows(s, sorted(parts), now=T0)
        add_session(s, "s1", parts, start=T0, name="Detail")
        s.execute(
            update(Enclosure)
            .where(Enclosure.id.in_(["enc-lost", "enc-lost-recorded"]))
            .values(state="lost", state_changed_at=T0 + timedelta(minutes=3))
        )
        s.execute(update(Enclosure).where(Enclosure.id == "enc-rec").values(name="Rack A/1"))
        figures = {
            "segments": 2,
            "frames": 3600,
            "bytes": 123_456_789,
            "segments_s": 120.125,
            "live_s": 7.3333333,
            "live_frames": 220,
            "last_frame_at": T0 + timedelta(minutes=2, microseconds=250),
        }
        s.execute(
            update(SessionEnclosure)
            .where(SessionEnclosure.enclosure_id.in_(["enc-rec", "enc-done", "enc-lost"]))
            .values(**figures, state_changed_at=T0, confirmed_at=T0 + timedelta(seconds=1))
        )
        s.execute(
            update(SessionEnclosure)
            .where(SessionEnclosure.enclosure_id == "enc-rec")
            .values(gap_s=12.3456, gaps=1)
        )
        s.execute(
            update(SessionEnclosure)
            .where(SessionEnclosure.enclosure_id == "enc-lost-recorded")
            .values(lost_since=T0 + timedelta(minutes=1))
        )
        s.execute(
            update(SessionEnclosure)
            .where(SessionEnclosure.enclosure_id == "enc-failed")
            .values(message="camera not found", state_changed_at=T0)
        )
        s.add(
            SessionGap(
                session_id="s1",
                enclosure_id="enc-rec",
                event_id="ev-1",
                cause="agent_restart",
                started_at=T0 + timedelta(seconds=30),
                ended_at=T0 + timedelta(seconds=42, microseconds=345600),
                gap_s=12.3456,
            )
        )
        s.execute(
            update(RecordingSession)
            .where(RecordingSession.id == "s1")
            .values(started_at=T0, notes="two racks", target_fps=30)
        )
        s.commit()


def test_the_served_detail_is_what_the_model_dumps(database):
    _furnished(database)
    with database.sessionmaker() as s:
        rs = session_views.get_session(s, "s1")
        served = session_views.session_json(s, rs, lost_grace_s=GRACE_S)
        document = session_views.session_document(s, rs, lost_grace_s=GRACE_S)
    as_model = SessionOut.model_validate(document)
    assert served == as_model.model_dump_json().encode()
    # And the figures are the ones every page shows.
    by_id = {e.enclosure_id: e for e in as_model.enclosures}
    assert by_id["enc-rec"].progress.basis == "live"
    assert by_id["enc-rec"].progress.recorded_s == 127.458
    assert by_id["enc-rec"].progress.frames == 3820
    assert by_id["enc-rec"].enclosure_name == "Rack A/1"
    assert [g.gap_s for g in by_id["enc-rec"].gaps] == [12.3456]
    assert by_id["enc-done"].progress.basis == "evidence"
    assert by_id["enc-done"].progress.frames == 3600
    assert by_id["enc-lost"].lost
    assert by_id["enc-lost"].lost_since == T0 + timedelta(minutes=3)
    assert by_id["enc-lost"].fails_at == T0 + timedelta(minutes=3, seconds=GRACE_S)
    assert by_id["enc-lost-recorded"].lost_since == T0 + timedelta(minutes=1)
    assert not by_id["enc-done"].lost
    assert by_id["enc-done"].fails_at is None
    assert by_id["enc-failed"].message == "camera not found"
    assert by_id["enc-pending"].state == "pending"
    assert as_model.enclosure_states == {
        "recording": 3,
        "completed": 1,
        "pending": 1,
        "failed": 1,
    }
    assert as_model.totals.frames == 3820 + 3600 + 3820
    assert as_model.totals.gap_s == 12.346
