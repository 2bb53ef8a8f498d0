"""The recordings inventory across sessions, its export, and an enclosure's recording timeline.
No Flask: plain functions over a ``Session``; reading only.

Every closed segment is a ``segments`` row (the evidence of ``segment_closed``). The timeline
of an enclosure joins them back to back into ``recorded`` spans per session, adds the open
segment of a session it is recording now (``recording``, from its latest status), and the
``gap`` rows with their cause; a hole between segments that no gap explains is a gap of cause
``unexplained``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from controlsvc.domain.errors import InvalidInput
from controlsvc.domain.session_state import EncState
from controlsvc.store.db import Database, utcnow
from controlsvc.store.enclosures import get_enclosure
from controlsvc.store.models.sessions import (
    RecordingSession,
    SessionEnclosure,
    SessionGap,
    SessionSegment,
)
from controlsvc.store.pagination import (
    Page,
    after_key,
    cursor_datetime,
    cursor_int,
    decode_cursor,
    next_cursor,
)
from controlsvc.store.session_views import get_session, get_session_enclosure
from schemas.rest.recordings import (
    MAX_TIMELINE_WINDOW,
    RecordingOut,
    SpanKind,
    TimelineOut,
    TimelineSpan,
)
from schemas.rest.sessions import SegmentOut

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_TIMELINE",
    "MERGE_TOLERANCE_S",
    "Filter",
    "export_csv",
    "export_json",
    "list_recordings",
    "session_recordings",
    "timeline",
]

# Segments this close (end of one, first frame of the next) are one span: the recorder cuts
# between two frames, and a frame interval is well under this at any supported frame rate.
MERGE_TOLERANCE_S = 2.0
DEFAULT_TIMELINE = timedelta(days=7)
# The export reads this many rows per query (memory stays flat for any size).
EXPORT_BATCH = 1000
CSV_COLUMNS = (
    "enclosure_id",
    "session_id",
    "session_name",
    "path",
    "started_at",
    "ended_at",
    "duration_s",
    "frames",
    "bytes",
    "sha256",
    "sidecar_path",
    "received_at",
)


class Filter:
    """Which segments: of an enclosure, of a session, overlapping ``[start, end)``."""

    def __init__(
        self,
        *,
        enclosure_id: str | None = None,
        session_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        self.enclosure_id = enclosure_id
        self.session_id = session_id
        self.start = start
        self.end = end

    def check(self, session: Session) -> None:
        """``NotFound`` for an unknown enclosure or session (an empty list would hide a typo)."""
        if self.enclosure_id is not None:
            get_enclosure(session, self.enclosure_id)
        if self.session_id is not None:
            get_session(session, self.session_id)

    def query(self) -> Select[SessionSegment, str]:
        query = select(SessionSegment, RecordingSession.name).join(
            RecordingSession, RecordingSession.id == SessionSegment.session_id
        )
        if self.enclosure_id is not None:
            query = query.where(SessionSegment.enclosure_id == self.enclosure_id)
        if self.session_id is not None:
            query = query.where(SessionSegment.session_id == self.session_id)
        if self.start is not None:
            query = query.where(SessionSegment.ended_at > self.start)
        if self.end is not None:
            query = query.where(SessionSegment.started_at < self.end)
        return query


def _out(segment: SessionSegment, session_name: str) -> RecordingOut:
    return RecordingOut(
        enclosure_id=segment.enclosure_id,
        session_id=segment.session_id,
        session_name=session_name,
        path=segment.path,
        started_at=segment.started_at,
        ended_at=segment.ended_at,
        frames=segment.frames,
        bytes=segment.bytes,
        sha256=segment.sha256,
        sidecar_path=segment.sidecar_path,
        received_at=segment.received_at,
    )


def _page(
    session: Session, where: Filter, limit: int, after: tuple[datetime, int] | None
) -> list[tuple[SessionSegment, str]]:
    query = where.query()
    if after is not None:
        at, last_id = after
        query = query.where(
            after_key(SessionSegment.started_at, SessionSegment.id, at, last_id, descending=False)
        )
    query = query.order_by(SessionSegment.started_at, SessionSegment.id).limit(limit)
    return [(row[0], row[1]) for row in session.execute(query)]


def list_recordings(
    session: Session, where: Filter, *, limit: int, cursor: str | None = None
) -> Page:
    """Segments across sessions by start time, as ``RecordingOut`` items."""
    where.check(session)
    after = None
    if cursor is not None:
        key = decode_cursor(cursor, "started_at", "id")
        after = (cursor_datetime(key["started_at"]), cursor_int(key["id"]))
    rows = _page(session, where, limit + 1, after)
    following = next_cursor(rows, limit, lambda r: {"started_at": r[0].started_at, "id": r[0].id})
    return Page([_out(seg, name) for seg, name in rows[:limit]], following)


def _all(database: Database, where: Filter) -> Iterator[RecordingOut]:
    """Every matching segment, a batch per short transaction (none held while writing)."""
    after: tuple[datetime, int] | None = None
    while True:
        with database.sessionmaker() as session:
            rows = _page(session, where, EXPORT_BATCH, after)
            batch = [_out(seg, name) for seg, name in rows]
        yield from batch
        if len(rows) < EXPORT_BATCH:
            return
        after = (rows[-1][0].started_at, rows[-1][0].id)


def _csv_row(item: RecordingOut) -> list[Any]:
    values = item.model_dump(mode="json")
    values["duration_s"] = round((item.ended_at - item.started_at).total_seconds(), 3)
    return ["" if values[c] is None else values[c] for c in CSV_COLUMNS]


def export_csv(database: Database, where: Filter) -> Iterator[str]:
    """CSV with a header row (``CSV_COLUMNS``), a chunk of text at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for n, item in enumerate(_all(database, where), start=1):
        writer.writerow(_csv_row(item))
        if n % EXPORT_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def export_json(database: Database, where: Filter) -> Iterator[str]:
    """A JSON array of ``RecordingOut`` objects, written as it is read."""
    yield "["
    for n, item in enumerate(_all(database, where)):
        yield ("," if n else "") + "\n" + json.dumps(item.model_dump(mode="json"))
    yield "\n]\n"


