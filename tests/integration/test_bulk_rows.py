"""``store.bulk_rows``: many rows updated by key, or inserted skipping conflicts, in one
statement (PostgreSQL) or ordinary statements (SQLite, one row), with the same result as the
columns' own types give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Table, event, select, text
from sqlalchemy.exc import IntegrityError

from controlsvc.store import enclosure_rows
from controlsvc.store.bulk_rows import (
    _recordset_update,
    insert_returning,
    insert_rows,
    update_rows,
)
from controlsvc.store.db import utcnow
from controlsvc.store.models.enclosures import Enclosure, StatusRecord

TABLE: Table = Enclosure.__table__  # type: ignore[assignment]
HISTORY: Table = StatusRecord.__table__  # type: ignore[assignment]


def _enclosures(database, ids):
    with database.sessionmaker() as session:
        enclosure_rows.lock_rows(session, ids, now=utcnow())
        session.commit()


def _read(database, eid):
    with database.sessionmaker() as session:
        enc = session.get(Enclosure, eid)
        assert enc is not None
        return enc


def test_each_row_gets_its_values_and_nothing_else_changes(database):
    ids = [f"enc-{i}" for i in range(5)]
    _enclosures(database, ids)
    seen = datetime(2026, 12, 5, 7, 0, 0, 123456, tzinfo=UTC)
    east = timezone(timedelta(hours=2))
    rows = [
        {
            "id": eid,
            "status": {"seq": i, "camera": {"connected": True, "fps": 29.97}, "none": None},
            "status_seq": 10**12 + i,  # a BIGINT
            "last_seen_at": (seen + timedelta(seconds=i)).astimezone(east),  # any zone: UTC back
            "summary_fps": 29.5 if i % 2 else None,
            "summary_error": 'disk full: "/data" 100 %' if i == 3 else None,
        }
        for i, eid in enumerate(ids[:4])
    ]
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with database.sessionmaker() as session:
        assert update_rows(session.connection(), TABLE, "id", rows) == 4
        session.commit()
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    if database.engine.dialect.name == "postgresql":
        assert len(updates) == 1  # one statement for all the rows
    for i, row in enumerate(rows):
        enc = _read(database, row["id"])
        assert enc.status == row["status"]
        assert enc.status_seq == row["status_seq"]
        assert enc.last_seen_at == seen + timedelta(seconds=i)
        assert enc.last_seen_at.tzinfo is not None
        assert enc.summary_fps == row["summary_fps"]
        assert enc.summary_error == row["summary_error"]
        assert enc.name == row["id"]  # a column not given: untouched
    untouched = _read(database, ids[4])
    assert (untouched.status, untouched.status_seq, untouched.last_seen_at) == (None, None, None)


def test_one_row_and_no_rows(database):
    _enclosures(database, ["enc-a"])
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with database.sessionmaker() as session:
        assert update_rows(session.connection(), TABLE, "id", []) == 0
        assert (
            update_rows(session.connection(), TABLE, "id", [{"id": "enc-a", "status_seq": 7}]) == 1
        )
        session.commit()
    assert _read(database, "enc-a").status_seq == 7
    (one,) = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert "id" not in one.split(" WHERE ")[0], one  # the key is not set to itself


def test_rows_naming_other_columns_are_refused(database):
    """json_to_recordset would set a column a row leaves out to NULL."""
    _enclosures(database, ["enc-a", "enc-b"])
    rows = [{"id": "enc-a", "status_seq": 1}, {"id": "enc-b", "summary_fps": 2.0}]
    with database.sessionmaker() as session, pytest.raises(ValueError, match="same columns"):
        update_rows(session.connection(), TABLE, "id", rows)


def test_a_naive_datetime_is_refused(database):
    _enclosures(database, ["enc-a", "enc-b"])
    naive = datetime(2026, 12, 5, 7, 0, 0)  # noqa: DTZ001 - the point of the test
    rows = [{"id": eid, "last_seen_at": naive} for eid in ("enc-a", "enc-b")]
    with database.sessionmaker() as session, pytest.raises(Exception, match="naive datetime"):
        update_rows(session.connection(), TABLE, "id", rows)
    assert _read(database, "enc-a").last_seen_at is None


def test_the_statement_declares_each_columns_type(database):
    """json_to_recordset types each value by the column list it is given: the columns' own."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: an ordinary UPDATE")
    sql, datetimes = _recordset_update(
        TABLE, "id", ("status", "last_seen_at"), database.engine.dialect
    )
    assert "json_to_recordset" in sql
    assert "last_seen_at TIMESTAMP WITH TIME ZONE" in sql
    assert "status JSON" in sql
    assert datetimes == ("last_seen_at",)


def _history(eid, seq, at):
    return {
        "enclosure_id": eid,
        "boot_id": "boot-1",
        "seq": seq,
        "at": at,
        "received_at": at + timedelta(milliseconds=5),
        "status": {"seq": seq, "disk": {"free": 10**12}, "none": None},
    }


