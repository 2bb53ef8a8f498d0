"""The summary's timestamps are formatted by the database exactly as ``iso_utc`` formats them:
UTC, whole seconds cut (not rounded), ``Z``; on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from controlsvc.store.fleet_summary import iso_utc, summary_rows
from controlsvc.store.models.enclosures import Enclosure

CHANGED = datetime(2026, 12, 3, 20, 40, 5, 999_999, tzinfo=timezone(timedelta(hours=2)))
SEEN = datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
REGISTERED = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_timestamps_as_iso_utc_writes_them(database):
    with database.session() as s:
        s.add(
            Enclosure(
                id="enc-a", name="A", state="idle", state_changed_at=CHANGED, last_seen_at=SEEN
            )
        )
        s.add(Enclosure(id="enc-b", name="B", state="offline", registered_at=REGISTERED))
    with database.sessionmaker() as s:
        rows = {row[0]: row for row in summary_rows(s)}
    assert rows["enc-a"][4:6] == [iso_utc(CHANGED), iso_utc(SEEN)]
    assert rows["enc-a"][4:6] == ["2026-12-03T18:40:05Z", "2026-12-31T23:59:59Z"]
    assert rows["enc-b"][4:6] == ["2026-01-02T03:04:05Z", None]  # since = registered_at
