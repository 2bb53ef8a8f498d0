"""The bridge's working copies of sessions' enclosure rows (``store.session_enclosure_rows``) on
both databases: read locked, only what changed written back, ORM copies kept truthful."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, select

from controlsvc.bridge import session_events
from controlsvc.store import enclosure_rows, session_enclosure_rows
from controlsvc.store.models.sessions import (
    SessionEnclosure,
    SessionEnclosureRow,
)
from schemas.events import CameraRecovered, Event, RecordingStarted
from tests.support.sessions import add_session

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def _sessions(database, layout: dict[str, dict[str, str]]) -> None:
    """Sessions (id -> {enclosure id: state}) starting at ``T0``."""
    with database.sessionmaker() as s:
        eids = sorted({eid for parts in layout.values() for eid in parts})
        enclosure_rows.lock_rows(s, eids, now=T0)
        for n, (sid, parts) in enumerate(layout.items()):
            add_session(s, sid, parts, start=T0 + timedelta(minutes=n))
        s.commit()


def test_the_working_copy_has_the_columns_of_the_model():
    columns = SessionEnclosure.__table__.c
    names = [f.name for f in fields(SessionEnclosureRow) if f.name != "loaded"]
    assert names == list(columns.keys())
    for f in fields(SessionEnclosureRow):
        if f.name != "loaded":
            assert columns[f.name].nullable == ("None" in str(f.type)), f.name
    # What places the row is never written by an event.
    assert not {"id", "session_id", "enclosure_id", "file_prefix"} & set(
        session_enclosure_rows.WRITTEN
    )


def test_only_the_pairs_asked_for_are_given(database):
    _sessions(
        database, {"s1": {"enc-a": "recording", "enc-b": "pending"}, "s2": {"enc-a": "pending"}}
    )
    with database.sessionmaker() as s:
        rows = session_enclosure_rows.lock_pairs(s, [("s1", "enc-a"), ("s2", "enc-a"), ("s3", "x")])
        assert session_enclosure_rows.lock_pairs(s, []) == {}
        s.commit()
    assert sorted(rows) == [("s1", "enc-a"), ("s2", "enc-a")]
    assert rows[("s1", "enc-a")].state == "recording"
    assert rows[("s1", "enc-a")].file_prefix == "m-enc-a"


def test_the_active_part_is_the_newest_one_in_an_active_state(database):
    _sessions(
        database,
        {
            "s1": {"enc-a": "recording"},
            "s2": {"enc-a": "completed"},
            "s3": {"enc-a": "starting", "enc-b": "failed"},
        },
    )
    with database.sessionmaker() as s:
        active = session_enclosure_rows.lock_active(s, "enc-a")
        assert active is not None
        assert (active.session_id, active.state) == ("s3", "starting")
        assert session_enclosure_rows.lock_active(s, "enc-b") is None
        s.commit()


def test_only_changed_rows_and_columns_are_written_and_orm_copies_see_them(database):
    _sessions(database, {"s1": {"enc-a": "starting", "enc-b": "starting"}})
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith("UPDATE SESSION_ENCLOSURES"):
            statements.append(statement)

    with database.sessionmaker() as s:
        # An ORM copy read earlier in the same transaction (as an alert's lookup would).
        orm = s.scalars(
            select(SessionEnclosure).where(SessionEnclosure.enclosure_id == "enc-a")
        ).one()
        assert orm.state == "starting"
        rows = session_enclosure_rows.lock_pairs(s, [("s1", "enc-a"), ("s1", "enc-b")])
        assert session_enclosure_rows.write_back(s, rows.values()) == 0  # nothing changed
        copy = rows[("s1", "enc-a")]
        copy.state = "recording"
        copy.confirmed_at = T0
        copy.frames += 30
        event.listen(database.engine, "before_cursor_execute", seen)
        try:
            assert session_enclosure_rows.write_back(s, rows.values()) == 1
        finally:
            event.remove(database.engine, "before_cursor_execute", seen)
        assert session_enclosure_rows.write_back(s, rows.values()) == 0  # the snapshot moved
        assert (orm.state, orm.frames) == ("recording", 30)  # expired, read again
        s.commit()
    assert len(statements) == 1
    set_clause = statements[0].split(" WHERE ")[0]
    assert "confirmed_at" in set_clause
    assert "gap_s" not in set_clause
    with database.sessionmaker() as s:
        states = dict(
            s.execute(select(SessionEnclosure.enclosure_id, SessionEnclosure.state)).all()
        )
    assert states == {"enc-a": "recording", "enc-b": "starting"}


def test_events_of_one_batch_change_one_copy_of_a_row(database):
    """A session's event and then the enclosure's own events (each looking up its active part)
    in one batch act on the same row, as they did on one ORM object: none loses another's
    changes (two gaps add up)."""
    _sessions(database, {"s1": {"enc-a": "starting"}})
    started = Event.of(RecordingStarted(), session_id="s1", at=T0 + timedelta(seconds=1))
    recovered = [
        Event.of(CameraRecovered(source="test", stalled_s=stalled), at=T0 + timedelta(seconds=n))
        for n, stalled in ((5, 2.0), (9, 3.0))
    ]
    intents: list = []
    with database.sessionmaker() as s:
        session_events.on_events(
            s,
            [
                ("enc-a", started, T0 + timedelta(seconds=1)),
                *(("enc-a", event, event.at) for event in recovered),
            ],
            intents,
            skews={"enc-a": None},
        )
        s.commit()
    with database.sessionmaker() as s:
        se = s.scalars(select(SessionEnclosure)).one()
        assert (se.state, se.gaps, se.gap_s) == ("recording", 2, 5.0)
        assert se.confirmed_at is not None
    assert [kind for kind, *_ in intents if kind == "session.state"] == ["session.state"]
