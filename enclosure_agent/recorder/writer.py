"""One segment file: H.264 in Matroska, written with PyAV, plus its frame sidecar.

Presentation timestamps come from the capture clock (``monotonic_ns`` relative to the
segment's first frame, in milliseconds), so true frame times survive even when the camera
jitters or drops frames; the target fps is kept as the stream's nominal rate.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import av.error
import av.filter
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange, Colorspace
from av.video.stream import VideoStream

from .errors import RecordingConfigError, WriteError
from .evidence import read_evidence
from .frame import CapturedFrame, PixelFormat
from .segments import segment_path, sidecar_path_for
from .sidecar import SidecarWriter

__all__ = [
    "DEFAULT_CRF",
    "DEFAULT_PRESET",
    "DEFAULT_X264_PARAMS",
    "HQDN3D_DEFAULT",
    "EncoderSettings",
    "FinishedSegment",
    "SegmentInfo",
    "SegmentWriter",
    "default_denoise",
]

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # Matroska stores timestamps in milliseconds
CODEC = "libx264"  # H.264: decodable everywhere, and libx264 ships inside PyAV's wheels
DEFAULT_CRF = 17  # x264's "visually lossless" point: research video, not streaming
DEFAULT_PRESET = "ultrafast"  # the only preset keeping 1280x720@30 under one core here (bench/)
DEFAULT_X264_PARAMS = "cabac=1"  # CABAC back on: 15-25 % smaller files for next to no CPU
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
MAX_CRF = 51  # libx264's 8-bit CRF range is 0 (lossless) to 51
KEYFRAME_INTERVAL_S = 2.0  # seek granularity for analysis tools, and the most a torn GOP costs
HQDN3D_DEFAULT = "hqdn3d=4:3:6:4.5"  # the original's apply_filter; FFmpeg's hqdn3d defaults
ATADENOISE_DEFAULT = "atadenoise"  # LGPL stand-in when FFmpeg lacks the GPL-only hqdn3d
DENOISE_FILTERS = frozenset(  # single-input, same-size video denoisers accepted as the stage
    {
        "hqdn3d",
        "atadenoise",
        "removegrain",
        "nlmeans",
        "fftdnoiz",
        "bm3d",
        "tmedian",
        "vaguedenoiser",
    }
)
CLUSTER_TIME_LIMIT_MS = 250  # Matroska clusters are written at least every 0.25 s (crash loss)
COLOUR_PIX_FMT = "yuv420p"  # what every H.264 decoder and player accepts
GREY_PIX_FMT = "gray"  # libx264 encodes 4:0:0 (monochrome) H.264; greyscale stays greyscale
AVCOL_SPC_SMPTE170M = 6  # BT.601 matrix, matching swscale's default RGB->YUV conversion
HASH_CHUNK_BYTES = 1 << 20  # read segments in 1 MiB chunks when hashing


def default_denoise() -> str:
    """The denoise stage for ``apply_filter``: hqdn3d when this FFmpeg has it, else atadenoise.

    hqdn3d is GPL-only and PyAV's LGPL wheels leave it out; atadenoise (adaptive temporal
    averaging) is the closest LGPL filter at a similar cost (see docs/recording.md).
    """
    return HQDN3D_DEFAULT if "hqdn3d" in av.filter.filters_available else ATADENOISE_DEFAULT


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """How segments are encoded.

    ``denoise`` is the optional filter stage (the original's ``apply_filter``): an FFmpeg
    denoiser with its arguments, such as ``"hqdn3d=4:3:6:4.5"`` or ``"atadenoise"``, or
    ``None`` for none; :func:`default_denoise` picks the best one this FFmpeg offers.
    """

    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    x264_params: str = DEFAULT_X264_PARAMS  # extra libx264 options, "key=value:key=value"
    denoise: str | None = None
    keyframe_interval_s: float = KEYFRAME_INTERVAL_S
    threads: int = 0  # 0 = libx264 decides (about 1.5 threads per core)

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= MAX_CRF:
            raise RecordingConfigError(f"crf must be in 0..{MAX_CRF}, got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise RecordingConfigError(
                f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}"
            )
        if self.keyframe_interval_s <= 0:
            raise RecordingConfigError(
                f"keyframe interval must be > 0, got {self.keyframe_interval_s}"
            )
        if any(c in self.x264_params for c in ", \n"):
            raise RecordingConfigError(
                f"x264 params must be key=value:..., got {self.x264_params!r}"
            )
        if self.threads < 0:
            raise RecordingConfigError(f"threads must be >= 0, got {self.threads}")
        if self.denoise is not None:
            if any(c in self.denoise for c in ",;[]"):
                raise RecordingConfigError(
                    f"denoise filter must be a single filter, got {self.denoise!r}"
                )
            name = self.denoise.partition("=")[0]
            if name not in DENOISE_FILTERS:
                allowed = ", ".join(sorted(DENOISE_FILTERS))
                raise RecordingConfigError(f"denoise filter must be one of {allowed}, got {name!r}")
            if name not in av.filter.filters_available:
                raise RecordingConfigError(
                    f"this FFmpeg build has no {name} filter (hqdn3d is GPL-only); "
                    f"use {default_denoise()!r}"
                )


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """Proof of a closed segment: what is on disk, its time span and its checksum."""

    path: Path
    sidecar_path: Path
    started_at: datetime  # capture time (UTC) of the first frame
    ended_at: datetime  # capture time (UTC) of the last frame
    frames: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class FinishedSegment:
    """A segment whose writer is closed but which is not yet fsynced and hashed.

    ``damaged``: a write or the close failed, so ``frames`` (what the writer was given) is no
    proof of what reached the disk; ``finalize`` then takes the evidence from the file.
    """

    path: Path
    sidecar_path: Path
    started_at: datetime
    ended_at: datetime
    frames: int
    damaged: bool = False

    def finalize(self) -> SegmentInfo:
        """fsync the files and their directory, then measure and hash the video (slow)."""
        if self.damaged:
            return self._from_file()
        try:
            with self.path.open("rb") as handle:
                os.fsync(handle.fileno())
                size = os.fstat(handle.fileno()).st_size
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise WriteError(f"cannot finalize {self.path}: {exc}") from exc
        return SegmentInfo(
            self.path, self.sidecar_path, self.started_at, self.ended_at, self.frames, size, digest
        )

    def _from_file(self) -> SegmentInfo:
        for target in (self.path, self.sidecar_path):
            try:  # best effort: the disk that failed a write may fail this too
                with target.open("rb") as handle:
                    os.fsync(handle.fileno())
            except OSError as exc:
                log.warning("cannot fsync %s after a write error: %s", target, exc)
        evidence = read_evidence(self.path, self.sidecar_path, self.started_at)
        if evidence is None:
            raise WriteError(f"{self.path} holds nothing to report after a write error")
        if evidence.frames != self.frames:
            log.warning(
                "segment %s: %d of the %d frame(s) written reached the file",
                self.path,
                evidence.frames,
                self.frames,
            )
        return SegmentInfo(
            self.path,
            self.sidecar_path,
            evidence.started_at,
            evidence.ended_at,
            evidence.frames,
            evidence.bytes,
            evidence.sha256,
        )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """Encodes frames into one ``.mkv`` file and its ``.frames.csv`` sidecar.

    Create with :meth:`create` (picks the file name, never overwrites), ``write`` frames of
    one size and pixel format, then ``close()`` (or ``finish()`` + ``finalize()`` to hash
    in another thread). Every I/O or encoder failure raises :class:`WriteError`.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        pixel_format: PixelFormat,
        fps: float,
        encoder: EncoderSettings | None = None,
    ) -> None:
        if fps <= 0:
            raise RecordingConfigError(f"fps must be > 0, got {fps}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise RecordingConfigError(
                f"frame size must be positive and even, got {width}x{height}"
            )
        self.path = path
        self.sidecar_path = sidecar_path_for(path)
        self.width = width
        self.height = height
        self.pixel_format = pixel_format
        self.encoder = encoder or EncoderSettings()
        self.frames = 0
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self._first_ns = 0
        self._last_pts = -1
        self._closed = False
        self.damaged = False  # a write failed: the file, not self.frames, tells what it holds
        self._pix_fmt = GREY_PIX_FMT if pixel_format is PixelFormat.GREY else COLOUR_PIX_FMT
        self._graph = self._make_denoiser() if self.encoder.denoise else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.open("xb").close()  # claim the name exclusively; FFmpeg then reopens it
            self._sidecar = SidecarWriter(self.sidecar_path)
            self._container = av.open(
                str(path),
                mode="w",
                format="matroska",
                container_options={
                    "cluster_time_limit": str(CLUSTER_TIME_LIMIT_MS),
                    "flush_packets": "1",
                },
            )
            rate = Fraction(fps).limit_denominator(1001)
            options = {
                "crf": str(self.encoder.crf),
                "preset": self.encoder.preset,
                "g": str(max(1, round(self.encoder.keyframe_interval_s * fps))),
            }
            if self.encoder.x264_params:
                options["x264-params"] = self.encoder.x264_params
            stream = self._container.add_stream(CODEC, rate=rate, options=options)
            assert isinstance(stream, VideoStream)
            self._stream = stream
            self._stream.width = width
            self._stream.height = height
            self._stream.pix_fmt = self._pix_fmt
            self._stream.time_base = TIME_BASE
            context = self._stream.codec_context
            context.time_base = TIME_BASE
            context.thread_count = self.encoder.threads
            if pixel_format is PixelFormat.RGB:
                context.colorspace = AVCOL_SPC_SMPTE170M
                context.color_range = ColorRange.MPEG
        except (av.error.FFmpegError, OSError) as exc:
            raise WriteError(f"cannot create segment {path}: {exc}") from exc

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        session_id: str,
        file_prefix: str,
        enclosure_id: str,
        started_at: datetime,
        width: int,
        height: int,
        pixel_format: PixelFormat,
        fps: float,
        encoder: EncoderSettings | None = None,
    ) -> SegmentWriter:
        """A writer for a new segment named by :func:`segment_path` (``-N`` appended if taken)."""
        serial = 0
        while True:
            path = segment_path(
                root, session_id, file_prefix, enclosure_id, started_at, serial=serial
            )
            if not path.exists() and not sidecar_path_for(path).exists():
                try:
                    return cls(
                        path,
                        width=width,
                        height=height,
                        pixel_format=pixel_format,
                        fps=fps,
                        encoder=encoder,
                    )
                except WriteError as exc:
                    if not isinstance(exc.__cause__, FileExistsError):
                        raise
            serial += 1

    def accepts(self, frame: CapturedFrame) -> bool:
        """Whether ``frame`` has this segment's size and pixel format."""
        return (
            frame.width == self.width
            and frame.height == self.height
            and frame.pixel_format is self.pixel_format
        )

    def write(self, frame: CapturedFrame) -> int:
        """Encode ``frame``, append its sidecar row, and return its pts in milliseconds."""
        if self._closed:
            raise WriteError(f"{self.path} is closed")
        if not self.accepts(frame):
            raise RecordingConfigError(
                f"frame {frame.width}x{frame.height} {frame.pixel_format} does not fit segment "
                f"{self.width}x{self.height} {self.pixel_format}"
            )
        if self.started_at is None:
            self.started_at = frame.captured_at
            self._first_ns = frame.monotonic_ns
        pts = round((frame.monotonic_ns - self._first_ns) / 1_000_000)
        pts = max(pts, self._last_pts + 1)  # strictly increasing even for sub-millisecond bursts
        try:
            video_frame = self._to_video_frame(frame)
            video_frame.pts = pts
            video_frame.time_base = TIME_BASE
            for encoded in self._filtered(video_frame):
                self._container.mux(self._stream.encode(encoded))
            self._sidecar.write(frame, pts)
        except (av.error.FFmpegError, OSError) as exc:
            self.damaged = True
            raise WriteError(f"writing {self.path} failed: {exc}") from exc
        self._last_pts = pts
        self.ended_at = frame.captured_at
        self.frames += 1
        return pts

    def finish(self) -> FinishedSegment:
        """Flush the encoder and close the files; raises ``WriteError`` (files closed anyway)."""
        if self._closed:
            raise WriteError(f"{self.path} is already closed")
        self._closed = True
        error: BaseException | None = None
        try:
            if self._graph is not None:
                for encoded in self._drain_graph(flush=True):
                    self._container.mux(self._stream.encode(encoded))
            self._container.mux(self._stream.encode(None))
        except (av.error.FFmpegError, OSError) as exc:
            error = exc
        for closer in (self._container.close, self._sidecar.close):
            try:
                closer()
            except (av.error.FFmpegError, OSError) as exc:
                error = error or exc
        if error is not None:
            self.damaged = True
            raise WriteError(f"closing {self.path} failed: {error}") from error
        return self.finished()

    def finished(self) -> FinishedSegment:
        """What this writer wrote so far (also after a failed ``finish``: then ``damaged``)."""
        started = self.started_at
        if started is None:
            raise WriteError(f"{self.path} has no frames")
        ended = self.ended_at or started
        return FinishedSegment(
            self.path, self.sidecar_path, started, ended, self.frames, damaged=self.damaged
        )

    def close(self) -> SegmentInfo:
        """``finish()`` then ``finalize()``: flushed, fsynced, measured and hashed."""
        return self.finish().finalize()

    def abandon(self) -> None:
        """Close everything after a failure, ignoring further errors (the file stays)."""
        if self._closed:
            return
        with contextlib.suppress(WriteError):
            self.finish()

    def _to_video_frame(self, frame: CapturedFrame) -> VideoFrame:
        video_frame = VideoFrame.from_ndarray(frame.image, format=frame.pixel_format.value)
        if self.pixel_format is PixelFormat.RGB:
            video_frame = video_frame.reformat(
                format=COLOUR_PIX_FMT,
                dst_colorspace=Colorspace.ITU601,
                dst_color_range=ColorRange.MPEG,
            )
        return video_frame

    def _make_denoiser(self) -> av.filter.Graph:
        graph = av.filter.Graph()
        source = graph.add_buffer(
            width=self.width,
            height=self.height,
            format=av.VideoFormat(self._pix_fmt),
            time_base=TIME_BASE,
        )
        assert self.encoder.denoise is not None
        name, _, args = self.encoder.denoise.partition("=")
        try:
            denoise = graph.add(name, args or None)
            sink = graph.add("buffersink")
            graph.link_nodes(source, denoise, sink).configure()
        except (av.error.FFmpegError, ValueError) as exc:
            raise RecordingConfigError(
                f"denoise filter {self.encoder.denoise!r} is invalid: {exc}"
            ) from exc
        return graph

    def _filtered(self, video_frame: VideoFrame) -> list[VideoFrame]:
        if self._graph is None:
            return [video_frame]
        self._graph.vpush(video_frame)
        return self._drain_graph(flush=False)

    def _drain_graph(self, *, flush: bool) -> list[VideoFrame]:
        assert self._graph is not None
        if flush:
            self._graph.vpush(None)
        out: list[VideoFrame] = []
        while True:
            try:
                out.append(self._graph.vpull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
