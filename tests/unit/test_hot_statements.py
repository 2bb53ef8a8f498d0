"""The statements on every command's and every batch's path are built once and run as compiled.

An ``IN (...)`` list is expanded into the SQL anew at each execution (SQLAlchemy's
"post-compile" parameters), which undoes most of what building a statement once saves; these
use equalities instead (``bench/command_rtt.py``: the bridge's CPU per command fell by a third).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from controlsvc.store import commands, enclosure_rows
from schemas.enums import AckResult

DIALECTS = [
    pytest.param(postgresql.dialect(), id="postgresql"),
    pytest.param(sqlite.dialect(), id="sqlite"),
]


def _hot_statements() -> list[Any]:
    ack_signals = {commands.command_state.ack_signal(result) for result in AckResult}
    return [
        *(commands._ack_update(s, with_data) for s in ack_signals for with_data in (False, True)),
        *(
            commands._mark_sent(skip, advance=adv)
            for skip in (False, True)
            for adv in (False, True)
        ),
        enclosure_rows._LOCK_ONE,
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_hot_statements_are_not_expanded_at_each_execution(dialect: Dialect) -> None:
    for statement in _hot_statements():
        sql = str(statement.compile(dialect=dialect))
        assert "POSTCOMPILE" not in sql, sql
