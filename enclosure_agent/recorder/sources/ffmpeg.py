"""Any input FFmpeg opens (V4L2 devices, files, RTSP/HTTP streams), decoded with PyAV."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from enclosure_agent.recorder.errors import SourceError, SourceOpenError
from enclosure_agent.recorder.frame import CapturedFrame, PixelFormat

__all__ = ["FFmpegSource"]

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0  # a network camera that has not answered in 10 s is down
READ_TIMEOUT_S = 5.0  # blocking demux is interrupted after this; matches the stall timeout
DECODED_QUEUE_FRAMES = 8  # small: the capture thread drains it continuously
JOIN_TIMEOUT_S = READ_TIMEOUT_S + 2.0  # the decoder thread leaves within one read timeout
V4L2_PREFIX = "/dev/video"
QUEUE_POLL_S = 0.1  # how often a decoder blocked on a full queue checks for close()


class _EndOfStream:
    """Marker the decoder thread queues when the input ended or failed."""

    def __init__(self, error: str | None) -> None:
        self.error = error


class FFmpegSource:
    """A camera read through FFmpeg's demuxers and decoders (PyAV).

    ``url`` is a V4L2 device (``/dev/video0``), a file, or a stream URL. ``options`` go to
    FFmpeg's demuxer (for V4L2: ``input_format``, ``video_size``, ``framerate``...). When
    ``width``/``height`` are given, frames are scaled to that size (and, for V4L2, the size
    and ``fps`` are requested from the driver). Frames are greyscale when the decoded
    stream is (``gray*`` pixel formats) or ``grey=True``, else RGB. Regular files are paced
    at their own frame rate (``realtime``), so a file behaves like a camera; at the end of
    the input ``read`` returns ``None`` (a stall, to the capture loop). The capture time is
    the host clock when the frame was decoded.
    """

    def __init__(
        self,
        url: str,
        options: dict[str, str] | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        grey: bool | None = None,
        input_format: str | None = None,
        realtime: bool | None = None,
    ) -> None:
        if not url.strip():
            raise SourceOpenError("FFmpeg source needs a device, file or URL")
        self._url = url
        self._options = dict(options or {})
        self._want_width = width
        self._want_height = height
        self._want_fps = fps
        self._grey = grey
        self._input_format = input_format
        if input_format is None and url.startswith(V4L2_PREFIX):
            self._input_format = "v4l2"
        self._realtime = realtime
        self._width = width or 0
        self._height = height or 0
        self._fps = fps or 0.0
        self._format = PixelFormat.GREY if grey else PixelFormat.RGB
        self._queue: queue.Queue[CapturedFrame | _EndOfStream] = queue.Queue(DECODED_QUEUE_FRAMES)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended: _EndOfStream | None = None

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def pixel_format(self) -> PixelFormat:
        return self._format

    @property
    def fps(self) -> float:
        return self._fps

    def describe(self) -> str:
        size = f"{self._width}x{self._height}" if self._width else "native size"
        return f"FFmpeg input {self._url} ({self._input_format or 'auto'}, {size})"

    def open(self) -> None:
        if self._thread is not None:
            raise SourceError(f"{self._url} is already open")
        options = dict(self._options)
        if self._input_format == "v4l2":
            if self._want_width and self._want_height:
                options.setdefault("video_size", f"{self._want_width}x{self._want_height}")
            if self._want_fps:
                options.setdefault("framerate", f"{self._want_fps:g}")
        try:
            container = av.open(
                self._url,
                mode="r",
                format=self._input_format,
                options=options,
                timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceOpenError(f"cannot open {self._url}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise SourceOpenError(f"{self._url} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        native = stream.codec_context
        self._width = self._want_width or native.width
        self._height = self._want_height or native.height
        if self._want_fps is None and stream.average_rate:
            self._fps = float(stream.average_rate)
        if self._grey is None:
            native_format = native.pix_fmt or ""
            self._format = PixelFormat.GREY if native_format.startswith("gray") else PixelFormat.RGB
        realtime = self._realtime
        if realtime is None:
            realtime = Path(self._url).is_file()
        self._stop.clear()
        self._ended = None
        self._queue = queue.Queue(DECODED_QUEUE_FRAMES)
        self._thread = threading.Thread(
            target=self._decode,
            args=(container, stream, realtime),
            name=f"ffmpeg-source:{self._url}",
            daemon=True,
        )
        self._thread.start()

    def read(self, timeout_s: float) -> CapturedFrame | None:
        if self._thread is None:
            raise SourceError(f"{self._url} read before open()")
        if self._ended is not None:
            self._stop.wait(timeout_s)
            return None
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, _EndOfStream):
            self._ended = item
            if item.error:
                raise SourceError(f"{self._url}: {item.error}")
            return None
        return item

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a decoder waiting on a full queue
                self._queue.get_nowait()
        thread.join(JOIN_TIMEOUT_S)
        if thread.is_alive():
            log.warning("decoder thread for %s did not stop in %.0f s", self._url, JOIN_TIMEOUT_S)

    def _decode(self, container: InputContainer, stream: VideoStream, realtime: bool) -> None:
        error: str | None = None
        first_time: float | None = None
        started = time.monotonic()
        index = 0
        try:
            for decoded in container.decode(stream):
                if self._stop.is_set():
                    break
                if realtime and decoded.time is not None:
                    if first_time is None:
                        first_time = decoded.time
                    delay = started + (decoded.time - first_time) - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                image = np.asarray(
                    decoded.to_ndarray(
                        format=self._format.value, width=self._width, height=self._height
                    ),
                    dtype=np.uint8,
                )
                if not self._put(CapturedFrame.now(image, index)):
                    break
                index += 1
        except (av.error.FFmpegError, OSError) as exc:
            if not self._stop.is_set():
                error = str(exc)
                log.warning("reading %s failed: %s", self._url, exc)
        finally:
            container.close()
            self._put(_EndOfStream(error))

    def _put(self, item: CapturedFrame | _EndOfStream) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=QUEUE_POLL_S)
            except queue.Full:
                continue
            return True
        return False