# -- timeline -------------------------------------------------------------------------------------


def _window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    end = end or now
    start = start or end - DEFAULT_TIMELINE
    if end - start > MAX_TIMELINE_WINDOW:
        raise InvalidInput(
            f"at most {MAX_TIMELINE_WINDOW.days} days at once (page through longer periods)",
            field="from",
        )
    return start, end


def _span(
    kind: SpanKind,
    start: datetime,
    end: datetime,
    sid: str,
    names: dict[str, str],
    **extra: Any,
) -> TimelineSpan:
    return TimelineSpan(
        kind=kind,
        started_at=start,
        ended_at=end,
        duration_s=round(max(0.0, (end - start).total_seconds()), 3),
        session_id=sid,
        session_name=names.get(sid, sid),
        **extra,
    )


def _merge(segments: Sequence[SessionSegment], names: dict[str, str]) -> list[TimelineSpan]:
    """Back-to-back segments of one session as one ``recorded`` span."""
    spans: list[TimelineSpan] = []
    tolerance = timedelta(seconds=MERGE_TOLERANCE_S)
    current: dict[str, Any] | None = None
    for seg in sorted(segments, key=lambda s: (s.session_id, s.started_at, s.id)):
        if (
            current is not None
            and current["sid"] == seg.session_id
            and seg.started_at - current["end"] <= tolerance
        ):
            current["end"] = max(current["end"], seg.ended_at)
            current["segments"] += 1
            current["frames"] += seg.frames
            continue
        if current is not None:
            spans.append(_recorded(current, names))
        current = {
            "sid": seg.session_id,
            "start": seg.started_at,
            "end": seg.ended_at,
            "segments": 1,
            "frames": seg.frames,
        }
    if current is not None:
        spans.append(_recorded(current, names))
    return spans


def _recorded(current: dict[str, Any], names: dict[str, str]) -> TimelineSpan:
    return _span(
        SpanKind.RECORDED,
        current["start"],
        current["end"],
        current["sid"],
        names,
        segments=current["segments"],
        frames=current["frames"],
    )


