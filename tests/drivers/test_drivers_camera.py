"""The camera driver end to end from generated video files, and its watchdog."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers import DeviceState, ImageCaptured, create_driver
from drivers.camera import (
    AutoCapture,
    CameraDriver,
    CaptureSource,
    Frame,
    FrameSource,
    _pattern_glob,
    open_source,
)
from drivers.errors import DeviceNotFoundError
from drivers.mrz_band import find_mrz_band, glare_extent, sharpness, to_gray
from drivers.specimens import SPECIMENS
from kiosk.config import CameraConfig
from tests.conftest import SHARED_DATA
from tests.drivers.driver_helpers import FRAME_SIZE, EventLog, card_frame

TD3, TD1 = SPECIMENS["td3"], SPECIMENS["td1"]


def write_video(path: Path, frames: Iterable[Frame]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, FRAME_SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def document_scene(
    mrz: list[str], blur: float = 0.0, glare: bool = False
) -> list[Frame]:
    """Empty desk, a card sliding in, shaking, settling, then taken away."""
    frames = [card_frame(mrz, present=False) for _ in range(5)]
    frames += [card_frame(mrz, dx=480 - 60 * step) for step in range(8)]
    shake = [(14, 9), (-13, -8), (12, 10), (-14, 7), (13, -9), (-12, 8)]
    frames += [card_frame(mrz, dx=dx, dy=dy) for dx, dy in shake]
    frames += [card_frame(mrz) for _ in range(12)]
    frames += [card_frame(mrz, present=False) for _ in range(10)]
    if blur:
        frames = [
            np.asarray(cv2.GaussianBlur(f, (0, 0), blur), np.uint8) for f in frames
        ]
    if glare:
        for frame in frames:
            cv2.circle(frame, (440, 375), 30, (255, 255, 255), -1)
    return frames


def camera_config(device: str, **options: object) -> CameraConfig:
    values: dict[str, object] = {"name": "cam", "device": device}
    values.update(options)
    return CameraConfig(**values)  # type: ignore[arg-type]


def run_to_end(config: CameraConfig) -> tuple[CameraDriver, EventLog]:
    driver = CameraDriver(config)
    log = EventLog(driver)
    driver.start()
    log.wait_status(DeviceState.DISCONNECTED, timeout_s=60)
    driver.stop()
    return driver, log


def test_camera_captures_settled_document_once(tmp_path: Path) -> None:
    video = write_video(tmp_path / "scene.avi", document_scene(TD3))
    driver, log = run_to_end(camera_config(str(video)))
    assert len(log.images()) == 1
    assert driver.captures == 1
    assert driver.frames_seen == 41
    assert log.states() == [
        DeviceState.CONNECTED,
        DeviceState.DOCUMENT_PRESENT,
        DeviceState.DOCUMENT_REMOVED,
        DeviceState.DISCONNECTED,
    ]
    # The capture shows the card at rest, not a shaking frame.
    captured = log.images()[0].image
    band = find_mrz_band(to_gray(captured))
    resting = find_mrz_band(to_gray(card_frame(TD3)))
    assert band is not None
    assert resting is not None
    assert band.shift_from(resting) <= 4


def test_camera_captures_again_after_removal(tmp_path: Path) -> None:
    frames = document_scene(TD3) + document_scene(TD1)
    video = write_video(tmp_path / "two.avi", frames)
    _, log = run_to_end(camera_config(str(video)))
    assert len(log.images()) == 2
    assert log.states().count(DeviceState.DOCUMENT_PRESENT) == 2


def test_camera_blurred_document_not_captured(tmp_path: Path) -> None:
    video = write_video(tmp_path / "blur.avi", document_scene(TD3, blur=1.5))
    driver = CameraDriver(camera_config(str(video)))
    decisions: list[str] = []
    driver.check_listener = lambda check: decisions.append(check.decision)
    log = EventLog(driver)
    driver.start()
    log.wait_status(DeviceState.DISCONNECTED, timeout_s=60)
    driver.stop()
    assert log.images() == []
    assert any(d.startswith("blurred") for d in decisions)


def test_camera_glare_not_captured(tmp_path: Path) -> None:
    video = write_video(tmp_path / "glare.avi", document_scene(TD3, glare=True))
    driver = CameraDriver(camera_config(str(video)))
    decisions: list[str] = []
    driver.check_listener = lambda check: decisions.append(check.decision)
    log = EventLog(driver)
    driver.start()
    log.wait_status(DeviceState.DISCONNECTED, timeout_s=60)
    driver.stop()
    assert log.images() == []
    assert any(d.startswith("glare") for d in decisions)


def test_camera_image_sequence_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(document_scene(TD1)):
        cv2.imwrite(str(folder / f"f{index:03d}.png"), frame)
    _, log = run_to_end(camera_config(str(folder / "f%03d.png")))
    assert len(log.images()) == 1
    driver = create_driver(camera_config(str(folder)))
    assert isinstance(driver, CameraDriver)
    events = EventLog(driver)
    driver.start()
    events.wait_status(DeviceState.DISCONNECTED, timeout_s=60)
    driver.stop()
    assert len(events.images()) == 1


def test_camera_loop_replays_file(tmp_path: Path) -> None:
    video = write_video(tmp_path / "loop.avi", document_scene(TD3))
    driver = CameraDriver(camera_config(str(video), loop=True))
    log = EventLog(driver)
    driver.start()
    log.wait_for(lambda: len(log.images()) == 2, timeout_s=60, what="second pass")
    driver.stop()
    assert log.states().count(DeviceState.CONNECTED) >= 2


def test_open_source_errors(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFoundError, match=r"missing\.avi"):
        open_source(camera_config(str(tmp_path / "missing.avi")))
    with pytest.raises(DeviceNotFoundError, match="/dev/v4l/by-id/none"):
        open_source(camera_config("/dev/v4l/by-id/none"))
    with pytest.raises(DeviceNotFoundError, match="pattern"):
        open_source(camera_config(str(tmp_path / "x%03d.png")))
    assert _pattern_glob("frames/%04d.png") == "frames/*.png"


class FrozenCamera(FrameSource):
    """A live camera whose driver keeps returning one identical frame."""

    def __init__(self) -> None:
        super().__init__("frozen test camera", live=True)
        self.frame = card_frame(TD3, present=False)

    def read(self) -> Frame | None:
        return self.frame.copy()


class SilentCamera(FrameSource):
    """A live camera whose read() blocks, as a hung USB camera does."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__("silent test camera", live=True)
        self._release = release

    def read(self) -> Frame | None:
        self._release.wait(5)
        return None


