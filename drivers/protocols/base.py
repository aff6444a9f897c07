"""Frames, the decoder and encoder interfaces, and helpers shared by protocols.

Decoders are pure: they see byte chunks, never a port, and keep no clock. The
serial driver calls `flush()` when the line has been idle for its frame
timeout, which ends a document in protocols without an end marker.
"""

from __future__ import annotations

import abc
import collections
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

log = logging.getLogger(__name__)

STX = 0x02
ETX = 0x03
SOH = 0x01
CR = 0x0D
LF = 0x0A

# ICAO 9303 MRZ shapes as (line count, line length): TD1, TD2/MRV-B, TD3/MRV-A.
MRZ_SHAPES: frozenset[tuple[int, int]] = frozenset({(3, 30), (2, 36), (2, 44)})
# `_` is not an MRZ character: readers send it for one they could not read.
_MRZ_LINE = re.compile(r"[A-Z0-9<_]*")

# Warnings a decoder logs in full after it starts and after each decoded
# frame. Later ones are counted, and a summary line is logged each time the
# count since the last frame doubles and when the next frame is decoded, so
# a noisy line or a wrong baud rate cannot flood the log.
WARNINGS_PER_RUN = 5

FAULTS: tuple[str, ...] = ("garbage", "bad-bcc", "cut-line", "partial", "wrong-baud")
Fault = Literal["garbage", "bad-bcc", "cut-line", "partial", "wrong-baud"]


@dataclass(frozen=True, slots=True)
class MrzFrame:
    lines: list[str]
    raw: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"MrzFrame(line_lengths={[len(x) for x in self.lines]})"


@dataclass(frozen=True, slots=True)
class ImageFrame:
    data: bytes = field(repr=False)
    format: Literal["jpeg", "png"]

    def __repr__(self) -> str:
        return f"ImageFrame(format={self.format!r}, length={len(self.data)})"


@dataclass(frozen=True, slots=True)
class StatusFrame:
    """A device status report, for example `read_start` or `no_document`."""

    status: str
    raw: bytes = field(repr=False)


Frame = MrzFrame | ImageFrame | StatusFrame
# Input of an encoder: MRZ lines, or an encoded JPEG or PNG file.
Document = Sequence[str] | bytes


def check_mrz_lines(lines: Sequence[str]) -> str | None:
    """Return why `lines` is not an MRZ, or None when it has a valid shape.

    The reason names counts, lengths and positions, never the text."""
    if not lines:
        return "no MRZ lines"
    lengths = [len(line) for line in lines]
    if (len(lines), lengths[0]) not in MRZ_SHAPES:
        return f"{len(lines)} lines of length {lengths[0]} is no MRZ shape"
    for number, line in enumerate(lines, start=1):
        if len(line) != lengths[0]:
            return f"line {number} has length {len(line)}, expected {lengths[0]}"
        match = _MRZ_LINE.fullmatch(line)
        if match is None:
            bad = next(i for i, c in enumerate(line) if not _MRZ_LINE.fullmatch(c))
            return f"line {number} has an invalid character at column {bad + 1}"
    return None


def xor_bcc(data: bytes) -> int:
    """Block check character: the XOR of all bytes."""
    bcc = 0
    for byte in data:
        bcc ^= byte
    return bcc


def decode_ascii_lines(payload: bytes) -> list[str] | None:
    """Split a CR (or LF, CRLF) separated payload into lines; None if not ASCII.

    Empty leading and trailing lines are removed: readers that always send
    three lines pad a TD3 or TD2 with an empty first line."""
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = re.split(r"\r\n|\r|\n", text)
    while lines and lines[0] == "":
        lines.pop(0)
    while lines and lines[-1] == "":
        lines.pop()
    return lines


