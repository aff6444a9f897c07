"""Page images as length-prefixed JPEG or PNG files.

    SOH 'I' LEN(4 bytes, big-endian) <JPEG or PNG file> CRC32(4 bytes, big-endian)

The CRC32 (zlib) covers the file bytes. The decoder also checks the file's
start signature and end marker, so a cut image is caught before decoding.
"""

from __future__ import annotations

import struct
import zlib
from typing import Literal

from drivers.protocols.base import Decoder, Document, Encoder, Frame, ImageFrame

MAGIC = b"\x01I"
_HEADER = len(MAGIC) + 4
JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
PNG_START = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
# Enough for a 600 dpi colour page as JPEG; configurable per decoder.
DEFAULT_MAX_IMAGE = 20 * 1024 * 1024
_MIN_IMAGE = 16


def image_format(data: bytes) -> Literal["jpeg", "png"] | None:
    if data.startswith(JPEG_START):
        return "jpeg"
    if data.startswith(PNG_START):
        return "png"
    return None


class ImageDecoder(Decoder):
    name = "image"

    def __init__(self, *, max_image: int = DEFAULT_MAX_IMAGE) -> None:
        super().__init__()
        self.max_image = max_image

    def _feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames: list[Frame] = []
        while True:
            start = self._buffer.find(MAGIC)
            if start < 0:
                # Keep a last SOH: it may begin the next magic.
                keep = 1 if self._buffer.endswith(MAGIC[:1]) else 0
                self._discard_noise(len(self._buffer) - keep)
                break
            self._discard_noise(start)
            self._end_noise_run()
            frame = self._parse_at_start()
            if frame is None:
                break
            if frame is not False:
                frames.append(frame)
        return frames

    def _parse_at_start(self) -> ImageFrame | Literal[False] | None:
        """Return a frame, False after a drop, or None to wait for more bytes."""
        buf = self._buffer
        if len(buf) < _HEADER:
            return None
        (length,) = struct.unpack(">I", buf[2:_HEADER])
        if not _MIN_IMAGE <= length <= self.max_image:
            self._drop(f"image length {length} outside {_MIN_IMAGE}..{self.max_image}")
            self._consume(1)
            return False
        # Check the signature before waiting for a length that may be noise.
        signature_end = _HEADER + len(PNG_START)
        if len(buf) < signature_end:
            return None
        fmt = image_format(bytes(buf[_HEADER:signature_end]))
        if fmt is None:
            self._drop(f"image of {length} bytes is neither JPEG nor PNG")
            self._consume(1)
            return False
        end = _HEADER + length + 4
        if len(buf) < end:
            return None
        data = bytes(buf[_HEADER : _HEADER + length])
        (crc,) = struct.unpack(">I", buf[_HEADER + length : end])
        if zlib.crc32(data) != crc:
            self._drop(f"CRC mismatch in an image of {length} bytes")
            self._consume(1)
            return False
        trailer = JPEG_END if fmt == "jpeg" else PNG_END
        if not data.endswith(trailer):
            self._drop(f"{fmt} image of {length} bytes lacks its end marker")
            self._consume(1)
            return False
        self._consume(end)
        return ImageFrame(data, fmt)


def image_frame(data: bytes, *, corrupt_crc: bool = False) -> bytes:
    crc = zlib.crc32(data) ^ (0xFFFFFFFF if corrupt_crc else 0)
    return MAGIC + struct.pack(">I", len(data)) + data + struct.pack(">I", crc)


class ImageEncoder(Encoder):
    name = "image"
    delivers_images = True

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.supported_faults = self.supported_faults | {"bad-bcc", "cut-line"}

    def _encode(self, document: Document) -> bytes:
        return image_frame(_as_image(document))

    def _encode_faulty(self, document: Document, fault: str) -> bytes:
        data = _as_image(document)
        if fault == "bad-bcc":
            return image_frame(data, corrupt_crc=True)
        # A cut file with a matching length and CRC: only the end marker
        # check catches it.
        return image_frame(data[: -self.rng.randint(2, 64)])


def _as_image(document: Document) -> bytes:
    if not isinstance(document, bytes | bytearray):
        raise TypeError("the image protocol sends image files, not MRZ lines")
    if image_format(bytes(document)) is None:
        raise ValueError("image data is neither JPEG nor PNG")
    return bytes(document)
