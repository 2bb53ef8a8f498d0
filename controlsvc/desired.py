"""Each enclosure's retained ``desired`` document: what it must record now. No Flask, no paho.

The document is recorded in ``desired_versions`` first (same transaction as the decision that
changes it), then published retained with QoS 1 after the commit; the broker's PUBACK moves
``published_version`` up. A document the broker never acknowledged (broker away, the API died
between commit and publish) is published by the bridge's timer, and after every (re)connection
the bridge publishes every document that names a recording again, so a broker that lost its
retained messages converges too.

``version`` only grows: ``max(previous + 1, milliseconds since the epoch)``, so even a database
restored from an old backup produces versions above what the agents applied (they ignore older
documents).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controlsvc.db import utcnow
from controlsvc.enclosures import insert_ignore
from controlsvc.models.sessions import DesiredVersion
from controlsvc.publisher import BrokerUnavailable, Publisher
from schemas.codec import dump_message
from schemas.messages import Desired, DesiredRecording
from schemas.topics import CHANNEL_QOS, Channel, Topics

log = logging.getLogger(__name__)

__all__ = [
    "PUBLISH_THREADS",
    "Outgoing",
    "active_documents",
    "clear",
    "mark_published",
    "publish_all",
    "set_recording",
    "unpublished",
]

# Publishing waits for each PUBACK (~1 ms on loopback); a fan-out to many enclosures spreads
# the waits over this many threads so 1,000 documents leave in well under a second.
PUBLISH_THREADS = 16
# Below this many documents one thread is as fast as a pool.
POOL_FROM = 8


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A ``desired`` document ready to publish (retained, QoS 1)."""

    enclosure_id: str
    version: int
    topic: str
    payload: bytes


def _epoch_ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def _row(session: Session, eid: str) -> DesiredVersion:
    """The enclosure's row, created if missing, locked for this transaction."""
    insert_ignore(
        session,
        DesiredVersion.__table__,  # type: ignore[arg-type]
        [{"enclosure_id": eid, "version": 0, "document": {}, "published_version": 0}],
    )
    query = (
        select(DesiredVersion)
        .where(DesiredVersion.enclosure_id == eid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one()


def _outgoing(row: DesiredVersion, topics: Topics) -> Outgoing:
    document = Desired.model_validate(row.document)
    return Outgoing(
        row.enclosure_id, row.version, topics.desired(row.enclosure_id), dump_message(document)
    )


def set_recording(
    session: Session,
    topics: Topics,
    eid: str,
    recording: DesiredRecording | None,
    *,
    now: datetime | None = None,
) -> Outgoing:
    """Record a new ``desired`` of ``eid`` with ``recording`` (None: record nothing), flushed;
    publish the returned message after the commit."""
    now = now or utcnow()
    row = _row(session, eid)
    version = max(row.version + 1, _epoch_ms(now))
    document = Desired(at=now, version=version, recording=recording)
    row.version = version
    row.session_id = recording.session_id if recording is not None else None
    row.document = document.model_dump(mode="json")
    row.updated_at = now
    session.flush()
    return _outgoing(row, topics)


def clear(
    session: Session, topics: Topics, eid: str, session_id: str, *, now: datetime | None = None
) -> Outgoing | None:
    """Clear the recording of ``eid``'s ``desired`` if it still names ``session_id`` (another
    session may have replaced it since); None when there is nothing to clear."""
    current = session.scalar(
        select(DesiredVersion.session_id).where(DesiredVersion.enclosure_id == eid)
    )
    if current != session_id:
        return None
    return set_recording(session, topics, eid, None, now=now)


def unpublished(session: Session, topics: Topics, *, limit: int = 5000) -> list[Outgoing]:
    """Documents the broker has not acknowledged yet."""
    query = (
        select(DesiredVersion)
        .where(DesiredVersion.published_version < DesiredVersion.version)
        .order_by(DesiredVersion.enclosure_id)
        .limit(limit)
    )
    return [_outgoing(row, topics) for row in session.scalars(query)]


def active_documents(session: Session, topics: Topics) -> list[Outgoing]:
    """Every document that names a recording (re-published after a reconnection)."""
    query = (
        select(DesiredVersion)
        .where(DesiredVersion.session_id.is_not(None))
        .order_by(DesiredVersion.enclosure_id)
    )
    return [_outgoing(row, topics) for row in session.scalars(query)]


def publish_all(publisher: Publisher, messages: Sequence[Outgoing]) -> list[Outgoing]:
    """Publish ``messages`` (retained, QoS 1, each waiting for its PUBACK, many at once);
    the ones the broker acknowledged. Failures are logged, not raised: the bridge retries."""
    qos = CHANNEL_QOS[Channel.DESIRED]

    def one(message: Outgoing) -> Outgoing | None:
        try:
            publisher.publish(message.topic, message.payload, qos=qos, retain=True)
        except BrokerUnavailable as exc:
            log.warning(
                "desired v%d of %s not published (the bridge will): %s",
                message.version,
                message.enclosure_id,
                exc.detail,
            )
            return None
        return message

    if len(messages) < POOL_FROM:
        results = [one(m) for m in messages]
    else:
        with ThreadPoolExecutor(min(PUBLISH_THREADS, len(messages))) as pool:
            results = list(pool.map(one, messages))
    return [m for m in results if m is not None]


def mark_published(
    session: Session, published: Iterable[Outgoing], *, now: datetime | None = None
) -> None:
    """Remember what the broker acknowledged (never moves ``published_version`` down)."""
    now = now or utcnow()
    for message in published:
        session.execute(
            update(DesiredVersion)
            .where(
                DesiredVersion.enclosure_id == message.enclosure_id,
                DesiredVersion.published_version < message.version,
            )
            .values(published_version=message.version, published_at=now)
            .execution_options(synchronize_session=False)
        )
