"""The event log and tickets on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from controlsvc.store import eventlog, users
from controlsvc.store.db import Database, as_utc, utcnow
from controlsvc.store.models.events import EventRecord, EventTicket


def _user(database: Database, role: str = "viewer", email: str = "viewer@example.org") -> int:
    with database.session() as session:
        return users.create_user(
            session, email=email, password="a long enough password", role=role
        ).id


def test_record_since_last_id(database: Database):
    cid = uuid.uuid4()
    with database.session() as session:
        assert eventlog.last_id(session) == 0
        first = eventlog.record(session, "enclosure.state", {"state": "idle"}, enclosure_id="enc-a")
        second = eventlog.record(
            session,
            "command.updated",
            {"state": "succeeded", "at": utcnow(), "id": cid},
            enclosure_id="enc-b",
            command_id=cid,
        )
        third = eventlog.record(session, "session.state", {}, session_id="s-1")
    assert first.id < second.id < third.id
    with database.session() as session:
        assert eventlog.last_id(session) == third.id
        rows = eventlog.since(session, 0)
        assert [r.id for r in rows] == [first.id, second.id, third.id]
        assert rows[1].command_id == cid
        assert rows[1].data["id"] == str(cid)  # stored as JSON
        assert isinstance(rows[1].data["at"], str)
        assert rows[0].at.tzinfo is not None
        assert [r.id for r in eventlog.since(session, first.id)] == [second.id, third.id]
        assert [r.id for r in eventlog.since(session, 0, limit=1)] == [first.id]
        assert [r.id for r in eventlog.since(session, 0, kinds=["command.updated"])] == [second.id]
        assert [r.id for r in eventlog.since(session, 0, enclosure_id="enc-a")] == [first.id]
        assert eventlog.since(session, 0, kinds=[]) == []


def test_record_many_writes_every_entry_in_one_flush(database: Database):
    cid = uuid.uuid4()
    entries = [
        eventlog.Entry("enclosure.state", {"n": i}, enclosure_id=f"enc-{i}") for i in range(50)
    ]
    entries.append(eventlog.Entry("command.updated", {"id": cid}, command_id=cid))
    with database.session() as session:
        assert eventlog.record_many(session, []) == []
        rows = eventlog.record_many(session, entries)
    assert len({r.id for r in rows}) == 51
    with database.session() as session:
        stored = eventlog.since(session, 0)
        assert sorted(r.id for r in stored) == sorted(r.id for r in rows)
        assert {r.data["n"] for r in stored if r.kind == "enclosure.state"} == set(range(50))
        (command,) = (r for r in stored if r.kind == "command.updated")
        assert command.command_id == cid
        assert command.data == {"id": str(cid)}
        assert all(r.at.tzinfo is not None for r in stored)


def test_record_many_refuses_bad_kinds_before_writing(database: Database):
    with database.session() as session, pytest.raises(ValueError, match="event kind"):
        eventlog.record_many(
            session, [eventlog.Entry("enclosure.state", {}), eventlog.Entry("Bad Kind", {})]
        )
    with database.session() as session:
        assert eventlog.last_id(session) == 0


def test_record_refuses_bad_kinds(database: Database):
    with database.session() as session, pytest.raises(ValueError, match="event kind"):
        eventlog.record(session, "Bad Kind", {})


def test_purge_keeps_ids_growing(database: Database):
    old = utcnow() - eventlog.EVENT_RETENTION - timedelta(hours=1)
    with database.session() as session:
        for _ in range(3):
            last = eventlog.record(session, "enclosure.status", {}, at=old)
    with database.session() as session:
        assert eventlog.purge(session, utcnow() - eventlog.EVENT_RETENTION) == 3
    with database.session() as session:
        assert eventlog.last_id(session) == 0
        again = eventlog.record(session, "enclosure.status", {})
    assert again.id > last.id  # a client resuming from `last` must not skip `again`


def test_ticket_is_single_use(database: Database):
    user_id = _user(database)
    with database.session() as session:
        issued = eventlog.issue_ticket(session, user_id)
    assert issued.expires_at - utcnow() <= eventlog.TICKET_TTL
    with database.session() as session:
        stored = session.query(EventTicket).one()
        assert stored.ticket_hash != issued.ticket  # only the hash is kept
        assert issued.ticket not in stored.ticket_hash
    with database.session() as session:
        user = eventlog.redeem_ticket(session, issued.ticket)
        assert user is not None
        assert user.id == user_id
    with database.session() as session:
        assert eventlog.redeem_ticket(session, issued.ticket) is None
        assert eventlog.redeem_ticket(session, "nope") is None
        assert eventlog.redeem_ticket(session, "") is None
        assert eventlog.redeem_ticket(session, "x" * 1000) is None


def test_ticket_expires(database: Database):
    user_id = _user(database)
    with database.session() as session:
        issued = eventlog.issue_ticket(session, user_id, now=utcnow() - timedelta(seconds=31))
    with database.session() as session:
        assert eventlog.redeem_ticket(session, issued.ticket) is None


def test_ticket_of_a_disabled_user_is_refused(database: Database):
    user_id = _user(database)
    with database.session() as session:
        issued = eventlog.issue_ticket(session, user_id)
    with database.session() as session:
        users.get_user(session, user_id).disabled = True
    with database.session() as session:
        assert eventlog.redeem_ticket(session, issued.ticket) is None


def test_purge_removes_spent_tickets(database: Database):
    user_id = _user(database)
    with database.session() as session:
        used = eventlog.issue_ticket(session, user_id)
        eventlog.issue_ticket(session, user_id, now=utcnow() - timedelta(minutes=5))
        fresh = eventlog.issue_ticket(session, user_id)
    with database.session() as session:
        eventlog.redeem_ticket(session, used.ticket)
    with database.session() as session:
        eventlog.purge(session, utcnow() - eventlog.EVENT_RETENTION)
    with database.session() as session:
        assert session.query(EventTicket).count() == 1
        assert eventlog.redeem_ticket(session, fresh.ticket) is not None


def test_concurrent_writers_commit_in_id_order(database: Database):
    """A reader that has seen id N must have been able to see every id below N."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers by itself")
    first = database.sessionmaker()
    try:
        low = eventlog.record(first, "enclosure.state", {"n": 1})  # holds the writers' lock
        inserted = threading.Event()
        result: list[int] = []

        def second_writer() -> None:
            with database.session() as session:
                result.append(eventlog.record(session, "enclosure.state", {"n": 2}).id)
                inserted.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        assert not inserted.wait(0.5), "a second writer got an id while the first was open"
        with database.session() as reader:
            assert eventlog.since(reader, 0) == []
        first.commit()
        thread.join(10)
        assert result
        assert result[0] > low.id
    finally:
        first.close()
    with database.session() as reader:
        assert [r.id for r in eventlog.since(reader, 0)] == [low.id, result[0]]


