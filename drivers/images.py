"""Decoding of image bytes that a driver receives, within the reader's limits.

A watched folder or a serial scanner hands over whatever bytes it has: a
JPEG still being written, or a small PNG that claims 20,000 x 20,000
pixels. OpenCV decodes a cut-off JPEG to a grey-filled image without an
error, and decodes any size it is given, so the checks here come first.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from drivers.errors import DriverError

# The reader's file limit. The reader allows 400 megapixels, because it
# decodes large JPEGs in grey at an eighth of their size. A driver decodes
# in full colour, 3 bytes a pixel, so its limit is 60 megapixels (about
# 180 MB), above any document scanner or camera frame.
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_DECODE_PIXELS = 60_000_000

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
# The last chunk of a PNG file: its length (0), type and CRC.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class ImageIncomplete(DriverError, ValueError):
    """The bytes are no complete image yet, or not an image at all."""


class ImageTooLarge(DriverError, ValueError):
    """The image is over the limits; reading it again would not help."""


def decode_image(data: bytes, name: str) -> npt.NDArray[np.uint8]:
    """Return the colour image in `data`.

    Raises ImageTooLarge over the file or pixel limit, and
    ImageIncomplete for bytes that end before a JPEG or PNG does or that
    do not decode.
    """
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLarge(
            f"{name} is {len(data) // 2**20} MB, over the "
            f"{MAX_FILE_BYTES // 2**20} MB limit"
        )
    if not data:
        raise ImageIncomplete(f"{name} is empty")
    if data.startswith(_JPEG_START) and not data.rstrip(b"\x00").endswith(_JPEG_END):
        raise ImageIncomplete(f"{name} ends before its JPEG end marker")
    if data.startswith(_PNG_START) and not data.endswith(_PNG_END):
        raise ImageIncomplete(f"{name} ends before its PNG end chunk")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{name} is too large to decode safely") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageIncomplete(f"{name} is not a readable image") from exc
    if width * height > MAX_DECODE_PIXELS:
        raise ImageTooLarge(
            f"{name} is {width} x {height} pixels, over the limit of "
            f"{MAX_DECODE_PIXELS // 10**6} megapixels"
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageIncomplete(f"{name} cannot be decoded: {exc.err}") from exc
    if image is None or image.size == 0:
        raise ImageIncomplete(f"{name} is not a readable image")
    return np.asarray(image, dtype=np.uint8)


def decode_image_file(path: Path) -> npt.NDArray[np.uint8]:
    """Return the colour image in the file at `path`, checking its size before
    reading it; raise as `decode_image` does, or OSError."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageTooLarge(
            f"{path} is {size // 2**20} MB, over the {MAX_FILE_BYTES // 2**20} MB limit"
        )
    return decode_image(path.read_bytes(), str(path))
