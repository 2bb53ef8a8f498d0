"""Camera sources, the spec parser, the capture loop and small helpers: no files, no devices."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime

import av
import numpy as np
import pytest

from enclosure_agent.recorder import (
    STALL_TIMEOUT_S,
    BaslerSource,
    Capture,
    CapturedFrame,
    CaptureState,
    EncoderSettings,
    FFmpegSource,
    PixelFormat,
    RecordingConfigError,
    SourceOpenError,
    SourceSpecError,
    SourceUnavailableError,
    StallableSource,
    StallNotice,
    TestPatternSource,
    default_denoise,
    encode_jpeg,
    open_source,
    read_frame_code,
)
from enclosure_agent.recorder.capture import FrameSubscription, RecoveryNotice
from enclosure_agent.recorder.font import GLYPH_HEIGHT, render_text
from enclosure_agent.recorder.jpeg import preview_size
from enclosure_agent.recorder.rate import RateMeter
from tests.support.waiting import wait_for


def test_stall_timeout_is_five_seconds() -> None:
    assert STALL_TIMEOUT_S == 5.0


# -- spec parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "fmt"),
    [
        ("testpattern", TestPatternSource, PixelFormat.RGB),
        ("testpattern:grey", TestPatternSource, PixelFormat.GREY),
        ("testpattern:gray", TestPatternSource, PixelFormat.GREY),
        ("basler", BaslerSource, None),
        ("basler:40012345", BaslerSource, None),
        ("/dev/video0", FFmpegSource, None),
        ("rtsp://cam.local:554/stream1", FFmpegSource, None),
        ("/data/clip.mkv", FFmpegSource, None),
    ],
)
def test_open_source_parses_specs(spec: str, kind: type, fmt: PixelFormat | None) -> None:
    source = open_source(spec, 320, 240, 15)
    assert isinstance(source, kind)
    if fmt is not None:
        assert source.pixel_format is fmt
    assert source.describe()


def test_v4l2_device_requests_size_and_rate() -> None:
    source = open_source("/dev/video2", 640, 480, 30)
    assert "v4l2" in source.describe()
    assert (source.width, source.height, source.fps) == (640, 480, 30)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("testpattern:blue", "variant"),
        ("testpattern:", "variant"),
        ("basler:", "serial"),
        ("basler:bad serial", "serial"),
        ("/dev/videoX", "V4L2"),
        ("my camera", "spaces"),
    ],
)
def test_bad_specs_say_what_is_accepted(spec: str, problem: str) -> None:
    with pytest.raises(SourceSpecError, match=problem) as caught:
        open_source(spec, 320, 240, 15)
    assert isinstance(caught.value, ValueError)


def test_basler_without_pypylon_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pypylon", None)
    monkeypatch.setitem(sys.modules, "pypylon.pylon", None)
    with pytest.raises(SourceUnavailableError, match=r"jaxmba\[basler\]"):
        BaslerSource().open()


def test_ffmpeg_source_with_empty_url_is_refused() -> None:
    with pytest.raises(SourceOpenError):
        FFmpegSource(" ")


# -- test pattern ---------------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, 1, 2, 12345, 2**31 + 7, 2**32 - 1])
@pytest.mark.parametrize(("width", "height", "grey"), [(320, 240, False), (68, 48, True)])
def test_frame_code_round_trips(number: int, width: int, height: int, grey: bool) -> None:
    source = TestPatternSource(width, height, 30, grey=grey)
    image = source.render(number, datetime(2026, 5, 9, 13, tzinfo=UTC))
    assert image.shape == ((height, width) if grey else (height, width, 3))
    assert read_frame_code(image) == number


def test_frame_code_survives_mild_distortion() -> None:
    source = TestPatternSource(320, 240, 30)
    image = source.render(987654, datetime(2026, 5, 9, 13, tzinfo=UTC)).astype(np.int16)
    noisy = np.clip(image + np.random.default_rng(1).integers(-40, 40, image.shape), 0, 255)
    assert read_frame_code(noisy.astype(np.uint8)) == 987654


def test_noise_keeps_the_frame_code() -> None:
    source = TestPatternSource(320, 240, 30, noise_bits=3)
    assert read_frame_code(source.render(4242, datetime(2026, 5, 9, 13, tzinfo=UTC))) == 4242


def test_burned_in_text_is_drawn() -> None:
    mask = render_text("2026-05-09T13:00:00.000Z F#1", scale=2)
    assert mask.shape[0] == GLYPH_HEIGHT * 2
    assert mask.any()
    source = TestPatternSource(320, 240, 30)
    a = source.render(1, datetime(2026, 5, 9, 13, tzinfo=UTC))
    b = source.render(1, datetime(2026, 5, 9, 14, tzinfo=UTC))
    assert not np.array_equal(a, b)  # only the time differs


@pytest.mark.parametrize(
    ("args", "problem"),
    [((32, 240, 30), "at least"), ((321, 240, 30), "even"), ((320, 240, 0), "fps")],
)
def test_test_pattern_validates(args: tuple[int, int, float], problem: str) -> None:
    with pytest.raises(RecordingConfigError, match=problem):
        TestPatternSource(*args)


def test_test_pattern_is_paced_by_the_clock() -> None:
    fps = 50.0
    source = TestPatternSource(68, 48, fps)
    source.open()
    started = time.monotonic()
    frames = [source.read(1.0) for _ in range(11)]
    elapsed = time.monotonic() - started
    source.close()
    assert all(frame is not None for frame in frames)
    got = [frame for frame in frames if frame is not None]
    assert [f.index for f in got] == list(range(11))
    assert elapsed >= 10 / fps * 0.95  # never faster than fps
    steps = {b.monotonic_ns - a.monotonic_ns for a, b in zip(got, got[1:], strict=False)}
    assert all(abs(step - 1e9 / fps) <= 1 for step in steps)
    assert got[-1].captured_at > got[0].captured_at
    assert not got[0].image.flags.writeable


def test_test_pattern_read_times_out_before_the_next_frame() -> None:
    source = TestPatternSource(68, 48, 1.0)
    source.open()
    assert source.read(1.0) is not None
    assert source.read(0.05) is None


def test_stallable_source_stalls_and_recovers() -> None:
    source = StallableSource(TestPatternSource(68, 48, 100))
    source.open()
    assert source.read(1.0) is not None
    source.stall()
    assert source.read(0.05) is None
    source.recover()
    assert source.read(1.0) is not None
    assert source.opens == 1


# -- capture loop with a scripted source ----------------------------------------------------


class ScriptedSource:
    """Fails to open ``failures`` times, then delivers frames while ``flowing`` is set."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.opens = 0
        self.closes = 0
        self.flowing = threading.Event()
        self.flowing.set()
        self.index = 0

    width, height, fps = 64, 48, 100.0
    pixel_format = PixelFormat.GREY

    def describe(self) -> str:
        return "scripted"

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.failures:
            raise SourceOpenError("no such camera")

    def close(self) -> None:
        self.closes += 1

    def read(self, timeout_s: float) -> CapturedFrame | None:
        if not self.flowing.wait(timeout_s):
            return None
        time.sleep(0.01)
        self.index += 1
        return CapturedFrame.now(np.zeros((48, 64), np.uint8), self.index)


