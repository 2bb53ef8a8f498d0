"""``commands.create_command`` on SQLite and PostgreSQL: one statement stores a command for an
enclosure that exists and is not retired, with the enclosure's state copied; what it returns is
what was stored; an unknown or retired enclosure is refused, and said before bad params."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from controlsvc.domain.errors import Conflict, InvalidInput, NotFound
from controlsvc.store import commands, enclosure_rows
from controlsvc.store.db import Database
from controlsvc.store.models.commands import Command
from controlsvc.store.models.enclosures import Enclosure
from schemas.enums import CommandKind

NOW = datetime(2026, 12, 5, 3, 40, 0, 123000, tzinfo=UTC)


@pytest.fixture
def enclosures(database: Database) -> None:
    with database.session() as session:
        enclosure_rows.lock_rows(session, ["enc-a", "enc-old"])
        session.execute(update(Enclosure).where(Enclosure.id == "enc-a").values(state="idle"))
        session.execute(update(Enclosure).where(Enclosure.id == "enc-old").values(retired_at=NOW))
        session.commit()


def stored(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(Command)) or 0)


def test_one_statement_stores_what_it_returns(database: Database, enclosures: None):
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    with database.session() as session:
        session.connection()
        event.listen(database.engine, "before_cursor_execute", seen)
        try:
            made = commands.create_command(
                session,
                "enc-a",
                CommandKind.START_LIVE_VIEW,
                {"duration_s": 30},
                45,
                now=NOW,
            )
        finally:
            event.remove(database.engine, "before_cursor_execute", seen)
        session.commit()
    assert len(statements) == 1, statements
    assert made.enclosure_state == "idle"
    with database.session() as session:
        row = session.get(Command, made.id)
        assert row is not None
        expected = commands.command_out(made).model_dump()
        assert commands.command_out(row).model_dump() == expected
        assert expected["params"] == {"duration_s": 30}
        assert expected["state"] == "pending"
        assert expected["deadline_at"] == NOW + timedelta(seconds=45)
        assert row.publish_count == 0
        assert row.created_by_id is None


@pytest.mark.parametrize(
    ("eid", "params", "refused"),
    [
        ("enc-zz", {}, NotFound),
        ("Not_An_Id", {}, NotFound),
        ("enc-old", {}, Conflict),
        ("enc-zz", {"x": 1}, NotFound),  # the enclosure is said before the params
        ("enc-old", {"x": 1}, Conflict),
        ("enc-a", {"x": 1}, InvalidInput),
    ],
)
def test_refused_and_nothing_stored(
    database: Database, enclosures: None, eid: str, params: dict, refused: type[Exception]
):
    with database.session() as session, pytest.raises(refused) as caught:
        commands.create_command(session, eid, CommandKind.PING, params, 30, now=NOW)
    field = getattr(caught.value, "field", None)
    assert field == ("params.x" if refused is InvalidInput else "eid")
    assert stored(database) == 0