class Decoder(abc.ABC):
    """Incremental decoder: feed it chunks as they arrive, get whole frames.

    Invalid or incomplete frames are dropped with a logged reason that quotes
    stream offsets and lengths only; the decoder then looks for the next frame.
    Subclasses implement `_feed`, and `_flush` where silence ends a document.
    """

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._buffer = bytearray()
        # Stream offset of `_buffer[0]`, for log messages.
        self._offset = 0
        # Recent drop reasons, for technician views and tests.
        self.dropped: collections.deque[str] = collections.deque(maxlen=100)
        # All drops and noise reports, including those `dropped` no longer keeps.
        self.drop_count = 0
        self.noise_bytes = 0
        # Skipped bytes since the last report, so a noisy line or a wrong
        # baud rate logs one line per gap between frames, not one per chunk.
        self._noise_run = 0
        self._noise_start = 0
        # Warnings since the last decoded frame, and those of them not logged.
        self._run_warnings = 0
        self._unlogged_warnings = 0
        self._last_unlogged = ""
        self._next_summary = 2 * WARNINGS_PER_RUN

    def feed(self, chunk: bytes) -> list[Frame]:
        """Add received bytes and return the frames they complete."""
        return self._after_decode(self._feed(chunk))

    def flush(self) -> list[Frame]:
        """End the current document after an idle timeout."""
        return self._after_decode(self._flush())

    @abc.abstractmethod
    def _feed(self, chunk: bytes) -> list[Frame]: ...

    def _flush(self) -> list[Frame]:
        """Drop the incomplete frame at the buffer start by its first byte
        only, and decode the rest again.

        A length field read from noise may have made the decoder wait for,
        and hold, real frames behind it. Protocols whose documents end by
        silence override this."""
        frames: list[Frame] = []
        while self._buffer:
            self._drop(f"incomplete frame of {len(self._buffer)} bytes at timeout")
            self._consume(1)
            frames += self._feed(b"")
        self._end_noise_run()
        return frames

    def _after_decode(self, frames: list[Frame]) -> list[Frame]:
        """Start a new run of warnings once a frame is decoded, after logging
        how many warnings of the last run were counted but not logged."""
        if frames:
            self._log_unlogged()
            self._run_warnings = 0
            self._next_summary = 2 * WARNINGS_PER_RUN
        return frames

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a finished frame."""
        return len(self._buffer)

    @property
    def needs_flush(self) -> bool:
        """True while bytes are held or skipped noise is not yet reported."""
        return self.pending > 0 or self._noise_run > 0

    def _consume(self, count: int) -> bytes:
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        self._offset += count
        return taken

    def _discard_noise(self, count: int) -> None:
        if count <= 0:
            return
        if self._noise_run == 0:
            self._noise_start = self._offset
        self.noise_bytes += count
        self._noise_run += count
        self._consume(count)

    def _end_noise_run(self) -> None:
        """Report the bytes skipped since the last frame start, if any."""
        if self._noise_run == 0:
            return
        message = (
            f"offset {self._noise_start}: skipped {self._noise_run} bytes outside "
            "any frame (line noise, or a wrong baud rate if this repeats)"
        )
        self._noise_run = 0
        self.drop_count += 1
        self.dropped.append(message)
        self._warn(message)

    def _drop(self, reason: str) -> None:
        self._end_noise_run()
        message = f"offset {self._offset}: {reason}"
        self.drop_count += 1
        self.dropped.append(message)
        self._warn(f"dropped a frame: {message}")

    def _warn(self, text: str) -> None:
        """Log a warning in full, or count it once this run logged
        WARNINGS_PER_RUN of them."""
        self._run_warnings += 1
        if self._run_warnings < WARNINGS_PER_RUN:
            log.warning("%s decoder: %s", self.name, text)
            return
        if self._run_warnings == WARNINGS_PER_RUN:
            log.warning(
                "%s decoder: %s; further warnings are counted, and logged in "
                "summary, until a frame is decoded",
                self.name,
                text,
            )
            return
        self._unlogged_warnings += 1
        self._last_unlogged = text
        if self._run_warnings >= self._next_summary:
            self._log_unlogged()
            self._next_summary *= 2

    def _log_unlogged(self) -> None:
        if not self._unlogged_warnings:
            return
        log.warning(
            "%s decoder: %d more warnings not logged (%d since the last decoded "
            "frame); the latest: %s",
            self.name,
            self._unlogged_warnings,
            self._run_warnings,
            self._last_unlogged,
        )
        self._unlogged_warnings = 0


class Encoder(abc.ABC):
    """Turns documents into the bytes a device of this protocol sends.

    The simulator uses it, with faults injected on request."""

    name: ClassVar[str] = ""
    delivers_images: ClassVar[bool] = False
    # Faults every encoder can inject; subclasses add bad-bcc and cut-line.
    supported_faults: frozenset[str] = frozenset({"garbage", "partial", "wrong-baud"})

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def encode(self, document: Document, fault: str | None = None) -> bytes:
        if fault is not None and fault not in self.supported_faults:
            raise ValueError(
                f"protocol {self.name!r} cannot inject fault {fault!r}; "
                f"supported: {', '.join(sorted(self.supported_faults))}"
            )
        if fault in ("bad-bcc", "cut-line"):
            return self._encode_faulty(document, fault)
        clean = self._encode(document)
        if fault == "garbage":
            return self.garbage() + clean
        if fault == "partial":
            return clean[: max(1, len(clean) // 2)]
        if fault == "wrong-baud":
            return garble(clean, self.rng)
        return clean

    def garbage(self) -> bytes:
        """Random bytes as a noisy line sends between frames."""
        return self.rng.randbytes(self.rng.randint(3, 40))

    @abc.abstractmethod
    def _encode(self, document: Document) -> bytes: ...

    def _encode_faulty(self, document: Document, fault: str) -> bytes:
        raise ValueError(f"protocol {self.name!r} cannot inject fault {fault!r}")


def cut_lines(lines: Sequence[str], rng: random.Random) -> list[str]:
    """Return `lines` with one line cut short by 1 to 10 characters."""
    result = list(lines)
    index = rng.randrange(len(result))
    result[index] = result[index][: -rng.randint(1, 10)]
    return result


def garble(data: bytes, rng: random.Random) -> bytes:
    """Approximate what a receiver set to the wrong baud rate reads.

    Start and stop bits fall in the wrong places, so every byte changes and
    some bytes split in two. The exact pattern depends on both rates; this
    shifts bits and inserts random bytes, which is enough to break framing."""
    out = bytearray()
    for byte in data:
        out.append(((byte << 1) | 0x01) & 0xFF)
        if rng.random() < 0.3:
            out.append(rng.randrange(0x80, 0x100))
    return bytes(out)


def as_lines(document: Document) -> list[str]:
    if isinstance(document, bytes | bytearray):
        raise TypeError("this protocol sends MRZ lines, not images")
    return list(document)
