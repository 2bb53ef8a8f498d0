"""JSON columns read back by the engine's deserializer (``db.json_loads``, pydantic-core's
parser): the same values ``json.loads`` gives, a document only ``json.loads`` takes included,
on both databases."""

from __future__ import annotations

import json

from sqlalchemy import select, text

from controlsvc.store.db import json_loads
from controlsvc.store.models.events import EventRecord

STORED = [
    '{"n": 12345678901234567890123456789, "f": 0.1, "s": "caf\\u00e9 \\ud83d\\udc2d", "z": null}',
    '{"note": "a lone surrogate \\ud800 from an old client", "list": [1, 2.5, "x"]}',
    '{"a": 1, "a": 2, "deep": {"x": {"y": [true, false]}}}',
]


def test_json_loads_reads_what_json_loads_reads():
    for document in STORED:
        assert json_loads(document) == json.loads(document)


def test_a_json_column_reads_back_as_json_loads_reads_it(database):
    with database.engine.begin() as conn:
        for i, document in enumerate(STORED):
            conn.execute(
                text("INSERT INTO events (id, at, kind, data) VALUES (:id, :at, 'test', :data)"),
                {"id": 100 + i, "at": "2026-12-05 00:00:00", "data": document},
            )
    with database.sessionmaker() as session:
        rows = session.execute(
            select(EventRecord.id, EventRecord.data).where(EventRecord.id >= 100)
        ).all()
    assert {i: data for i, data in rows} == {
        100 + i: json.loads(document) for i, document in enumerate(STORED)
    }
