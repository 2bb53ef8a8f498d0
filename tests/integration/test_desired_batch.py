"""``controlsvc.store.desired`` in batches (a session's fan-out and its cancel), SQLite and
PostgreSQL: one version per enclosure that only grows, clearing only what still names the session,
and ``published_version`` never moving down."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from controlsvc.store import desired
from controlsvc.store.db import Database, utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import DesiredVersion
from schemas.codec import parse_message
from schemas.messages import Desired, DesiredRecording
from schemas.topics import Topics

TOPICS = Topics("jaxmba/v1")
IDS = [f"enc-{i}" for i in range(5)]


def _recording(session_id: str, prefix: str) -> DesiredRecording:
    now = utcnow()
    return DesiredRecording(
        session_id=session_id, file_prefix=prefix, start_at=now, end_at=now + timedelta(hours=1)
    )


def _rows(database: Database) -> dict[str, DesiredVersion]:
    with database.session() as session:
        return {row.enclosure_id: row for row in session.scalars(select(DesiredVersion))}


def test_a_batch_sets_clears_and_marks_published(database: Database) -> None:
    with database.session() as session:
        session.add_all(Enclosure(id=eid, name=eid, state="idle") for eid in IDS)
        session.commit()
        # enc-0 has an old document with a version from the future (a restored backup...)
        desired.set_recording(session, TOPICS, "enc-0", None)
        future = 10**15
        session.execute(
            DesiredVersion.__table__.update()
            .where(DesiredVersion.enclosure_id == "enc-0")
            .values(version=future)
        )
        session.commit()

        now = utcnow()
        out = desired.set_recordings(
            session, TOPICS, [(eid, _recording("s1", f"p-{eid}")) for eid in IDS], now=now
        )
        session.commit()
    assert [m.enclosure_id for m in out] == IDS
    assert out[0].version == future + 1  # only grows
    floor = int(now.timestamp() * 1000)
    assert all(m.version == floor for m in out[1:])
    for message in out:
        document = parse_message(Desired, message.payload)
        assert document.version == message.version
        assert document.recording is not None
        assert document.recording.file_prefix == f"p-{message.enclosure_id}"
        assert message.topic == TOPICS.desired(message.enclosure_id)
    rows = _rows(database)
    assert {eid: rows[eid].session_id for eid in IDS} == dict.fromkeys(IDS, "s1")
    assert rows["enc-3"].document["recording"]["file_prefix"] == "p-enc-3"

    with database.session() as session:
        desired.mark_published(session, out)
        session.commit()
        assert desired.unpublished(session, TOPICS) == []
        # another session took enc-4 meanwhile: clearing s1 leaves it alone
        desired.set_recording(session, TOPICS, "enc-4", _recording("s2", "other"))
        cleared = desired.clear_many(session, TOPICS, IDS, "s1")
        session.commit()
    assert [m.enclosure_id for m in cleared] == IDS[:4]
    rows = _rows(database)
    assert rows["enc-4"].session_id == "s2"
    for message in cleared:
        row = rows[message.enclosure_id]
        assert row.session_id is None
        assert row.version == message.version > out[IDS.index(message.enclosure_id)].version
        assert parse_message(Desired, message.payload).recording is None
        assert row.document == parse_message(Desired, message.payload).model_dump(mode="json")
    # nothing left that names s1
    with database.session() as session:
        assert desired.clear_many(session, TOPICS, IDS, "s1") == []
        assert desired.clear(session, TOPICS, "enc-1", "s1") is None


def test_mark_published_never_moves_down(database: Database) -> None:
    with database.session() as session:
        session.add(Enclosure(id="enc-0", name="enc-0", state="idle"))
        session.commit()
        first = desired.set_recording(session, TOPICS, "enc-0", _recording("s1", "a"))
        second = desired.set_recording(session, TOPICS, "enc-0", None)
        session.commit()
        desired.mark_published(session, [second])
        desired.mark_published(session, [first])  # a late acknowledgement of the older one
        session.commit()
    row = _rows(database)["enc-0"]
    assert row.published_version == second.version > first.version
