"""Helpers shared by the driver tests: test images and an event collector."""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from drivers import (
    DeviceState,
    Driver,
    DriverEvent,
    ImageCaptured,
    MrzLinesRead,
    StatusChanged,
)


def _encode(extension: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(extension, image)
    assert ok
    return bytes(encoded.tobytes())


def jpeg_bytes(width: int = 64, height: int = 40, seed: int = 0) -> bytes:
    return _encode(".jpg", width, height, seed)


def png_bytes(width: int = 32, height: int = 24, seed: int = 1) -> bytes:
    return _encode(".png", width, height, seed)


def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float = 15.0
) -> None:
    # The timeout only bounds a hung test; nothing asserts on durations.
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class EventLog:
    """Collects a driver's events and waits for conditions on them."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.events: list[DriverEvent] = []
        self._cursor = 0

    def drain(self, timeout_s: float = 0.0) -> None:
        event = self.driver.get_event(timeout_s)
        while event is not None:
            self.events.append(event)
            event = self.driver.get_event(0)

    def wait_for(
        self, condition: Callable[[], bool], timeout_s: float = 15.0, what: str = ""
    ) -> None:
        # The timeout only bounds a hung test; nothing asserts on durations.
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {self.events}")
            self.drain(0.02)

    def wait_event(
        self,
        predicate: Callable[[DriverEvent], bool],
        what: str,
        timeout_s: float = 15.0,
    ) -> DriverEvent:
        """Wait for an event after the one the previous wait_event returned."""

        def position() -> int | None:
            for index in range(self._cursor, len(self.events)):
                if predicate(self.events[index]):
                    return index
            return None

        self.wait_for(lambda: position() is not None, timeout_s, what)
        index = position()
        assert index is not None
        self._cursor = index + 1
        return self.events[index]

    def wait_status(self, state: DeviceState, timeout_s: float = 15.0) -> StatusChanged:
        event = self.wait_event(
            lambda e: isinstance(e, StatusChanged) and e.state is state,
            f"status {state.value}",
            timeout_s,
        )
        assert isinstance(event, StatusChanged)
        return event

    def mrz(self) -> list[list[str]]:
        return [e.lines for e in self.events if isinstance(e, MrzLinesRead)]

    def images(self) -> list[ImageCaptured]:
        return [e for e in self.events if isinstance(e, ImageCaptured)]

    def states(self) -> list[DeviceState]:
        return [e.state for e in self.events if isinstance(e, StatusChanged)]


FRAME_SIZE = (640, 480)


def background() -> npt.NDArray[np.uint8]:
    """A desk: dark grey with a soft gradient, the same in every frame."""
    width, height = FRAME_SIZE
    ramp = np.linspace(40, 70, width, dtype=np.float32)
    gray = np.tile(ramp, (height, 1))
    return np.asarray(cv2.merge([gray, gray, gray]), dtype=np.uint8)


def card_frame(
    mrz: list[str], dx: int = 0, dy: int = 0, present: bool = True
) -> npt.NDArray[np.uint8]:
    """A frame with an ID card whose top-left corner is at (60 + dx, 110 + dy)."""
    frame = background()
    if not present:
        return frame
    x, y = 60 + dx, 110 + dy
    card_w, card_h = 530, 300
    cv2.rectangle(frame, (x, y), (x + card_w, y + card_h), (225, 230, 235), -1)
    # A photo and a few printed fields, so the MRZ is not the only text.
    cv2.rectangle(frame, (x + 20, y + 30), (x + 130, y + 170), (120, 110, 100), -1)
    for row, text in enumerate(["UTOPIA", "SPECIMEN", "01 JAN 2030"]):
        cv2.putText(
            frame,
            text,
            (x + 160, y + 55 + 35 * row),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7,
            (40, 40, 40),
            2,
            cv2.LINE_AA,
        )
    line_gap = 24
    top = y + card_h - 20 - line_gap * (len(mrz) - 1)
    for row, line in enumerate(mrz):
        cv2.putText(
            frame,
            line,
            (x + 14, top + line_gap * row),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (20, 20, 20),
            1,
            cv2.LINE_AA,
        )
    return frame
