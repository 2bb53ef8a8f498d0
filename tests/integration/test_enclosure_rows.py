"""The bridge's working copies of enclosure rows (``store.enclosure_rows``) on both databases:
read locked, changed in memory, only what changed written back, nothing else touched."""

from __future__ import annotations

from dataclasses import fields

from sqlalchemy import event, select, update

from controlsvc.store import enclosure_rows, enclosures
from controlsvc.store.db import utcnow
from controlsvc.store.enclosure_rows import INGEST_COLUMNS
from controlsvc.store.models.enclosures import Enclosure, EnclosureRow, EnclosureTransition
from schemas.enums import EnclosureState


def test_the_working_copy_has_the_columns_of_the_model():
    columns = Enclosure.__table__.c
    for f in fields(EnclosureRow):
        if f.name in enclosure_rows.NOT_COLUMNS:
            continue
        assert f.name in columns, f"EnclosureRow.{f.name} is not a column of enclosures"
        assert columns[f.name].nullable == ("None" in str(f.type)), f.name
    # The registry's columns are the API's: the bridge never writes them.
    assert not {"name", "location", "notes", "expected_online", "edited_at"} & set(INGEST_COLUMNS)


def test_unknown_enclosures_appear_and_known_ones_are_read(database):
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-b", "enc-a", "enc-a"], now=utcnow())
        session.commit()
    assert sorted(rows) == ["enc-a", "enc-b"]
    assert rows["enc-a"].state == EnclosureState.OFFLINE.value
    assert rows["enc-a"].retired_at is None
    with database.sessionmaker() as session:
        assert session.scalar(select(Enclosure.name).where(Enclosure.id == "enc-b")) == "enc-b"


def test_only_changed_rows_and_ingest_columns_are_written(database):
    now = utcnow()
    with database.sessionmaker() as session:
        enclosure_rows.lock_rows(session, ["enc-a", "enc-b"], now=now)
        session.commit()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a", "enc-b"])
        assert enclosure_rows.write_back(session, rows.values()) == 0  # nothing changed
        row = rows["enc-a"]
        row.status = {"seq": 1}
        row.status_seq = 1
        row.last_seen_at = now
        change = enclosures.revive(session, row, now)  # offline, nothing says otherwise
        assert change is None
        assert enclosure_rows.write_back(session, rows.values()) == 1
        assert enclosure_rows.write_back(session, rows.values()) == 0  # the snapshot moved
        session.commit()
    with database.sessionmaker() as session:
        enc = session.get(Enclosure, "enc-a")
        assert enc is not None
        assert (enc.status, enc.status_seq, enc.last_seen_at) == ({"seq": 1}, 1, now)
        assert enc.name == "enc-a"  # untouched
        other = session.get(Enclosure, "enc-b")
        assert other is not None
        assert other.status is None


def test_a_row_whose_document_is_unchanged_keeps_it(database):
    """An ack or an event moves ``last_seen_at`` only; the status document is not rewritten
    (the UPDATE leaves the column out), so an edit made under the lock survives."""
    now = utcnow()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a"], now=now)
        rows["enc-a"].status = {"seq": 1}
        enclosure_rows.write_back(session, rows.values())
        session.commit()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a"])
        # Changed in the same transaction by another path: the copy does not know it.
        session.execute(update(Enclosure).where(Enclosure.id == "enc-a").values(status={"x": 2}))
        rows["enc-a"].last_seen_at = now
        assert enclosure_rows.write_back(session, rows.values()) == 1
        session.commit()
    with database.sessionmaker() as session:
        enc = session.get(Enclosure, "enc-a")
        assert enc is not None
        assert (enc.status, enc.last_seen_at) == ({"x": 2}, now)


