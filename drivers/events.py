"""Events that every capture driver delivers to the kiosk."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


class DeviceState(enum.StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    DOCUMENT_PRESENT = "document_present"
    DOCUMENT_REMOVED = "document_removed"
    ERROR = "error"


@dataclass(frozen=True, slots=True, eq=False)
class ImageCaptured:
    """A page image: an OpenCV BGR array (height x width x 3, uint8)."""

    image: npt.NDArray[np.uint8]
    source: str

    def __repr__(self) -> str:
        # The image shows the holder, so only its shape goes into reprs and logs.
        return f"ImageCaptured(shape={self.image.shape}, source={self.source!r})"


@dataclass(frozen=True, slots=True)
class MrzLinesRead:
    """MRZ lines exactly as the device sent them; `_` marks an unreadable
    character. `raw` is the whole frame as received, for technician views."""

    lines: list[str]
    raw: bytes = field(repr=False)
    source: str

    def __repr__(self) -> str:
        lengths = [len(line) for line in self.lines]
        return f"MrzLinesRead(line_lengths={lengths}, source={self.source!r})"


@dataclass(frozen=True, slots=True)
class StatusChanged:
    state: DeviceState
    reason: str
    source: str = ""


DriverEvent = ImageCaptured | MrzLinesRead | StatusChanged
