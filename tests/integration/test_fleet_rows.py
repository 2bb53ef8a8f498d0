"""What the bridge's fleet topic reads each tick (``fleet_publisher.fleet_rows``): plain columns,
the recorded session from ``summary_recording`` while the status is of the current boot."""

from __future__ import annotations

from datetime import UTC, datetime

from controlsvc.bridge import fleet_publisher
from controlsvc.bridge.fleet_publisher import FleetPublisher, fleet_rows
from controlsvc.store.models.enclosures import Enclosure
from schemas.topics import Topics
from tests.support.sessions import add_session


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


class _Client:
    """The publisher's view of the bridge's MQTT client: what it published, by topic."""

    connected = True

    def __init__(self) -> None:
        self.generation = 1
        self.published: list[str] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.published.append(topic)

    def publish_many(self, messages, *, qos: int = 1, retain: bool = False):
        self.published += [topic for topic, _ in messages]
        return [None] * len(messages)

    def take(self) -> list[str]:
        out, self.published = sorted(t.rsplit("/", 1)[-1] for t in self.published), []
        return out


def test_each_tick_publishes_what_changed_and_reads_only_that(database, monkeypatch):
    """On PostgreSQL a tick reads whole rows only for the enclosures whose message changed (a
    digest of its columns, the active session apart); on SQLite it reads them all. Either way
    exactly the changed ones are published, and all again after a reconnection."""
    with database.session() as s:
        s.add_all(
            [
                Enclosure(id=eid, name=eid.upper(), registered=True, state="offline")
                for eid in ("enc-a", "enc-b", "enc-c")
            ]
        )
    asked: list[list[str] | None] = []
    real = fleet_publisher.fleet_rows

    def counted(session, ids=None, **kw):
        asked.append(None if ids is None else sorted(ids))
        return real(session, ids, **kw)

    monkeypatch.setattr(fleet_publisher, "fleet_rows", counted)
    client = _Client()
    publisher = FleetPublisher(database, client, Topics("jaxmba/v1"))
    postgres = database.engine.dialect.name == "postgresql"

    assert publisher.run_once() == 3
    assert client.take() == ["enc-a", "enc-b", "enc-c"]
    assert publisher.run_once() == 0  # nothing changed
    assert len(asked) == (1 if postgres else 2)  # PostgreSQL read digests only

    with database.session() as s:
        s.get(Enclosure, "enc-b").name = "Rack 2"
    assert publisher.run_once() == 1
    assert client.take() == ["enc-b"]
    if postgres:
        assert asked[-1] == ["enc-b"]

    with database.session() as s:  # a new reason in the same state
        s.get(Enclosure, "enc-c").state_reason = "clean shutdown"
    assert publisher.run_once() == 1
    assert client.take() == ["enc-c"]

    with database.session() as s:  # joins a session: its active session is in the message
        add_session(s, "s1", {"enc-a": None}, start=datetime.now(UTC), duration_s=60)
    assert publisher.run_once() == 1
    assert client.take() == ["enc-a"]

    client.generation = 2  # reconnected: everything again, in one read
    assert publisher.run_once() == 3
    assert client.take() == ["enc-a", "enc-b", "enc-c"]
    assert asked[-1] is None
