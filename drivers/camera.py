"""Camera driver (OpenCV): auto-captures a document when its MRZ is readable.

A grabber thread reads frames as fast as the source delivers them and keeps
only the newest, so the detector never works on a stale buffered frame.
Video files and image sequences are the exception: every frame is handed
over in order, so tests and testers see the same result on every run.

The driver captures once when the MRZ band is found, has been still for
`steady_frames` frames, is sharp enough and not washed out by glare. It
captures again only after the band has been gone for `removed_frames`.
A watchdog reopens a live camera that stops delivering, delivers frozen
frames or is unplugged.
"""

from __future__ import annotations

import collections
import glob
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from drivers.base import Driver, EventCallback
from drivers.errors import DeviceNotFoundError, DeviceOpenError
from drivers.events import DeviceState, ImageCaptured
from drivers.mrz_band import Band, find_mrz_band, glare_extent, sharpness, to_gray
from kiosk.config import CameraConfig

log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_FIRST_BACKOFF_S = 0.2
# Consecutive failed reads after which a live camera counts as unplugged.
_MAX_READ_FAILURES = 10


# -- frame sources ------------------------------------------------------------


class FrameSource:
    """A camera, video file or image sequence; `read()` returns a frame or None."""

    def __init__(self, description: str, live: bool) -> None:
        self.description = description
        self.live = live

    def read(self) -> Frame | None:
        raise NotImplementedError

    def release(self) -> None:
        """Close the source; default: nothing to close."""


class CaptureSource(FrameSource):
    """A cv2.VideoCapture: a camera, a video file or a printf-style image pattern."""

    def __init__(self, capture: cv2.VideoCapture, description: str, live: bool) -> None:
        super().__init__(description, live)
        self.capture = capture

    def read(self) -> Frame | None:
        ok, frame = self.capture.read()
        if not ok or frame is None:
            return None
        return np.asarray(frame, dtype=np.uint8)

    def release(self) -> None:
        self.capture.release()


class ImageFolderSource(FrameSource):
    """The images in a folder, in name order, one frame each."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"image folder {folder}", live=False)
        self.paths = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        self._next = 0

    def read(self) -> Frame | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return np.asarray(image, dtype=np.uint8)
            log.warning("camera: cannot read image %s; skipped", path)
        return None


@dataclass(frozen=True, slots=True)
class CameraMode:
    width: int
    height: int
    fourcc: str
    fps: float

    def __str__(self) -> str:
        return f"{self.width}x{self.height} {self.fourcc or '?'} {self.fps:.0f} fps"


def open_source(config: CameraConfig) -> FrameSource:
    """Open the camera, video file, image pattern or folder that `device` names."""
    device = config.device
    if device.isdigit():
        return _open_camera(int(device), f"camera {device}", config)
    if device.startswith("/dev/"):
        if not os.path.exists(device):
            raise DeviceNotFoundError(
                f"camera {device} not found; list cameras with `kiosk drivers list`"
            )
        # NOTE: opening a camera by a /dev/v4l/by-id path is untested on
        # hardware. The link is resolved so OpenCV opens the /dev/videoN node.
        return _open_camera(os.path.realpath(device), f"camera {device}", config)
    path = Path(device)
    if path.is_dir():
        return ImageFolderSource(path)
    if "%" in device:
        if not glob.glob(_pattern_glob(device)):
            raise DeviceNotFoundError(f"no image matches the sequence pattern {device}")
        capture = cv2.VideoCapture(device, cv2.CAP_IMAGES)
    else:
        if not path.is_file():
            raise DeviceNotFoundError(f"video file {device} not found")
        capture = cv2.VideoCapture(device)
    if not capture.isOpened():
        raise DeviceOpenError(
            f"OpenCV cannot open {device} as a video or image sequence"
        )
    return CaptureSource(capture, f"file {device}", live=False)


def _pattern_glob(pattern: str) -> str:
    """Turn a printf pattern such as frames/%04d.png into a glob."""
    head, _, tail = pattern.partition("%")
    rest = tail.lstrip("0123456789")
    return head + "*" + rest[1:]


def _open_camera(
    device: int | str, description: str, config: CameraConfig
) -> FrameSource:
    capture = cv2.VideoCapture(device)
    if not capture.isOpened():
        capture.release()
        raise DeviceOpenError(f"cannot open {description}; is it in use or unplugged?")
    if config.fourcc:
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*config.fourcc))
    if config.width and config.height:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
    if config.fps:
        capture.set(cv2.CAP_PROP_FPS, config.fps)
    # Keep the driver's own queue short; not every backend honours this.
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    mode = reported_mode(capture)
    requested = f"{config.width}x{config.height} {config.fourcc or 'default'}"
    log.info("camera %s: requested %s, device gives %s", description, requested, mode)
    if config.width and (mode.width, mode.height) != (config.width, config.height):
        log.warning(
            "camera %s: resolution %dx%d requested, device gives %dx%d",
            description,
            config.width,
            config.height,
            mode.width,
            mode.height,
        )
    return CaptureSource(capture, f"{description} ({mode})", live=True)


def reported_mode(capture: cv2.VideoCapture) -> CameraMode:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    fourcc = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ")
    return CameraMode(
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        fourcc if fourcc.isprintable() else "",
        float(capture.get(cv2.CAP_PROP_FPS)),
    )


# -- auto-capture ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameCheck:
    """The auto-capture's measures and decision for one frame, for technician views."""

    band: Band | None
    sharpness: float
    glare: float
    steady: bool
    decision: str