def test_capture_retries_an_unopenable_camera_then_delivers() -> None:
    source = ScriptedSource(failures=2)
    changes: list[CaptureState] = []
    capture = Capture(source, backoff_initial_s=0.01, on_change=changes.append)
    with capture:
        frame = capture.wait_for_frame(timeout_s=5)
        assert frame is not None
        state = capture.state()
    assert source.opens == 3
    assert state.connected
    assert state.last_error is None
    assert state.reopen_attempts == 2
    assert any(c.last_error == "no such camera" for c in changes)
    assert not capture.running


def test_capture_declares_stall_reopens_and_recovers() -> None:
    source = ScriptedSource(failures=0)
    capture = Capture(source, stall_timeout_s=0.3, backoff_initial_s=0.05, backoff_max_s=0.1)
    with capture:
        subscription = capture.subscribe()
        assert capture.wait_for_frame(timeout_s=5) is not None
        source.flowing.clear()
        wait_for(lambda: capture.state().stalled, timeout=5, message="no stall declared")
        wait_for(lambda: source.opens >= 3, timeout=5, message="camera not reopened")
        late = capture.subscribe()  # a subscriber joining during the stall learns of it
        source.flowing.set()
        wait_for(lambda: not capture.state().stalled, timeout=5, message="no recovery")
    items = []
    while (item := subscription.get(0)) is not None:
        items.append(item)
    kinds = [type(item).__name__ for item in items if not isinstance(item, CapturedFrame)]
    assert kinds == ["StallNotice", "RecoveryNotice"]
    recovery = next(item for item in items if isinstance(item, RecoveryNotice))
    assert recovery.gap_s >= 0.3
    assert isinstance(late.get(0), StallNotice)


