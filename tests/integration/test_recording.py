"""Real recordings of the test-pattern camera, decoded back with PyAV.

Every test records real H.264/Matroska files into ``tmp_path`` and checks them frame by
frame: the test pattern's machine-readable frame number proves no frame was lost.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
import pytest

from enclosure_agent.recorder import (
    Capture,
    CapturedFrame,
    EncoderSettings,
    FFmpegSource,
    Recorder,
    RecorderCallbacks,
    RecorderState,
    RecordingConfigError,
    RecordingSpec,
    SegmentInfo,
    SegmentPolicy,
    SegmentWriter,
    SourceOpenError,
    StallableSource,
    StopReason,
    TestPatternSource,
    default_denoise,
    encode_jpeg,
    open_source,
    read_frame_code,
    read_sidecar,
)
from enclosure_agent.recorder.frame import utc_now
from enclosure_agent.recorder.sidecar import SIDECAR_HEADER
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # records and decodes real video

REPO = Path(__file__).resolve().parents[2]
FPS = 15
SIZE = (320, 240)  # small: these tests are about frames and time, not resolution
WAIT_S = 30.0  # generous upper bound for a recording to finish on a busy CI machine


@dataclass
class Decoded:
    pts: list[int]
    codes: list[int]
    pix_fmt: str
    extradata: bytes
    planes: list[np.ndarray] = field(default_factory=list)


def decode(path: Path, *, keep_planes: bool = False) -> Decoded:
    """Every frame of a segment: pts (ms), test-pattern frame numbers, stream format."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        assert stream.time_base.denominator == 1000
        decoded = Decoded(
            [], [], stream.codec_context.pix_fmt or "", stream.codec_context.extradata or b""
        )
        try:
            for frame in container.decode(stream):
                assert frame.pts is not None
                decoded.pts.append(frame.pts)
                decoded.codes.append(read_frame_code(frame.to_ndarray(format="gray")))
                if keep_planes:
                    decoded.planes.append(frame.to_ndarray())
        except av.error.InvalidDataError:
            pass  # the torn tail of a file whose writer was killed
    return decoded


def h264_chroma_format(extradata: bytes) -> int:
    """chroma_format_idc from the SPS in an avcC record (0 = monochrome 4:0:0)."""
    sps_length = int.from_bytes(extradata[6:8], "big")
    sps = extradata[8 : 8 + sps_length]
    if sps[1] not in (100, 110, 122, 244):  # only High profiles carry chroma_format_idc
        return 1  # Baseline/Main: always 4:2:0
    bits = "".join(f"{byte:08b}" for byte in sps[4:])
    position = 0

    def exp_golomb() -> int:
        nonlocal position
        zeros = 0
        while bits[position] == "0":
            zeros += 1
            position += 1
        position += 1
        value = int(bits[position : position + zeros] or "0", 2)
        position += zeros
        return (1 << zeros) - 1 + value

    exp_golomb()  # seq_parameter_set_id
    return exp_golomb()


class Events:
    """Collects recorder callbacks; tests wait on them with timeouts."""

    def __init__(self) -> None:
        self.closed: list[SegmentInfo] = []
        self.stalled: list[datetime] = []
        self.recovered: list[float] = []
        self.failed: list[str] = []
        self.stopped: list[StopReason] = []
        self.order: list[str] = []
        self.thread_names: set[str] = set()
        self.changed = threading.Condition()

    def callbacks(self) -> RecorderCallbacks:
        return RecorderCallbacks(
            on_segment_closed=lambda info: self._add("closed", self.closed, info),
            on_stalled=lambda since: self._add("stalled", self.stalled, since),
            on_recovered=lambda gap: self._add("recovered", self.recovered, gap),
            on_failed=lambda reason: self._add("failed", self.failed, reason),
            on_stopped=lambda reason: self._add("stopped", self.stopped, reason),
        )

    def _add(self, name: str, bucket: list[Any], value: object) -> None:
        with self.changed:
            bucket.append(value)
            self.order.append(name)
            self.thread_names.add(threading.current_thread().name)
            self.changed.notify_all()

    def wait(self, predicate: Callable[[], object], timeout: float = WAIT_S) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), f"events so far: {self.order}"


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def capture() -> Iterator[Capture]:
    with Capture(TestPatternSource(*SIZE, FPS)) as running:
        yield running


