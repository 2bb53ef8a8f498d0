"""Segment policy (UTC cuts, DST-proof) and file naming: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclosure_agent.recorder import RecordingConfigError, SegmentPolicy, segment_path
from enclosure_agent.recorder.segments import check_name_part, sidecar_path_for, utc_stamp

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def test_hourly_cuts_at_the_next_top_of_the_hour_in_utc() -> None:
    policy = SegmentPolicy.hourly()
    assert policy.next_cut(datetime(2026, 5, 9, 13, 0, 0, 1, tzinfo=UTC)) == datetime(
        2026, 5, 9, 14, tzinfo=UTC
    )
    assert policy.next_cut(datetime(2026, 5, 9, 13, 59, 59, tzinfo=UTC)) == datetime(
        2026, 5, 9, 14, tzinfo=UTC
    )


def test_a_cut_is_strictly_after_the_reference() -> None:
    on_the_hour = datetime(2026, 5, 9, 13, tzinfo=UTC)
    assert SegmentPolicy.hourly().next_cut(on_the_hour) == on_the_hour + timedelta(hours=1)


def test_hourly_ignores_the_offset_of_a_half_hour_zone() -> None:
    india = ZoneInfo("Asia/Kolkata")  # UTC+05:30: local tops of hours are not UTC tops
    local = datetime(2026, 5, 9, 10, 10, tzinfo=india)  # 04:40 UTC
    cut = SegmentPolicy.hourly().next_cut(local)
    assert cut == datetime(2026, 5, 9, 5, tzinfo=UTC)
    assert cut.astimezone(india).minute == 30


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        (BERLIN, datetime(2026, 3, 29)),  # spring forward: the local day has 23 hours
        (BERLIN, datetime(2026, 10, 25)),  # fall back: the local day has 25 hours
        (NEW_YORK, datetime(2026, 11, 1)),
    ],
)
def test_hourly_cuts_stay_one_utc_hour_apart_across_dst_changes(
    zone: ZoneInfo, day: datetime
) -> None:
    policy = SegmentPolicy.hourly()
    start = day.replace(tzinfo=zone)  # local midnight
    end = (day + timedelta(days=1)).replace(tzinfo=zone)
    cuts = []
    moment = start - timedelta(microseconds=1)  # local midnight is itself a UTC top of hour
    while True:
        moment = policy.next_cut(moment)
        if moment >= end:
            break
        cuts.append(moment)
    assert all(cut.tzinfo is UTC and cut.minute == cut.second == 0 for cut in cuts)
    assert all(b - a == timedelta(hours=1) for a, b in zip(cuts, cuts[1:], strict=False))
    # same-tzinfo subtraction in Python ignores DST: convert to UTC to count real hours
    local_hours = round((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 3600)
    assert local_hours != 24  # the day really is a DST-change day
    assert len(cuts) == local_hours  # one cut per real hour, none skipped or doubled


def test_minutes_policy_is_aligned_to_the_recording_start() -> None:
    start = datetime(2026, 5, 9, 13, 7, 42, tzinfo=UTC)
    policy = SegmentPolicy.every_minutes(10).starting_at(start)
    assert policy.next_cut(start) == start + timedelta(minutes=10)
    later = start + timedelta(minutes=25)
    assert policy.next_cut(later) == start + timedelta(minutes=30)


def test_seconds_policy_for_tests() -> None:
    start = datetime(2026, 5, 9, 13, 0, 0, 500_000, tzinfo=UTC)
    policy = SegmentPolicy.every_seconds(2).starting_at(start)
    assert policy.next_cut(start + timedelta(seconds=3)) == start + timedelta(seconds=4)


def test_recording_start_policy_needs_an_anchor() -> None:
    with pytest.raises(RecordingConfigError, match="starting_at"):
        SegmentPolicy.every_minutes(5).next_cut(datetime.now(UTC))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(RecordingConfigError, match="timezone-aware"):
        SegmentPolicy.hourly().next_cut(datetime(2026, 5, 9, 13))  # noqa: DTZ001


@pytest.mark.parametrize("minutes", [0, -5])
def test_bad_periods_are_refused(minutes: int) -> None:
    with pytest.raises(RecordingConfigError):
        SegmentPolicy.every_minutes(minutes)


def test_describe() -> None:
    assert SegmentPolicy.hourly().describe() == "hourly (UTC)"
    assert SegmentPolicy.every_minutes(15).describe() == "every 15 min from the recording start"


@given(
    seconds=st.integers(min_value=1, max_value=7200),
    offset=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    anchored=st.booleans(),
)
def test_next_cut_is_the_next_grid_point(seconds: int, offset: float, anchored: bool) -> None:
    anchor = datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    policy = SegmentPolicy.every_seconds(seconds).starting_at(anchor)
    if not anchored:
        policy = SegmentPolicy.hourly()
    after = anchor + timedelta(seconds=offset)
    cut = policy.next_cut(after)
    origin = anchor if anchored else datetime(1970, 1, 1, tzinfo=UTC)
    assert after < cut <= after + policy.period
    assert (cut - origin) % policy.period == timedelta(0)


def test_segment_path_layout() -> None:
    start = datetime(2026, 5, 9, 15, 4, 5, 999_999, tzinfo=BERLIN)  # 13:04:05 UTC
    path = segment_path(Path("/rec"), "sess-1", "cage7", "enc-03", start)
    assert path == Path("/rec/sess-1/cage7_enc-03_20260509T130405Z.mkv")
    assert sidecar_path_for(path) == Path("/rec/sess-1/cage7_enc-03_20260509T130405Z.frames.csv")


def test_segment_path_without_prefix_and_with_serial() -> None:
    start = datetime(2026, 5, 9, 13, 4, 5, tzinfo=UTC)
    path = segment_path(Path("/rec"), "s", "", "enc", start, serial=2)
    assert path.name == "enc_20260509T130405Z-2.mkv"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "empty"),
        ("../etc", "start with"),
        ("a/b", "forbidden"),
        (".hidden", "start with"),
        ("x" * 101, "longer"),
        ("tab\there", "forbidden"),
    ],
)
def test_unsafe_name_parts_are_refused(value: str, problem: str) -> None:
    with pytest.raises(RecordingConfigError, match=problem):
        check_name_part(value, "session id")


def test_utc_stamp_converts_to_utc() -> None:
    assert utc_stamp(datetime(2026, 1, 1, 0, 30, tzinfo=NEW_YORK)) == "20260101T053000Z"