def _unexplained(
    recorded: Sequence[TimelineSpan], gaps: Sequence[SessionGap], names: dict[str, str]
) -> list[TimelineSpan]:
    """Holes between recorded spans of one session that no reported gap covers."""
    holes = []
    by_session: dict[str, list[TimelineSpan]] = {}
    for span in recorded:
        by_session.setdefault(span.session_id, []).append(span)
    for sid, spans in by_session.items():
        for before, after in zip(spans, spans[1:], strict=False):
            explained = any(
                g.session_id == sid
                and g.started_at < after.started_at
                and g.ended_at > before.ended_at
                for g in gaps
            )
            if not explained:
                holes.append(
                    _span(
                        SpanKind.GAP,
                        before.ended_at,
                        after.started_at,
                        sid,
                        names,
                        cause="unexplained",
                    )
                )
    return holes


def _live(
    session: Session,
    eid: str,
    recorded: Sequence[TimelineSpan],
    names: dict[str, str],
    start: datetime,
    end: datetime,
) -> list[TimelineSpan]:
    """The open segment of the session the enclosure records now (until its last frame)."""
    rows = session.execute(
        select(SessionEnclosure, RecordingSession.name)
        .join(RecordingSession, RecordingSession.id == SessionEnclosure.session_id)
        .where(
            SessionEnclosure.enclosure_id == eid,
            SessionEnclosure.state == EncState.RECORDING.value,
        )
    ).all()
    spans = []
    for se, name in rows:
        names[se.session_id] = name
        closed = [s.ended_at for s in recorded if s.session_id == se.session_id]
        began = max(closed) if closed else se.confirmed_at
        until = se.last_frame_at
        if began is None or until is None or until <= began or until <= start or began >= end:
            continue
        spans.append(
            _span(SpanKind.RECORDING, max(began, start), min(until, end), se.session_id, names)
        )
    return spans


def timeline(
    session: Session,
    eid: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> TimelineOut:
    """What ``eid`` recorded in ``[start, end)`` (default: the last 7 days) and its gaps."""
    get_enclosure(session, eid)
    start, end = _window(start, end, now or utcnow())
    where = Filter(enclosure_id=eid, start=start, end=end)
    rows = session.execute(where.query().order_by(SessionSegment.started_at)).all()
    names = {seg.session_id: name for seg, name in rows}
    gaps = list(
        session.scalars(
            select(SessionGap)
            .where(
                SessionGap.enclosure_id == eid,
                SessionGap.ended_at > start,
                SessionGap.started_at < end,
            )
            .order_by(SessionGap.started_at)
        )
    )
    missing = {g.session_id for g in gaps} - set(names)
    if missing:
        found = session.execute(
            select(RecordingSession.id, RecordingSession.name).where(
                RecordingSession.id.in_(missing)
            )
        ).all()
        names.update({sid: name for sid, name in found})
    recorded = _merge([seg for seg, _ in rows], names)
    spans = [
        *recorded,
        *_live(session, eid, recorded, names, start, end),
        *(
            _span(
                SpanKind.GAP,
                max(g.started_at, start),
                min(g.ended_at, end),
                g.session_id,
                names,
                cause=g.cause,
            )
            for g in gaps
        ),
        *_unexplained(recorded, gaps, names),
    ]
    spans.sort(key=lambda s: (s.started_at, s.kind != SpanKind.RECORDED))
    return TimelineOut(
        enclosure_id=eid,
        window_start=start,
        window_end=end,
        recorded_s=round(
            sum(
                (min(s.ended_at, end) - max(s.started_at, start)).total_seconds() for s in recorded
            ),
            3,
        ),
        gap_s=round(sum(s.duration_s for s in spans if s.kind is SpanKind.GAP), 3),
        spans=spans,
    )


def session_recordings(
    session: Session,
    session_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    enclosure_id: str | None = None,
) -> Page:
    """Every segment of the session with its evidence, by start time (the inventory across
    sessions, ``list_recordings``, narrowed to this session; the same cursors)."""
    get_session(session, session_id)
    if enclosure_id is not None:
        get_session_enclosure(session, session_id, enclosure_id)
    page = list_recordings(
        session,
        Filter(session_id=session_id, enclosure_id=enclosure_id),
        limit=limit,
        cursor=cursor,
    )
    return Page([SegmentOut.model_validate(r.model_dump()) for r in page.items], page.next_cursor)