def spec(root: Path, **overrides: object) -> RecordingSpec:
    values: dict[str, object] = {
        "root": root,
        "session_id": "session-1",
        "enclosure_id": "enc-07",
        "file_prefix": "cage",
        "target_fps": FPS,
    }
    values.update(overrides)
    return RecordingSpec(**values)  # type: ignore[arg-type]


def check_segment(info: SegmentInfo) -> Decoded:
    """The file matches its SegmentInfo and its sidecar, frame for frame."""
    data = info.path.read_bytes()
    assert info.bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    decoded = decode(info.path)
    rows = read_sidecar(info.sidecar_path)
    assert len(rows) == len(decoded.pts) == info.frames
    assert decoded.pts == sorted(set(decoded.pts)), "pts strictly increasing"
    assert [row.pts_ms for row in rows] == decoded.pts
    first = rows[0]
    for row in rows:  # pts are the capture clock relative to the segment's first frame
        assert abs(row.pts_ms - (row.monotonic_ns - first.monotonic_ns) / 1e6) <= 1
    assert [row.source_index for row in rows] == decoded.codes
    assert rows[0].capture_utc == info.started_at
    assert rows[-1].capture_utc == info.ended_at
    return decoded


def test_ten_seconds_of_test_pattern(tmp_path: Path, capture: Capture, events: Events) -> None:
    seconds = 10
    end_at = utc_now() + timedelta(seconds=seconds)
    recorder = Recorder(capture, spec(tmp_path, end_at=end_at), events.callbacks())
    recorder.start()
    assert recorder.wait(seconds + WAIT_S)
    assert events.stopped == [StopReason.END_TIME]
    assert events.order[-1] == "stopped"
    assert events.thread_names == {"recorder-events:session-1"}

    segments = recorder.segments
    assert segments == tuple(events.closed)
    assert 1 <= len(segments) <= 2  # two if the run straddles the top of a UTC hour
    codes = [code for info in segments for code in check_segment(info).codes]
    assert codes == list(range(codes[0], codes[0] + len(codes))), "a frame was lost"
    # it ran to its end time: the last frame is the last one exposed before it
    last = segments[-1].ended_at
    assert last < end_at <= last + timedelta(seconds=1 / FPS), (last, end_at)

    stats = recorder.stats()
    assert stats.state is RecorderState.STOPPED
    assert stats.frames_written == len(codes)
    assert stats.frames_dropped == 0
    assert stats.recorded_s == pytest.approx(len(codes) / FPS, abs=0.01)
    assert stats.measured_fps == pytest.approx(FPS, rel=0.05)
    assert stats.segments_closed == len(segments)
    assert stats.current_file is None
    assert stats.error is None
    name = segments[0].path.name
    assert segments[0].path.parent == tmp_path / "session-1"
    assert name.startswith("cage_enc-07_")
    assert name.endswith("Z.mkv")
    header = segments[0].sidecar_path.read_text().splitlines()[0]
    assert header == ",".join(SIDECAR_HEADER)


def test_segment_cuts_lose_no_frame(tmp_path: Path, capture: Capture, events: Events) -> None:
    period = 2
    started = utc_now()
    recorder = Recorder(
        capture,
        spec(
            tmp_path,
            segment_policy=SegmentPolicy.every_seconds(period),
            end_at=started + timedelta(seconds=3 * period + 1),
        ),
        events.callbacks(),
    )
    recorder.start()
    assert recorder.wait(WAIT_S)
    segments = recorder.segments
    assert len(segments) == 4
    decoded = [check_segment(info) for info in segments]
    codes = [code for d in decoded for code in d.codes]
    assert codes == list(range(codes[0], codes[0] + len(codes))), "a frame was lost at a cut"
    for before, after in zip(segments, segments[1:], strict=False):
        gap = (after.started_at - before.ended_at).total_seconds()
        assert gap == pytest.approx(1 / FPS, abs=0.002)  # consecutive frames across the cut
    # every cut falls on the grid: the first frame of a segment is the first at/after its cut
    anchor = segments[0].started_at
    for index, info in enumerate(segments[1:], start=1):
        assert info.started_at >= anchor + timedelta(seconds=index * period) - timedelta(
            seconds=1 / FPS
        )
    assert len({info.path for info in segments}) == 4
    assert events.order == ["closed"] * 4 + ["stopped"]


