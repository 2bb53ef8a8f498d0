"""The one computation of an enclosure's figures in a session, and of its being lost there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import SessionEnclosure
from controlsvc.store.session_progress import (
    fails_at,
    is_lost,
    lost_since,
    progress_fields,
    progress_of,
    totals_of,
)

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def part(state: str, **kw: object) -> SessionEnclosure:
    values = dict(
        session_id="s",
        enclosure_id="enc-a",
        file_prefix="p",
        state=state,
        segments=2,
        frames=200,
        bytes=4096,
        segments_s=20.0,
        live_s=4.5,
        live_frames=45,
        gap_s=0.0,
        gaps=0,
        lost_since=None,
        last_frame_at=T0,
    )
    values.update(kw)
    return SessionEnclosure(**values)


@pytest.mark.parametrize("state", ["starting", "recording"])
def test_live_while_it_records(state):
    p = progress_of(part(state))
    assert (p.basis, p.recorded_s, p.frames, p.bytes, p.segments) == ("live", 24.5, 245, 4096, 2)


@pytest.mark.parametrize("state", ["completed", "failed", "canceled", "timed_out"])
def test_evidence_once_done(state):
    p = progress_of(part(state))
    assert (p.basis, p.recorded_s, p.frames) == ("evidence", 20.0, 200)
    assert progress_fields(part(state)) == p.model_dump()


def test_totals_are_live_while_any_is():
    totals = totals_of(
        [progress_fields(part("recording")), progress_fields(part("completed"))], 3.0
    )
    assert (totals.basis, totals.recorded_s, totals.frames, totals.gap_s) == (
        "live",
        44.5,
        445,
        3.0,
    )
    assert totals_of([progress_fields(part("failed"))], 0).basis == "evidence"


def test_lost_at_once_with_the_time_it_fails():
    enc = Enclosure(id="enc-a", name="enc-a", state="lost", state_changed_at=T0)
    se = part("recording")
    assert is_lost(se, enc.state)
    assert lost_since(se.lost_since, enc) == T0  # before the bridge's tick records it
    se.lost_since = T0 - timedelta(seconds=2)
    assert lost_since(se.lost_since, enc) == T0 - timedelta(seconds=2)
    assert fails_at(lost_since(se.lost_since, enc), 60) == T0 + timedelta(seconds=58)
    assert not is_lost(part("timed_out"), "lost")
    assert not is_lost(se, "idle")
    assert not is_lost(se, "recording")