def test_watchdog_reopens_frozen_camera() -> None:
    opened: list[FrameSource] = []

    def factory(config: CameraConfig) -> FrameSource:
        opened.append(FrozenCamera())
        return opened[-1]

    config = camera_config("0", frozen_timeout_s=0.2)
    driver = CameraDriver(config, source_factory=factory)
    log = EventLog(driver)
    driver.start()
    try:
        error = log.wait_status(DeviceState.ERROR)
        log.wait_for(lambda: len(opened) >= 2, what="reopen")
    finally:
        driver.stop()
    assert "frozen" in error.reason


def test_watchdog_reopens_silent_camera() -> None:
    release = threading.Event()
    opened: list[FrameSource] = []

    def factory(config: CameraConfig) -> FrameSource:
        opened.append(SilentCamera(release))
        return opened[-1]

    driver = CameraDriver(
        camera_config("0", no_frame_timeout_s=0.2), source_factory=factory
    )
    log = EventLog(driver)
    driver.start()
    try:
        error = log.wait_status(DeviceState.ERROR)
        log.wait_for(lambda: len(opened) >= 2, what="reopen")
    finally:
        release.set()
        driver.stop()
    assert "no frame for" in error.reason


def test_watchdog_unplug_and_replug(tmp_path: Path) -> None:
    video = tmp_path / "live.avi"
    write_video(video, [card_frame(TD3, present=False) for _ in range(3)])
    content = video.read_bytes()

    def factory(config: CameraConfig) -> FrameSource:
        if not video.exists():
            raise DeviceNotFoundError("camera test device not found")
        capture = cv2.VideoCapture(str(video))
        return CaptureSource(capture, "file-backed live camera", live=True)

    driver = CameraDriver(camera_config("0", reopen_max_s=0.2), source_factory=factory)
    log = EventLog(driver)
    driver.start()
    try:
        log.wait_status(DeviceState.CONNECTED)
        video.unlink()
        # The file ends, reads fail as on an unplugged camera, reopening fails.
        error = log.wait_status(DeviceState.ERROR)
        log.wait_status(DeviceState.DISCONNECTED)
        video.write_bytes(content)
        log.wait_status(DeviceState.CONNECTED)
    finally:
        driver.stop()
    assert "stopped delivering" in error.reason


def test_auto_capture_requires_steady_frames() -> None:
    auto = AutoCapture(camera_config("0", steady_frames=3))
    decisions = [auto.check(card_frame(TD3)).decision for _ in range(5)]
    assert decisions == [
        "present",
        "moving",
        "capture",
        "captured before",
        "captured before",
    ]
    for _ in range(6):
        last = auto.check(card_frame(TD3, present=False)).decision
    assert last == "removed"
    assert auto.check(card_frame(TD3)).decision == "present"


def test_band_detector_on_synthetic_cards() -> None:
    for mrz in SPECIMENS.values():
        gray = to_gray(card_frame(mrz))
        band = find_mrz_band(gray)
        assert band is not None
        # The MRZ lies in the bottom part of the card (card spans y 110..410).
        assert 300 < band.center[1] < 410
        assert sharpness(gray, band) > 300
        assert glare_extent(gray, band) == 0.0
    assert find_mrz_band(to_gray(card_frame(TD3, present=False))) is None
    assert find_mrz_band(np.zeros((480, 640), dtype=np.uint8)) is None


def test_sharpness_threshold_on_specimen_images() -> None:
    folder = SHARED_DATA / "specimens"
    paths = sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))
    if not paths:
        pytest.skip(f"specimen images not present at {folder}")
    threshold = CameraConfig().sharpness_min
    found = 0
    for path in paths:
        gray = to_gray(np.asarray(cv2.imread(str(path)), dtype=np.uint8))
        band = find_mrz_band(gray)
        if band is None:
            continue
        found += 1
        assert sharpness(gray, band) > threshold, path.name
        blurred = cv2.GaussianBlur(gray, (0, 0), 0.04 * band.height)
        assert sharpness(np.asarray(blurred, dtype=np.uint8), band) < threshold, (
            path.name
        )
    assert found >= len(paths) * 3 // 4


def test_captured_event_repr_hides_image(tmp_path: Path) -> None:
    event = ImageCaptured(card_frame(TD3), "cam")
    assert "shape=(480, 640, 3)" in repr(event)