class SlowToOpen(StallableSource):
    """A camera whose open() returns only once the test says so (a Basler that takes seconds)."""

    def __init__(self, inner: TestPatternSource) -> None:
        super().__init__(inner)
        self.release = threading.Event()

    def open(self) -> None:
        self.release.wait(WAIT_S)
        super().open()


def test_segments_count_from_the_first_frame_not_from_start(tmp_path: Path, events: Events) -> None:
    """A camera slow to deliver its first frame must not leave a first file of a few frames: the
    period runs from the first frame written. (Counted from start(), a camera open 1.5 s late
    on a 2 s period made a 0.5 s first file, named in the same second as the next one.)"""
    period = 2
    camera = SlowToOpen(TestPatternSource(*SIZE, FPS))
    capture = Capture(camera)
    try:
        recorder = Recorder(
            capture,
            spec(tmp_path, segment_policy=SegmentPolicy.every_seconds(period)),
            events.callbacks(),
        )
        recorder.start()  # starts the capture, whose thread now waits in open()
        started = utc_now()
        wait_for(lambda: utc_now() >= started + timedelta(seconds=1.5), WAIT_S)
        assert recorder.stats().frames_written == 0
        camera.release.set()
        events.wait(lambda: len(events.closed) >= 1)
        assert recorder.stop()
    finally:
        camera.release.set()
        capture.close()
    first = events.closed[0]
    assert first.started_at >= started + timedelta(seconds=1.5)
    span = (first.ended_at - first.started_at).total_seconds()
    assert span >= period - 2 / FPS, f"first segment spans {span:.2f} s of a {period} s period"
    assert first.frames >= (period - 2 / FPS) * FPS


def test_stop_closes_the_last_segment(tmp_path: Path, capture: Capture, events: Events) -> None:
    recorder = Recorder(capture, spec(tmp_path), events.callbacks())
    recorder.start()
    wait_for(lambda: recorder.stats().frames_written >= FPS, message="no frames written")
    stats = recorder.stats()
    assert stats.state is RecorderState.RECORDING
    assert stats.current_file is not None
    assert stats.current_file.exists()
    assert stats.segment_started_at is not None
    assert recorder.stop()
    assert events.stopped == [StopReason.REQUESTED]
    (info,) = recorder.segments
    assert info.path == stats.current_file
    check_segment(info)
    assert capture.running  # the camera stays open for live view


def test_greyscale_stays_greyscale_with_the_denoise_stage(tmp_path: Path, events: Events) -> None:
    with Capture(TestPatternSource(*SIZE, FPS, grey=True, noise_bits=2)) as grey_capture:
        recorder = Recorder(
            grey_capture,
            spec(
                tmp_path,
                encoder=EncoderSettings(denoise=default_denoise()),
                end_at=utc_now() + timedelta(seconds=2),
            ),
            events.callbacks(),
        )
        recorder.start()
        assert recorder.wait(WAIT_S)
    (info,) = recorder.segments
    check_segment(info)  # the filter keeps every frame and its timestamp
    decoded = decode(info.path, keep_planes=True)
    assert h264_chroma_format(decoded.extradata) == 0  # 4:0:0, no colour planes at all
    # FFmpeg's decoder hands monochrome H.264 out as yuv420p with neutral chroma
    plane = decoded.planes[0]
    height = SIZE[1]
    assert np.all(plane[height:] == 128)