def test_rows_are_inserted_and_copies_of_stored_ones_skipped(database):
    _enclosures(database, ["enc-a", "enc-b"])
    at = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    first = [_history(eid, seq, at) for eid in ("enc-a", "enc-b") for seq in (1, 2)]
    with database.sessionmaker() as session:
        assert insert_rows(session.connection(), HISTORY, first) == 4
        session.commit()
    again = [*first[:2], _history("enc-a", 3, at + timedelta(seconds=1))]  # two copies, one new
    with database.sessionmaker() as session:
        assert insert_rows(session.connection(), HISTORY, again) == 1
        assert insert_rows(session.connection(), HISTORY, []) == 0
        session.commit()
    with database.sessionmaker() as session:
        stored = session.scalars(select(StatusRecord).order_by(StatusRecord.id)).all()
    assert len(stored) == 5
    by_key = {(r.enclosure_id, r.seq): r for r in stored}
    row = by_key[("enc-a", 3)]
    assert row.at == at + timedelta(seconds=1)
    assert row.received_at == at + timedelta(seconds=1, milliseconds=5)
    assert row.status == {"seq": 3, "disk": {"free": 10**12}, "none": None}


def test_a_copy_raises_where_conflicts_are_not_skipped(database):
    _enclosures(database, ["enc-a"])
    at = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    stored = _history("enc-a", 1, at)
    with database.sessionmaker() as session:
        insert_rows(session.connection(), HISTORY, [stored])
        session.commit()
    rows = [_history("enc-a", 2, at), stored]
    with database.sessionmaker() as session, pytest.raises(IntegrityError):
        insert_rows(session.connection(), HISTORY, rows, skip_conflicts=False)
    with database.sessionmaker() as session:
        assert insert_rows(session.connection(), HISTORY, rows[:1], skip_conflicts=False) == 1
        session.commit()


def _inserts(database):
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    return statements


def test_what_inserted_rows_return_comes_in_their_order(database):
    """The generated keys grow in the rows' order and come back in it: the event log pairs
    each row with its id by position."""
    _enclosures(database, ["enc-a", "enc-b", "enc-c"])
    at = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    rows = [_history(eid, seq, at) for seq in (5, 1, 3) for eid in ("enc-c", "enc-a", "enc-b")]
    statements = _inserts(database)
    with database.sessionmaker() as session:
        back = insert_returning(session.connection(), HISTORY, rows, ("id", "enclosure_id", "seq"))
        session.commit()
    assert [(eid, seq) for _, eid, seq in back] == [(r["enclosure_id"], r["seq"]) for r in rows]
    ids = [row[0] for row in back]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    if database.engine.dialect.name == "postgresql":
        assert sum(s.lstrip().upper().startswith("INSERT") for s in statements) == 1
    with database.sessionmaker() as session:
        stored = dict(session.execute(select(StatusRecord.id, StatusRecord.seq)).all())
    assert [stored[i] for i in ids] == [r["seq"] for r in rows]


def test_rows_skipped_as_copies_return_nothing(database):
    _enclosures(database, ["enc-a", "enc-b"])
    at = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    first = [_history("enc-a", 1, at), _history("enc-b", 1, at)]
    key = ("enclosure_id", "seq")
    with database.sessionmaker() as session:
        insert_rows(session.connection(), HISTORY, first)
        session.commit()
    again = [_history("enc-b", 2, at), first[0], _history("enc-a", 2, at), first[1]]
    with database.sessionmaker() as session:
        new = insert_returning(session.connection(), HISTORY, again, key, skip_conflicts=True)
        assert insert_returning(session.connection(), HISTORY, [], key) == []
        session.commit()
    assert new == [("enc-b", 2), ("enc-a", 2)]
    with database.sessionmaker() as session, pytest.raises(IntegrityError):
        insert_returning(session.connection(), HISTORY, [first[0], _history("enc-a", 9, at)], key)


def test_a_column_only_the_orm_fills_in_is_refused(database):
    """``registered_at`` has a Python default: a raw INSERT would store NULL (or fail)."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: an ordinary INSERT, which fills the defaults in")
    rows = [{"id": f"enc-{i}", "name": f"enc-{i}", "state": "offline"} for i in range(2)]
    with database.sessionmaker() as session, pytest.raises(ValueError, match="registered_at"):
        insert_rows(session.connection(), TABLE, rows)


def test_a_select_list_evaluated_before_the_rows(database):
    """``first`` is evaluated once by the INSERT of several rows itself (PostgreSQL; here a
    setting visible after it); refused where it cannot apply (one row, or SQLite)."""
    _enclosures(database, ["enc-a", "enc-b"])
    at = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    rows = [_history("enc-a", 1, at), _history("enc-b", 1, at)]
    first = "set_config('application_name', 'bulk-first', true) AS named"
    with database.sessionmaker() as session:
        if database.engine.dialect.name != "postgresql":
            with pytest.raises(ValueError, match="several rows on PostgreSQL"):
                insert_returning(session.connection(), HISTORY, rows, ("id",), first=first)
            return
        with pytest.raises(ValueError, match="several rows on PostgreSQL"):
            insert_returning(session.connection(), HISTORY, rows[:1], ("id",), first=first)
        statements = _inserts(database)
        back = insert_returning(session.connection(), HISTORY, rows, ("seq",), first=first)
        assert back == [(1,), (1,)]
        assert len(statements) == 1
        named = session.execute(text("SELECT current_setting('application_name')")).scalar()
        assert named == "bulk-first"
        session.commit()