def test_a_state_change_of_a_working_copy_is_recorded(database):
    now = utcnow()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a"], now=now)
        row = rows["enc-a"]
        row.lifecycle = "ready"
        row.boot_id = row.status_boot_id = "b1"
        row.status = {"camera": {"connected": True}, "recording": None}
        change = enclosures.revive(session, row, now)
        assert change is not None
        assert change.previous is EnclosureState.OFFLINE
        enclosure_rows.write_back(session, rows.values())
        session.commit()
    with database.sessionmaker() as session:
        enc = session.get(Enclosure, "enc-a")
        assert enc is not None
        assert enc.state == change.state.value
        moves = session.execute(
            select(EnclosureTransition.from_state, EnclosureTransition.to_state)
        ).all()
        assert moves == [("offline", change.state.value)]


def test_the_transitions_of_many_copies_are_one_statement(database):
    """A fan-out moves a thousand enclosures at once: their transitions go in with the rows'
    write-back, one INSERT for all of them, each once."""
    now = utcnow()
    eids = [f"enc-{i}" for i in range(5)]
    with database.sessionmaker() as session:
        enclosure_rows.lock_rows(session, eids, now=now)
        session.commit()
    inserts: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many):
        if "INSERT INTO enclosure_transitions" in statement:
            inserts.append(statement)

    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, eids, now=now)
        for row in rows.values():
            row.lifecycle = "ready"
            row.boot_id = row.status_boot_id = "b1"
            row.status = {"camera": {"connected": True}, "recording": None}
            assert enclosures.revive(session, row, now) is not None
        event.listen(database.engine, "before_cursor_execute", seen)
        try:
            enclosure_rows.write_back(session, rows.values())
            enclosure_rows.write_back(session, rows.values())  # nothing left to store twice
        finally:
            event.remove(database.engine, "before_cursor_execute", seen)
        assert all(not row.transitions for row in rows.values())
        session.commit()
    assert len(inserts) == 1, inserts
    with database.sessionmaker() as session:
        moves = session.execute(
            select(EnclosureTransition.enclosure_id, EnclosureTransition.from_state).order_by(
                EnclosureTransition.enclosure_id
            )
        ).all()
    assert moves == [(eid, "offline") for eid in eids]


def test_only_the_changed_columns_are_sent(database):
    """Each row sends the columns it changed, rows changing the same ones in one statement:
    an ack's row does not resend the agent's version or the status's summary, and an edit made
    under the lock to a column the copy did not change survives."""
    now = utcnow()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a", "enc-b", "enc-c"], now=now)
        session.commit()
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith("UPDATE ENCLOSURES"):
            statements.append(statement)

    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a", "enc-b", "enc-c"])
        session.execute(
            update(Enclosure).where(Enclosure.id == "enc-a").values(agent_version="edited")
        )
        for eid in ("enc-a", "enc-b"):  # an ack's or an event's changes
            rows[eid].last_seen_at = now
            rows[eid].silent_after = now
        rows["enc-c"].status = {"seq": 1}
        rows["enc-c"].status_seq = 1
        event.listen(database.engine, "before_cursor_execute", seen)
        try:
            assert enclosure_rows.write_back(session, rows.values()) == 3
        finally:
            event.remove(database.engine, "before_cursor_execute", seen)
        session.commit()
    assert len(statements) == 2, statements
    ack, status = sorted(s.split(" WHERE ")[0] for s in statements)  # "...last_seen" < "...status"
    assert "last_seen_at" in ack
    assert "silent_after" in ack
    assert "status" not in ack
    assert "agent_version" not in ack
    assert "status_seq" in status
    assert "last_seen_at" not in status
    with database.sessionmaker() as session:
        a, c = session.get(Enclosure, "enc-a"), session.get(Enclosure, "enc-c")
        assert a is not None
        assert c is not None
        assert (a.agent_version, a.last_seen_at) == ("edited", now)
        assert (c.status, c.status_seq, c.last_seen_at) == ({"seq": 1}, 1, None)


def _set_status(row: EnclosureRow, seq: int, document: dict, at) -> None:
    row.status, row.status_boot_id, row.status_seq, row.status_at = document, "b1", seq, at


