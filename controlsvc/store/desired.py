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
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from controlsvc.domain.publisher import BatchPublisher, BrokerUnavailable, Publisher
from controlsvc.store.bulk_rows import insert_rows, update_rows
from controlsvc.store.db import utcnow
from controlsvc.store.models.sessions import DesiredVersion
from schemas.codec import dump_message
from schemas.messages import Desired, DesiredRecording
from schemas.topics import CHANNEL_QOS, Channel, Topics

_TABLE: Table = DesiredVersion.__table__  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = [
    "PUBLISH_THREADS",
    "Outgoing",
    "active_documents",
    "clear",
    "clear_many",
    "mark_published",
    "publish_all",
    "set_recording",
    "set_recordings",
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


def _lock(
    session: Session, eids: Sequence[str], *, create: bool
) -> dict[str, tuple[int, str | None]]:
    """``(version, session_id)`` of each enclosure's row, locked for this transaction, in id
    order (two writers never deadlock); with ``create``, missing rows are created first.

    One statement each, whatever the number of enclosures: a session on 1,000 enclosures must
    not cost 3,000 round trips while it holds their locks."""
    wanted = sorted(set(eids))
    if create:
        known = set(
            session.scalars(
                select(DesiredVersion.enclosure_id).where(DesiredVersion.enclosure_id.in_(wanted))
            )
        )
        now = utcnow()
        missing = [
            {
                "enclosure_id": eid,
                "version": 0,
                "document": {},
                "published_version": 0,
                "updated_at": now,
            }
            for eid in wanted
            if eid not in known
        ]
        # One statement (``bulk_rows``): a first session on a thousand enclosures creates them.
        insert_rows(session.connection(), _TABLE, missing)
    query = (
        select(DesiredVersion.enclosure_id, DesiredVersion.version, DesiredVersion.session_id)
        .where(DesiredVersion.enclosure_id.in_(wanted))
        .order_by(DesiredVersion.enclosure_id)
        .with_for_update()
    )
    return {eid: (version, sid) for eid, version, sid in session.execute(query)}


def _outgoing(row: DesiredVersion, topics: Topics) -> Outgoing:
    document = Desired.model_validate(row.document)
    return Outgoing(
        row.enclosure_id, row.version, topics.desired(row.enclosure_id), dump_message(document)
    )


def set_recordings(
    session: Session,
    topics: Topics,
    wanted: Sequence[tuple[str, DesiredRecording | None]],
    *,
    now: datetime | None = None,
) -> list[Outgoing]:
    """Record a new ``desired`` for each ``(enclosure id, recording)`` (None: record nothing),
    flushed; publish the returned messages (same order) after the commit."""
    if not wanted:
        return []
    now = now or utcnow()
    current = {
        eid: version
        for eid, (version, _) in _lock(session, [e for e, _ in wanted], create=True).items()
    }
    floor = _epoch_ms(now)
    rows: list[dict[str, Any]] = []
    # Documents that record nothing are the same for every enclosure at one version: built
    # once, written with one UPDATE per version (clearing a whole session is one statement).
    clears: dict[int, tuple[dict[str, Any], bytes, list[str]]] = {}
    out: list[Outgoing] = []
    for eid, recording in wanted:
        version = max(current[eid] + 1, floor)
        current[eid] = version
        if recording is None and version in clears:
            payload = clears[version][1]
            clears[version][2].append(eid)
        else:
            document = Desired(at=now, version=version, recording=recording)
            data, payload = document.model_dump(mode="json"), dump_message(document)
            if recording is None:
                clears[version] = (data, payload, [eid])
            else:
                rows.append(
                    {
                        "enclosure_id": eid,
                        "version": version,
                        "session_id": recording.session_id,
                        "document": data,
                        "updated_at": now,
                    }
                )
        out.append(Outgoing(eid, version, topics.desired(eid), payload))
    if rows:  # one statement for a session's 1,000 documents (``bulk_rows``)
        update_rows(session.connection(), _TABLE, "enclosure_id", rows)
    for version, (data, _, eids) in clears.items():
        session.execute(
            update(DesiredVersion)
            .where(DesiredVersion.enclosure_id.in_(eids))
            .values(version=version, session_id=None, document=data, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return out


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
    return set_recordings(session, topics, [(eid, recording)], now=now)[0]


def clear_many(
    session: Session,
    topics: Topics,
    eids: Sequence[str],
    session_id: str,
    *,
    now: datetime | None = None,
) -> list[Outgoing]:
    """Clear the recording of each enclosure's ``desired`` that still names ``session_id``
    (another session may have replaced it since); the messages to publish."""
    if not eids:
        return []
    rows = _lock(session, eids, create=False)
    named = [eid for eid in sorted(set(eids)) if rows.get(eid, (0, None))[1] == session_id]
    return set_recordings(session, topics, [(eid, None) for eid in named], now=now)


def clear(
    session: Session, topics: Topics, eid: str, session_id: str, *, now: datetime | None = None
) -> Outgoing | None:
    """``clear_many`` for one enclosure; None when there is nothing to clear."""
    out = clear_many(session, topics, [eid], session_id, now=now)
    return out[0] if out else None


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

    def failed(message: Outgoing, exc: BrokerUnavailable) -> None:
        log.warning(
            "desired v%d of %s not published (the bridge will): %s",
            message.version,
            message.enclosure_id,
            exc.detail,
        )

    if isinstance(publisher, BatchPublisher) and len(messages) > 1:
        # Pipelined: all PUBLISHes go out, then one wait for the PUBACKs (a thousand
        # documents in a fifth of a second instead of a thousand round trips).
        try:
            errors = publisher.publish_many(
                [(m.topic, m.payload) for m in messages], qos=qos, retain=True
            )
        except BrokerUnavailable as exc:
            errors = [exc for _ in messages]
        published = []
        for message, error in zip(messages, errors, strict=True):
            if error is None:
                published.append(message)
            else:
                failed(message, error)
        return published

    def one(message: Outgoing) -> Outgoing | None:
        try:
            publisher.publish(message.topic, message.payload, qos=qos, retain=True)
        except BrokerUnavailable as exc:
            failed(message, exc)
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
    """Remember what the broker acknowledged (never moves ``published_version`` down).

    One UPDATE per distinct version (a fan-out gives all its documents the same one)."""
    now = now or utcnow()
    by_version: dict[int, list[str]] = {}
    for message in published:
        by_version.setdefault(message.version, []).append(message.enclosure_id)
    for version, eids in by_version.items():
        session.execute(
            update(DesiredVersion)
            .where(
                DesiredVersion.enclosure_id.in_(sorted(eids)),
                DesiredVersion.published_version < version,
            )
            .values(published_version=version, published_at=now)
            .execution_options(synchronize_session=False)
        )
