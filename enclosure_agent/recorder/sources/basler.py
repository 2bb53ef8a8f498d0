"""Basler GigE/USB3 cameras through pypylon (optional extra ``basler``).

pypylon is imported when a camera is opened, never at import time, so the agent runs
without it. Set ``PYLON_CAMEMU=1`` to get pylon's emulated camera (serial ``0815-0000``)
for tests and demos without hardware.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

import numpy as np

from enclosure_agent.recorder.errors import SourceError, SourceOpenError, SourceUnavailableError
from enclosure_agent.recorder.frame import CapturedFrame, PixelFormat

__all__ = ["BaslerSource", "load_pylon"]

log = logging.getLogger(__name__)

MONO_FORMAT = "Mono8"  # 8-bit greyscale: what the enclosure cameras deliver
COLOUR_FORMATS = ("RGB8", "RGB8Packed")  # names differ between GigE (Packed) and USB3 models
BAYER_PREFIX = "Bayer"  # raw colour sensors: converted to RGB on the host
GRAB_BUFFERS = 16  # frames pylon may queue while the host is busy (half a second at 30 fps)


def load_pylon() -> ModuleType:
    """The ``pypylon.pylon`` module, or a clear error telling how to install it."""
    try:
        return importlib.import_module("pypylon.pylon")
    except ImportError as exc:
        raise SourceUnavailableError(
            "Basler cameras need pypylon: pip install 'jaxmba[basler]' "
            "(set PYLON_CAMEMU=1 to use pylon's emulated camera)"
        ) from exc


class BaslerSource:
    """A Basler camera: the first one found, or the one with ``serial``.

    Size and frame rate are set on the camera when given (clamped to what it allows);
    greyscale is used when ``grey`` is true or, by default, when the camera offers Mono8
    and no colour format. Frames carry the camera's frame counter as ``index`` and the
    host clock at retrieval as capture time.
    """

    def __init__(
        self,
        serial: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        grey: bool | None = None,
    ) -> None:
        self._serial = serial
        self._want_width = width
        self._want_height = height
        self._want_fps = fps
        self._grey = grey
        self._width = width or 0
        self._height = height or 0
        self._fps = fps or 0.0
        self._format = PixelFormat.GREY if grey else PixelFormat.RGB
        self._pylon: ModuleType | None = None
        self._camera: Any = None
        self._converter: Any = None

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
        which = f"serial {self._serial}" if self._serial else "first camera found"
        return f"Basler camera ({which})"

    def open(self) -> None:
        pylon = load_pylon()
        self._pylon = pylon
        try:
            factory = pylon.TlFactory.GetInstance()
            if self._serial:
                info = pylon.DeviceInfo()
                info.SetSerialNumber(self._serial)
                device = factory.CreateFirstDevice(info)
            else:
                device = factory.CreateFirstDevice()
            camera = pylon.InstantCamera(device)
            camera.Open()
        except Exception as exc:  # pypylon raises genicam.RuntimeException and friends
            raise SourceOpenError(f"cannot open {self.describe()}: {exc}") from exc
        try:
            self._configure(pylon, camera)
            camera.MaxNumBuffer.SetValue(GRAB_BUFFERS)
            camera.StartGrabbing(pylon.GrabStrategy_OneByOne)
        except Exception as exc:
            camera.Close()
            raise SourceOpenError(f"cannot configure {self.describe()}: {exc}") from exc
        self._camera = camera
        log.info("opened %s (%s)", self.describe(), camera.GetDeviceInfo().GetModelName())

    def read(self, timeout_s: float) -> CapturedFrame | None:
        camera, pylon = self._camera, self._pylon
        if camera is None or pylon is None:
            raise SourceError(f"{self.describe()} read before open()")
        try:
            result = camera.RetrieveResult(
                max(1, int(timeout_s * 1000)), pylon.TimeoutHandling_Return
            )
        except Exception as exc:
            raise SourceError(f"{self.describe()} failed: {exc}") from exc
        if result is None or not result.IsValid():
            return None
        try:
            if not result.GrabSucceeded():
                log.warning("%s: grab failed: %s", self.describe(), result.GetErrorDescription())
                return None
            if self._converter is not None:
                image = self._converter.Convert(result).GetArray()
            else:
                image = result.GetArray()
            frame = CapturedFrame.now(
                np.array(image, dtype=np.uint8, copy=True), int(result.BlockID)
            )
        finally:
            result.Release()
        return frame

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.StopGrabbing()
            camera.Close()
        except Exception as exc:
            log.warning("closing %s: %s", self.describe(), exc)

    def _configure(self, pylon: ModuleType, camera: Any) -> None:
        formats = tuple(camera.PixelFormat.GetSymbolics())
        colour = next((f for f in COLOUR_FORMATS if f in formats), None)
        bayer = next((f for f in formats if f.startswith(BAYER_PREFIX) and f.endswith("8")), None)
        self._converter = None
        grey = self._grey
        if grey is None:
            grey = MONO_FORMAT in formats and colour is None and bayer is None
        if grey:
            if MONO_FORMAT not in formats:
                raise SourceOpenError(f"{self.describe()} has no {MONO_FORMAT} format")
            camera.PixelFormat.SetValue(MONO_FORMAT)
        elif colour is not None:
            camera.PixelFormat.SetValue(colour)
        elif bayer is not None:
            camera.PixelFormat.SetValue(bayer)
            self._converter = pylon.ImageFormatConverter()
            self._converter.OutputPixelFormat = pylon.PixelType_RGB8packed
        else:
            raise SourceOpenError(f"{self.describe()} offers no 8-bit format: {formats}")
        self._format = PixelFormat.GREY if grey else PixelFormat.RGB
        if self._want_width:
            camera.Width.SetValue(_fit(camera.Width, self._want_width))
        if self._want_height:
            camera.Height.SetValue(_fit(camera.Height, self._want_height))
        self._width = int(camera.Width.GetValue())
        self._height = int(camera.Height.GetValue())
        if self._want_fps:
            self._fps = _set_frame_rate(camera, self._want_fps)


def _fit(node: Any, wanted: int) -> int:
    """``wanted`` clamped to the node's range and rounded down to its increment."""
    low, high, step = int(node.GetMin()), int(node.GetMax()), max(1, int(node.GetInc()))
    value = min(max(wanted, low), high)
    return low + (value - low) // step * step


def _set_frame_rate(camera: Any, fps: float) -> float:
    """Enable and set the acquisition frame rate (GigE: ``...Abs``, USB3: plain); the value set."""
    nodes = camera.GetNodeMap()
    enable = nodes.GetNode("AcquisitionFrameRateEnable")
    if enable is not None:
        enable.SetValue(True)
    for name in ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"):
        node = nodes.GetNode(name)
        if node is not None:
            try:
                node.SetValue(float(fps))
                return float(node.GetValue())
            except Exception as exc:
                log.debug("frame rate via %s failed: %s", name, exc)
    log.warning("camera does not accept a frame rate; it runs free")
    return fps