def _status_reads(database) -> tuple[list[str], object]:
    reads: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many):
        head = statement.split(" FROM ")[0]
        if statement.lstrip().upper().startswith("SELECT") and "status," in head + ",":
            reads.append(statement)

    return reads, seen


def test_a_status_this_writer_wrote_is_not_read_back(database):
    """The cache gives the document written last; the locking SELECT leaves it out."""
    cache = enclosure_rows.StatusCache()
    now = utcnow()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a", "enc-b"], now=now, statuses=cache)
        for seq, eid in enumerate(("enc-a", "enc-b"), start=1):
            _set_status(rows[eid], seq, {"seq": seq, "camera": {"connected": True}}, now)
        enclosure_rows.write_back(session, rows.values(), cache)
        session.commit()
    reads, seen = _status_reads(database)
    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        with database.sessionmaker() as session:
            rows = enclosure_rows.lock_rows(session, ["enc-a", "enc-b"], statuses=cache)
            session.commit()
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    assert reads == []
    assert rows["enc-b"].status == {"seq": 2, "camera": {"connected": True}}
    assert rows["enc-b"].loaded == tuple(getattr(rows["enc-b"], c) for c in INGEST_COLUMNS)
    assert cache.hits == 2


def test_a_status_written_elsewhere_or_rolled_back_is_read_from_the_database(database):
    mine, theirs = enclosure_rows.StatusCache(), enclosure_rows.StatusCache()
    now = utcnow()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a", "enc-b"], now=now, statuses=mine)
        _set_status(rows["enc-a"], 1, {"seq": 1}, now)
        _set_status(rows["enc-b"], 1, {"seq": 1}, now)
        enclosure_rows.write_back(session, rows.values(), mine)
        session.commit()
    with database.sessionmaker() as session:  # another bridge's writer
        rows = enclosure_rows.lock_rows(session, ["enc-a"], statuses=theirs)
        _set_status(rows["enc-a"], 2, {"seq": 2, "by": "another bridge"}, now)
        enclosure_rows.write_back(session, rows.values(), theirs)
        session.commit()
    with database.sessionmaker() as session:  # this writer's, never committed
        rows = enclosure_rows.lock_rows(session, ["enc-b"], statuses=mine)
        _set_status(rows["enc-b"], 2, {"seq": 2, "rolled": "back"}, now)
        enclosure_rows.write_back(session, rows.values(), mine)
        session.rollback()
    with database.sessionmaker() as session:
        rows = enclosure_rows.lock_rows(session, ["enc-a", "enc-b"], statuses=mine)
        session.commit()
    assert rows["enc-a"].status == {"seq": 2, "by": "another bridge"}
    assert rows["enc-a"].status_seq == 2
    assert rows["enc-b"].status == {"seq": 1}
    assert rows["enc-b"].status_seq == 1


def test_the_status_cache_keeps_the_most_recent_entries():
    cache = enclosure_rows.StatusCache(size=2)
    at = utcnow()
    for eid in ("enc-a", "enc-b", "enc-c"):
        cache.put(eid, ("b1", 1, at), {"id": eid})
    assert cache.get("enc-a", ("b1", 1, at)) == (False, None)  # the oldest went
    assert cache.get("enc-c", ("b1", 1, at)) == (True, {"id": "enc-c"})
    assert cache.get("enc-c", ("b1", 2, at)) == (False, None)  # another status
    assert cache.get("enc-b", (None, None, None)) == (False, None)  # nothing identifies it


def test_orm_copies_read_in_the_transaction_see_what_was_written(database):
    now = utcnow()
    with database.sessionmaker() as session:
        enclosure_rows.lock_rows(session, ["enc-a"], now=now)
        session.commit()
    with database.sessionmaker() as session:
        orm = session.get(Enclosure, "enc-a")  # as an alert's subject is read
        assert orm is not None
        assert orm.last_seen_at is None
        rows = enclosure_rows.lock_rows(session, ["enc-a"])
        rows["enc-a"].last_seen_at = now
        enclosure_rows.write_back(session, rows.values())
        assert orm.last_seen_at == now  # expired, read again
        session.commit()