def test_many_events_in_one_transaction_take_the_lock_once(database: Database):
    statements: list[str] = []
    from sqlalchemy import event

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        with database.session() as session:
            for n in range(5):
                eventlog.record(session, "enclosure.status", {"n": n})
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    locks = [s for s in statements if "pg_advisory_xact_lock" in s]
    assert len(locks) == (1 if database.engine.dialect.name == "postgresql" else 0)
    with database.session() as session:
        assert session.query(EventRecord).count() == 5


def test_one_event_takes_the_lock_in_its_own_insert(database: Database):
    """A transaction that records one event (a command's, an ack's) takes the writers' lock in
    the INSERT's round trip, and the row it stores is the one given (types included)."""
    statements: list[str] = []
    from sqlalchemy import event

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    command_id = uuid.uuid4()
    at = datetime(2026, 12, 5, 3, 30, 1, 250000, tzinfo=UTC)
    data = {"state": "sent", "nested": {"n": [1, 2.5, None]}, "text": "é"}
    with database.session() as session:
        session.connection()  # the transaction has begun: count only what recording sends
        event.listen(database.engine, "before_cursor_execute", seen)
        try:
            logged = eventlog.record(
                session, "command.updated", data, enclosure_id="enc-1", command_id=command_id, at=at
            )
        finally:
            event.remove(database.engine, "before_cursor_execute", seen)
        session.commit()
    assert len(statements) == 1
    assert ("pg_advisory_xact_lock" in statements[0]) is (
        database.engine.dialect.name == "postgresql"
    )
    with database.session() as session:
        row = session.get(EventRecord, logged.id)
        assert row is not None
        assert (row.kind, row.enclosure_id, row.command_id, row.data) == (
            "command.updated",
            "enc-1",
            command_id,
            data,
        )
        assert as_utc(row.at) == at


def test_several_events_take_the_lock_in_their_insert(database: Database):
    """A transaction that records several events at once (an ack batch's, a fan-out's) takes
    the writers' lock in the INSERT's own round trip, holds it until it ends, and stores the
    rows in the order given."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers by itself")
    from sqlalchemy import event, text

    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    entries = [eventlog.Entry("command.updated", {"n": n}) for n in range(3)]
    with database.session() as session:
        session.connection()
        event.listen(database.engine, "before_cursor_execute", seen)
        try:
            logged = eventlog.record_many(session, entries)
        finally:
            event.remove(database.engine, "before_cursor_execute", seen)
        with database.engine.connect() as other:
            free = other.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": eventlog.EVENTS_LOCK_KEY}
            ).scalar_one()
            assert free is False, "the writers' lock is held until the transaction ends"
        session.commit()
    assert len(statements) == 1
    assert "pg_advisory_xact_lock" in statements[0]
    with database.session() as session:
        stored = [(row.id, row.data) for row in eventlog.since(session, 0)]
    assert stored == [(row.id, {"n": n}) for n, row in enumerate(logged)]


@pytest.mark.parametrize("many", [False, True], ids=["one event", "two events"])
def test_a_commit_that_need_not_wait_for_the_disk(database: Database, many: bool):
    """``synchronous_commit=False`` turns PostgreSQL's setting off for that transaction only
    (for one event in the INSERT's own round trip), and stores the events as usual."""
    postgres = database.engine.dialect.name == "postgresql"
    entries = [eventlog.Entry("command.updated", {"n": n}) for n in range(2 if many else 1)]
    statements: list[str] = []
    from sqlalchemy import event, text

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    with database.session() as session:
        if postgres:
            usual = session.execute(text("SHOW synchronous_commit")).scalar()
            session.commit()
        session.connection()
        event.listen(database.engine, "before_cursor_execute", seen)
        try:
            logged = eventlog.record_many(session, entries, synchronous_commit=False)
        finally:
            event.remove(database.engine, "before_cursor_execute", seen)
        if postgres:
            assert session.execute(text("SHOW synchronous_commit")).scalar() == "off"
        session.commit()
        if postgres:  # the next transaction is as usual again
            assert session.execute(text("SHOW synchronous_commit")).scalar() == usual
    if postgres or not many:  # (SQLite inserts several rows one statement each)
        assert len(statements) == 1
    with database.session() as session:
        stored = [row.data for row in eventlog.since(session, 0)]
    assert stored == [{"n": n} for n in range(len(entries))]
    assert [row.id for row in logged] == sorted(row.id for row in logged)