def test_colour_is_encoded_as_yuv420p(tmp_path: Path) -> None:
    source = TestPatternSource(*SIZE, FPS)
    source.open()
    frame = source.read(1.0)
    assert frame is not None
    writer = SegmentWriter.create(
        tmp_path,
        session_id="s",
        file_prefix="",
        enclosure_id="e",
        started_at=frame.captured_at,
        width=frame.width,
        height=frame.height,
        pixel_format=frame.pixel_format,
        fps=FPS,
    )
    writer.write(frame)
    info = writer.close()
    decoded = check_segment(info)
    assert decoded.pix_fmt == "yuv420p"
    assert h264_chroma_format(decoded.extradata) == 1


def test_stalled_camera_is_detected_and_recovered(tmp_path: Path, events: Events) -> None:
    camera = StallableSource(TestPatternSource(*SIZE, FPS))
    stall_s = 1.0  # the agent uses STALL_TIMEOUT_S (5 s); a shorter one keeps the test quick
    with Capture(camera, stall_timeout_s=stall_s, backoff_initial_s=0.2) as stalling:
        recorder = Recorder(stalling, spec(tmp_path), events.callbacks())
        recorder.start()
        wait_for(lambda: recorder.stats().frames_written >= FPS, message="no frames written")
        camera.stall()
        events.wait(lambda: events.stalled and events.closed)
        assert recorder.stats().state is RecorderState.STALLED
        assert recorder.stats().error is not None
        wait_for(lambda: camera.opens >= 3, message="the camera was not reopened")
        camera.recover()
        events.wait(lambda: events.recovered)
        wait_for(lambda: recorder.stats().frames_written >= events.closed[0].frames + FPS)
        assert recorder.stats().state is RecorderState.RECORDING
        assert recorder.stats().error is None
        assert recorder.stop()
    assert events.order == ["stalled", "closed", "recovered", "closed", "stopped"]
    assert events.stalled[0] == events.closed[0].ended_at  # stalled since the last frame
    assert events.recovered[0] >= stall_s
    first, second = recorder.segments
    assert first.path != second.path  # the gap in the footage is a file boundary
    codes = [check_segment(info).codes for info in (first, second)]
    for run in codes:
        assert run == list(range(run[0], run[0] + len(run)))
    assert codes[1][0] > codes[0][-1] + 1  # the frames of the stall are missing at the camera
    gap = (second.started_at - first.ended_at).total_seconds()
    assert gap == pytest.approx(events.recovered[0], abs=0.01)


def _recording_child(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A process recording the test pattern into ``tmp_path / "s"`` until killed."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from enclosure_agent.recorder import (
            Capture, Recorder, RecordingSpec, SegmentPolicy, TestPatternSource
        )
        capture = Capture(TestPatternSource({SIZE[0]}, {SIZE[1]}, {FPS}))
        # One file whatever the hour: the default hourly (UTC) policy cuts at the top of it.
        spec = RecordingSpec(
            Path({str(tmp_path)!r}), "s", "e", target_fps={FPS},
            segment_policy=SegmentPolicy.every_minutes(60),
        )
        recorder = Recorder(capture, spec)
        recorder.start()
        recorder.wait()
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO)


def _sidecar_rows(session: Path) -> int:
    sidecars = list(session.glob("*.frames.csv")) if session.exists() else []
    return len(read_sidecar(sidecars[0])) if sidecars else 0


def test_kill_minus_9_leaves_a_playable_segment(tmp_path: Path) -> None:
    child = _recording_child(tmp_path)
    try:
        session = tmp_path / "s"
        wait_for(
            lambda: _sidecar_rows(session) >= 3 * FPS, timeout=WAIT_S, message="child not recording"
        )
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(WAIT_S)
    assert child.returncode == -signal.SIGKILL
    (video,) = session.glob("*.mkv")
    decoded = decode(video)
    rows = read_sidecar(video.with_name(video.stem + ".frames.csv"))
    assert len(rows) >= 3 * FPS
    # The sidecar may list a few frames the file lacks (the open cluster, the encoder's delay):
    # about a second at most. Counted in frames, as a busy machine cannot change that.
    assert len(rows) - FPS <= len(decoded.pts) <= len(rows), (len(rows), len(decoded.pts))
    # Every frame in the file is the one its sidecar row names (the test pattern's number), in
    # order: the camera's numbers run on unless the recorder fell behind it (listed alike).
    assert decoded.codes == [row.source_index for row in rows[: len(decoded.codes)]]
    assert decoded.codes == sorted(set(decoded.codes))
    assert [row.pts_ms for row in rows[: len(decoded.pts)]] == decoded.pts


