"""A capture driver that plays image files, for `kiosk --samples` and demos."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from drivers.base import Driver, EventCallback
from drivers.events import DeviceState, ImageCaptured

logger = logging.getLogger(__name__)


class SampleFeeder(Driver):
    """Hands over each image file once, as if laid on a scanner in turn.

    `interval_s` is the pause between documents, so each answer stays on
    the screen long enough to read. The feeder clears `ready` with each
    document and waits until the app sets it again, which the app does once
    the check is shown and no HIT waits for acknowledgement.
    """

    delivers_images = True

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        interval_s: float = 4.0,
        ready: threading.Event | None = None,
        on_event: EventCallback | None = None,
        name: str = "samples",
    ) -> None:
        super().__init__(name, on_event)
        self.paths = list(paths)
        self.interval_s = interval_s
        self.ready = ready or threading.Event()
        if ready is None:
            self.ready.set()

    def _run(self) -> None:
        self.emit_status(DeviceState.CONNECTED, f"{len(self.paths)} sample images")
        for number, path in enumerate(self.paths, start=1):
            while not self.ready.wait(0.2):
                if self._stop_event.is_set():
                    return
            if self._stop_event.is_set():
                return
            decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if decoded is None:
                # The samples include a broken file on purpose; it shows up
                # as a device error, which is what a real reader would report.
                logger.info(
                    "sample %d of %d cannot be decoded", number, len(self.paths)
                )
                self.emit_status(DeviceState.ERROR, f"{path.name} cannot be decoded")
            else:
                image: npt.NDArray[np.uint8] = np.asarray(decoded, dtype=np.uint8)
                # Cleared before the hand-over, so the next document waits
                # until the app has shown this one.
                self.ready.clear()
                self.emit(ImageCaptured(image, path.name))
            if self._stop_event.wait(self.interval_s):
                return
        self.emit_status(DeviceState.DISCONNECTED, "all sample images played")


def demo_order(paths: Sequence[Path], truth_file: Path) -> list[Path]:
    """Put a reported document first and an unlisted one second, as the
    ground truth file lists them, so a new user sees a HIT and a NO RECORD
    within the first two documents. The rest follow in name order. Without
    a readable truth file the order is kept."""
    try:
        truth = json.loads(truth_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return list(paths)

    def entry(path: Path) -> dict[str, object]:
        found = truth.get(path.name)
        return found if isinstance(found, dict) else {}

    def expected(path: Path) -> object:
        lookup = entry(path).get("lookup")
        return lookup.get("result") if isinstance(lookup, dict) else None

    ordered = sorted(paths)
    # Lightly damaged images are the likeliest to read on the first try, and
    # a passport (TD3) is what most travellers hand over.
    by_damage = sorted(
        ordered,
        key=lambda p: (
            entry(p).get("level") != "light",
            entry(p).get("format") != "TD3",
            p,
        ),
    )
    first = [
        next((p for p in by_damage if expected(p) == result), None)
        for result in ("HIT", "NO_HIT")
    ]
    leading = [p for p in first if p is not None]
    return leading + [p for p in ordered if p not in leading]