def test_subscription_drops_frames_beyond_its_budget_but_never_notices() -> None:
    frame = CapturedFrame.now(np.zeros((48, 64), np.uint8), 0)
    subscription = FrameSubscription(max_bytes=frame.nbytes * 2)
    assert subscription.put(frame)
    assert subscription.put(frame)
    assert not subscription.put(frame)
    assert subscription.put(StallNotice(datetime.now(UTC)))
    assert subscription.dropped == 1
    assert len(subscription) == 3


# -- helpers --------------------------------------------------------------------------------


def test_rate_meter() -> None:
    meter = RateMeter(window_s=1.0)
    assert meter.rate() == 0.0
    for i in range(31):
        meter.add(i * 33_333_333)
    assert meter.rate() == pytest.approx(30.0, rel=0.01)
    assert meter.rate(now_ns=10**10) == 0.0  # nothing within the window any more


def test_encoder_settings_validate() -> None:
    with pytest.raises(RecordingConfigError, match="crf"):
        EncoderSettings(crf=52)
    with pytest.raises(RecordingConfigError, match="preset"):
        EncoderSettings(preset="ludicrous")
    with pytest.raises(RecordingConfigError, match="one of"):
        EncoderSettings(denoise="scale=10:10")
    with pytest.raises(RecordingConfigError, match="single filter"):
        EncoderSettings(denoise="atadenoise,scale=10:10")
    with pytest.raises(RecordingConfigError, match="x264 params"):
        EncoderSettings(x264_params="cabac=1, bframes=3")
    assert EncoderSettings(preset="veryfast", x264_params="").preset == "veryfast"


def test_hqdn3d_is_used_when_ffmpeg_has_it() -> None:
    has_hqdn3d = "hqdn3d" in av.filter.filters_available
    assert default_denoise().startswith("hqdn3d" if has_hqdn3d else "atadenoise")
    if not has_hqdn3d:
        with pytest.raises(RecordingConfigError, match="GPL-only"):
            EncoderSettings(denoise="hqdn3d=4:3:6:4.5")


@pytest.mark.parametrize("grey", [False, True])
def test_encode_jpeg_downscales(grey: bool) -> None:
    image = TestPatternSource(640, 480, 30, grey=grey).render(5, datetime.now(UTC))
    data = encode_jpeg(image, max_width=320, quality=80)
    assert data[:2] == b"\xff\xd8"
    assert data[-2:] == b"\xff\xd9"
    context = av.CodecContext.create("mjpeg", "r")
    (decoded,) = context.decode(av.Packet(data))
    assert (decoded.width, decoded.height) == (320, 240)
    small = encode_jpeg(image, max_width=320, quality=10)
    assert len(small) < len(data)


def test_preview_size_keeps_aspect_and_even_sides() -> None:
    assert preview_size(1280, 720, 640) == (640, 360)
    assert preview_size(320, 240, 640) == (320, 240)
    assert preview_size(1000, 750, 333) == (332, 250)
    with pytest.raises(RecordingConfigError):
        encode_jpeg(np.zeros((48, 64), np.uint8), quality=0)