def test_kill_minus_9_loses_at_most_half_a_second(tmp_path: Path) -> None:
    """The frames a crash takes with it are those not yet in the file: at most the open Matroska
    cluster (0.25 s of frames) and the encoder's delay. Killed well into a cluster (0.6 s after
    the file last grew), the torn file still holds every frame the recorder had encoded (each
    listed in the sidecar as it goes in) but half a second's worth at most. Counted in frames,
    so a busy machine (a recorder late behind its camera) cannot change the verdict."""
    child = _recording_child(tmp_path)
    session = tmp_path / "s"
    try:
        wait_for(lambda: _sidecar_rows(session) >= 2 * FPS, WAIT_S, message="child not recording")
        (video,) = session.glob("*.mkv")
        size = video.stat().st_size
        wait_for(lambda: video.stat().st_size != size, WAIT_S, message="the file never grew")
        grew = utc_now()
        wait_for(lambda: utc_now() >= grew + timedelta(seconds=0.6), WAIT_S)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(WAIT_S)
    decoded = decode(video)
    rows = read_sidecar(video.with_name(video.stem + ".frames.csv"))
    lost = len(rows) - len(decoded.pts)
    assert 0 <= lost <= FPS // 2, f"{len(rows)} frames encoded, {len(decoded.pts)} in the file"
    # and the sidecar still gives the capture time of every frame in the file
    assert [row.pts_ms for row in rows[: len(decoded.pts)]] == decoded.pts


