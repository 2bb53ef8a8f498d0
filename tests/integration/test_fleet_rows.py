"""What the bridge's fleet topic reads each tick (``fleet_publisher.fleet_rows``): plain columns,
the recorded session from ``summary_recording`` while the status is of the current boot."""

from __future__ import annotations

from controlsvc.bridge.fleet_publisher import fleet_rows
from controlsvc.store.models.enclosures import Enclosure


def test_the_recorded_session_comes_from_the_status_of_the_current_boot(database):
    with database.session() as s:
        s.add_all(
            [
                Enclosure(
                    id="enc-rec",
                    name="Rec",
                    state="recording",
                    lifecycle="ready",
                    boot_id="b1",
                    status_boot_id="b1",
                    summary_recording="s-orphan",
                ),
                Enclosure(
                    id="enc-old",
                    name="Old boot",
                    state="idle",
                    lifecycle="ready",
                    boot_id="b2",
                    status_boot_id="b1",  # the status is of the previous boot
                    summary_recording="s-before",
                ),
                Enclosure(id="enc-new", name="Never", registered=True, state="offline"),
            ]
        )
    with database.sessionmaker() as s:
        rows = {row.enclosure_id: row for row in fleet_rows(s)}
    assert rows["enc-rec"].session_id == "s-orphan"
    assert rows["enc-old"].session_id is None
    never = rows["enc-new"]
    assert (never.session_id, never.reason, never.state) == (None, "never seen", "offline")
    assert never.since == never.message(never.since).since
    assert rows["enc-rec"].message(never.since).session_id == "s-orphan"