class AutoCapture:
    """Decides, frame by frame, when a document is present, captured and removed.

    Pure: it takes frames and returns decisions, so it is tested without a camera."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self._bands: collections.deque[Band | None] = collections.deque(
            maxlen=config.steady_frames
        )
        self.present = False
        self.captured = False
        self._missing = 0
        self.last: FrameCheck | None = None

    def check(self, frame: Frame) -> FrameCheck:
        """Return the decision for `frame`: none, present, capture, removed or
        a reason the frame is not captured (moving, blurred, glare)."""
        gray = to_gray(frame)
        band = find_mrz_band(gray)
        self._bands.append(band)
        if band is None:
            self._missing += 1
            decision = "none"
            if self.present and self._missing >= self.config.removed_frames:
                self.present = False
                self.captured = False
                decision = "removed"
            self.last = FrameCheck(None, 0.0, 0.0, False, decision)
            return self.last

        self._missing = 0
        steady = self._is_steady(frame.shape[1])
        sharp = sharpness(gray, band)
        glare = glare_extent(gray, band)
        if not self.present:
            self.present = True
            decision = "present"
        elif self.captured:
            decision = "captured before"
        elif not steady:
            decision = "moving"
        elif sharp < self.config.sharpness_min:
            decision = f"blurred ({sharp:.0f} < {self.config.sharpness_min:.0f})"
        elif glare > self.config.glare_max:
            decision = f"glare ({glare:.2f} > {self.config.glare_max:.2f})"
        else:
            self.captured = True
            decision = "capture"
        self.last = FrameCheck(band, sharp, glare, steady, decision)
        return self.last

    def _is_steady(self, frame_width: int) -> bool:
        bands = list(self._bands)
        if len(bands) < self.config.steady_frames:
            return False
        if any(band is None for band in bands):
            return False
        limit = self.config.steady_max_shift * frame_width
        newest = bands[-1]
        assert newest is not None
        return all(
            newest.shift_from(band) <= limit for band in bands if band is not None
        )


# -- the driver -----------------------------------------------------------------


class _Grabber(threading.Thread):
    """Reads frames from a source; keeps the newest (live) or every frame (files)."""

    def __init__(self, source: FrameSource, name: str) -> None:
        super().__init__(name=f"grabber-{name}", daemon=True)
        self.source = source
        self.stop_event = threading.Event()
        self._condition = threading.Condition()
        self._frame: Frame | None = None
        self._sequence = 0
        self.last_frame_at = time.monotonic()
        self.failed = False
        self.ended = False
        self.frames = 0

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            frame = self.source.read()
            if frame is None:
                if not self.source.live:
                    self._finish(ended=True)
                    return
                failures += 1
                if failures >= _MAX_READ_FAILURES:
                    self._finish(ended=False)
                    return
                self.stop_event.wait(0.05)
                continue
            failures = 0
            with self._condition:
                if not self.source.live:
                    # Files: wait until the consumer took the previous frame.
                    while self._frame is not None and not self.stop_event.is_set():
                        self._condition.wait(0.1)
                self._frame = frame
                self._sequence += 1
                self.frames += 1
                self.last_frame_at = time.monotonic()
                self._condition.notify_all()

    def _finish(self, ended: bool) -> None:
        with self._condition:
            self.ended = ended
            self.failed = not ended
            self._condition.notify_all()

    def take(self, timeout_s: float) -> Frame | None:
        """Return the newest frame not yet taken, waiting up to `timeout_s`."""
        with self._condition:
            if self._frame is None and not (self.ended or self.failed):
                self._condition.wait(timeout_s)
            frame, self._frame = self._frame, None
            self._condition.notify_all()
            return frame

    def stop(self) -> None:
        self.stop_event.set()
        with self._condition:
            self._condition.notify_all()


SourceFactory = Callable[[CameraConfig], FrameSource]


class CameraDriver(Driver):
    delivers_images = True

    def __init__(
        self,
        config: CameraConfig,
        on_event: EventCallback | None = None,
        *,
        source_factory: SourceFactory = open_source,
    ) -> None:
        super().__init__(config.name or "camera", on_event)
        self.config = config
        self._open_source = source_factory
        self.auto = AutoCapture(config)
        self.frames_seen = 0
        self.captures = 0
        # Technician commands set this to see every frame's check.
        self.check_listener: Callable[[FrameCheck], None] | None = None

    def _run(self) -> None:
        backoff = _FIRST_BACKOFF_S
        reported_outage = False
        while not self._stop_event.is_set():
            try:
                source = self._open_source(self.config)
            except (DeviceNotFoundError, DeviceOpenError) as exc:
                if not reported_outage:
                    self.emit_status(DeviceState.DISCONNECTED, str(exc))
                    reported_outage = True
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, self.config.reopen_max_s)
                continue
            backoff = _FIRST_BACKOFF_S
            reported_outage = False
            self.emit_status(DeviceState.CONNECTED, source.description)
            outcome = self._serve(source)
            if outcome == "stopped":
                return
            if outcome == "ended":
                if not self.config.loop:
                    self.emit_status(
                        DeviceState.DISCONNECTED, "end of the video or images"
                    )
                    return
                continue
            # The watchdog or the grabber found a fault: reopen at once.
            self.emit_status(DeviceState.ERROR, outcome)
            reported_outage = False

    def _serve(self, source: FrameSource) -> str:
        """Run one opened source; return stopped, ended or a fault description."""
        grabber = _Grabber(source, self.name)
        grabber.start()
        frozen_since: float | None = None
        previous_digest: bytes | None = None
        try:
            while not self._stop_event.is_set():
                frame = grabber.take(0.1)
                now = time.monotonic()
                if frame is None:
                    if grabber.ended:
                        return "ended"
                    if grabber.failed:
                        return f"{source.description} stopped delivering frames"
                    if (
                        source.live
                        and now - grabber.last_frame_at > self.config.no_frame_timeout_s
                    ):
                        return f"no frame for {self.config.no_frame_timeout_s:.1f} s"
                    continue
                if source.live:
                    digest = _digest(frame)
                    if digest != previous_digest:
                        previous_digest, frozen_since = digest, now
                    elif (
                        frozen_since is not None
                        and now - frozen_since > self.config.frozen_timeout_s
                    ):
                        return f"frames frozen for {self.config.frozen_timeout_s:.1f} s"
                self._process(frame)
            return "stopped"
        finally:
            grabber.stop()
            grabber.join(2.0)
            if grabber.is_alive():
                # NOTE: a read() blocked inside the camera backend cannot be
                # interrupted; the daemon thread is abandoned and the source
                # released under it.
                log.warning("driver %s: grabber thread did not stop", self.name)
            source.release()

    def _process(self, frame: Frame) -> None:
        self.frames_seen += 1
        check = self.auto.check(frame)
        if self.check_listener is not None:
            self.check_listener(check)
        if check.decision == "present":
            self.emit_status(DeviceState.DOCUMENT_PRESENT, "MRZ band found")
        elif check.decision == "removed":
            self.emit_status(DeviceState.DOCUMENT_REMOVED, "MRZ band gone")
        elif check.decision == "capture":
            self.captures += 1
            log.info(
                "driver %s: captured frame %d (sharpness %.0f, glare %.2f)",
                self.name,
                self.frames_seen,
                check.sharpness,
                check.glare,
            )
            self.emit(ImageCaptured(frame.copy(), self.name))


def _digest(frame: Frame) -> bytes:
    """Return a cheap fingerprint that a live sensor's noise changes in every frame.

    Sampled pixels, not an average: averaging would smooth the noise away
    and make a still scene look frozen."""
    return bytes(np.ascontiguousarray(frame[::8, ::8]).tobytes())