def test_write_error_fails_cleanly(tmp_path: Path) -> None:
    limit = 200_000  # the file-size limit stands in for a full disk (EFBIG instead of ENOSPC)
    script = textwrap.dedent(
        f"""
        import json, resource, signal
        from pathlib import Path
        from enclosure_agent.recorder import (
            Capture, Recorder, RecorderCallbacks, RecordingSpec, TestPatternSource,
        )
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        events = []
        callbacks = RecorderCallbacks(
            on_segment_closed=lambda i: events.append(["closed", i.frames, i.bytes]),
            on_failed=lambda reason: events.append(["failed", reason]),
            on_stopped=lambda reason: events.append(["stopped", reason]),
        )
        capture = Capture(TestPatternSource({SIZE[0]}, {SIZE[1]}, 30, noise_bits=3))
        spec = RecordingSpec(Path({str(tmp_path)!r}), "s", "e", target_fps=30)
        recorder = Recorder(capture, spec, callbacks)
        recorder.start()
        assert recorder.wait(60)
        print(json.dumps([events, recorder.stats().state]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    events, state = json.loads(done.stdout.splitlines()[-1])
    assert state == "failed"
    assert [event[0] for event in events] == ["closed", "failed", "stopped"]
    assert events[0][2] == limit  # the partial segment is still reported, with its checksum
    assert "File too large" in events[1][1]
    assert events[2][1] == "failed"
    (video,) = (tmp_path / "s").glob("*.mkv")
    assert len(decode(video).codes) > 0  # and what made it to disk still plays


def test_end_time_in_the_past_is_refused(tmp_path: Path, capture: Capture) -> None:
    recorder = Recorder(capture, spec(tmp_path, end_at=utc_now() - timedelta(seconds=1)))
    with pytest.raises(RecordingConfigError, match="passed"):
        recorder.start()


def test_live_preview_shares_the_camera_with_the_recorder(tmp_path: Path) -> None:
    camera = StallableSource(TestPatternSource(640, 480, FPS))
    with Capture(camera) as shared:
        first = shared.wait_for_frame(timeout_s=WAIT_S)  # preview works without a recording
        assert first is not None
        jpeg = encode_jpeg(first, max_width=320)
        with av.open(io.BytesIO(jpeg), mode="r") as image:
            decoded = next(image.decode(video=0))
        assert (decoded.width, decoded.height) == (320, 240)
        recorder = Recorder(shared, spec(tmp_path, end_at=utc_now() + timedelta(seconds=1)))
        recorder.start()
        newer = shared.wait_for_frame(newer_than_ns=first.monotonic_ns, timeout_s=WAIT_S)
        assert newer is not None
        assert newer.index > first.index
        assert recorder.wait(WAIT_S)
        assert shared.latest_frame() is not None
    assert camera.opens == 1  # opened once for preview and recording


def test_ffmpeg_source_replays_a_file_as_a_camera(tmp_path: Path, events: Events) -> None:
    source = TestPatternSource(*SIZE, 30)
    clip = tmp_path / "clip.mkv"
    writer = SegmentWriter(
        clip, width=SIZE[0], height=SIZE[1], pixel_format=source.pixel_format, fps=30
    )
    start = utc_now()
    for number in range(30):
        offset = timedelta(seconds=number / 30)
        image = source.render(number, start + offset)
        writer.write(CapturedFrame(image, start + offset, number * 33_333_333, number))
    writer.close()

    replay = FFmpegSource(str(clip))
    with Capture(replay) as capture:
        recorder = Recorder(capture, spec(tmp_path / "out", target_fps=30), events.callbacks())
        recorder.start()
        wait_for(lambda: recorder.stats().frames_written >= 30, timeout=WAIT_S)
        assert recorder.stop()
    assert replay.width == SIZE[0]
    assert replay.height == SIZE[1]
    (info,) = recorder.segments
    decoded = check_segment(info)
    assert decoded.codes == list(range(30))
    duration = (info.ended_at - info.started_at).total_seconds()
    assert duration >= 29 / 30 - 0.15  # paced like a camera, not decoded flat out


def test_missing_inputs_fail_to_open_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match="cannot open"):
        open_source(str(tmp_path / "missing.mkv"), 320, 240, 15).open()
    with pytest.raises(SourceOpenError, match="/dev/video99"):
        open_source("/dev/video99", 320, 240, 15).open()


def test_sidecar_with_a_torn_last_line_is_read_up_to_it(tmp_path: Path) -> None:
    path = tmp_path / "x.frames.csv"
    path.write_text(
        ",".join(SIDECAR_HEADER)
        + "\n0,0,2026-05-09T13:00:00.000000Z,100,7\n1,33,2026-05-09T13:00:00.0333"
    )
    (row,) = read_sidecar(path)
    assert row.source_index == 7


def test_basler_emulated_camera(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    pytest.importorskip("pypylon.pylon", reason="the basler extra (pypylon) is not installed")
    monkeypatch.setenv("PYLON_CAMEMU", "1")
    camera = open_source("basler", *SIZE, FPS)
    with Capture(camera) as basler:
        recorder = Recorder(basler, spec(tmp_path), events.callbacks())
        recorder.start()
        wait_for(lambda: recorder.stats().frames_written >= FPS, timeout=WAIT_S)
        assert recorder.stop()
    assert "Basler" in camera.describe()
    (info,) = recorder.segments
    with av.open(str(info.path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == info.frames >= FPS
    rows = read_sidecar(info.sidecar_path)
    indices = [row.source_index for row in rows]
    assert indices == list(range(indices[0], indices[0] + len(indices)))  # camera frame ids


def test_closing_the_capture_under_a_recorder_fails_it(tmp_path: Path, events: Events) -> None:
    capture = Capture(TestPatternSource(*SIZE, FPS))
    recorder = Recorder(capture, spec(tmp_path), events.callbacks())
    recorder.start()  # starts the capture too
    wait_for(lambda: recorder.stats().frames_written >= 3, message="no frames written")
    capture.close()
    assert recorder.wait(WAIT_S)
    assert events.order == ["closed", "failed", "stopped"]
    assert "capture was closed" in events.failed[0]
    assert recorder.stats().state is RecorderState.FAILED
    check_segment(events.closed[0])
