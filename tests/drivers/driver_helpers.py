"""Helpers shared by the driver tests: test images and an event collector."""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

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


class EventLog:
    """Collects a driver's events and waits for conditions on them."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.events: list[DriverEvent] = []

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
        start = len(self.events)

        def found() -> bool:
            return any(predicate(e) for e in self.events[start:])

        self.wait_for(found, timeout_s, what)
        return next(e for e in self.events[start:] if predicate(e))

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
