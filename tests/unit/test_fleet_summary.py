"""What the fleet summary keeps of a status (``fleet_summary.status_values``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from controlsvc.store.fleet_summary import ERROR_MAX, iso_utc, status_values


def status(**parts):
    body = {
        "camera": {
            "source": "/dev/video0",
            "connected": True,
            "recording": False,
            "measured_fps": 29.97,
            "frames_written": 0,
        },
        "recording": None,
        "system": {"disk_total_bytes": 1000, "disk_free_bytes": 725},
        "clock": {"offset_s": 0.01234, "skewed": False},
        "last_error": None,
    }
    for key, value in parts.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def test_idle_status():
    assert status_values(status()) == {
        "summary_disk_free_pct": 72.5,
        "summary_clock_offset_s": 0.012,
        "summary_fps": 30.0,
        "summary_error": None,
        "summary_recording": None,
    }


def test_recording_status_gives_no_recording_figures():
    # A recording's session, seconds and frames come from the session (session_progress),
    # the same figures the session pages show; the heartbeat's own are not kept.
    values = status_values(
        status(
            camera={"recording": True, "frames_written": 1830},
            recording={"session_id": "s-123", "recorded_s": 61.04, "file": "x"},
        )
    )
    assert not any(
        key.startswith(("summary_session", "summary_recorded", "summary_frames")) for key in values
    )
    # Only which session it says it records, for the bridge's fleet topic.
    assert values["summary_recording"] == "s-123"
    assert status_values(status(camera={"recording": True}))["summary_recording"] == ""


def test_camera_not_connected_has_no_fps_and_says_why():
    values = status_values(status(camera={"connected": False}))
    assert values["summary_fps"] is None
    assert values["summary_error"] == "camera /dev/video0 not connected"


def test_long_errors_are_cut_and_missing_values_are_none():
    values = status_values(status(last_error="x" * 500, system={"disk_total_bytes": 0}))
    assert len(values["summary_error"]) == ERROR_MAX
    assert values["summary_error"].endswith("…")
    assert values["summary_disk_free_pct"] is None
    assert status_values(None) == dict.fromkeys(values)


def test_iso_utc_whole_seconds_in_utc():
    at = datetime(2026, 12, 3, 20, 40, 5, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(at) == "2026-12-03T18:40:05Z"
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert iso_utc(None) is None
