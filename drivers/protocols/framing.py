"""STX/ETX framing shared by the stx-etx, cute and json protocols.

A frame on the wire, with optional parts in brackets:

    [start marker] [SOH LEN_HI LEN_LO SOURCE TYPE] STX payload ETX [BCC] [end marker]

LEN is the payload length, big-endian. The BCC is the XOR of every byte after
the SOH (or after the STX without a header) up to and including the ETX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from drivers.protocols.base import ETX, SOH, STX, Decoder, Frame, xor_bcc

# No MRZ frame comes near this; a larger "frame" is noise that happened to
# contain an STX.
DEFAULT_MAX_PAYLOAD = 4096
# Three 30-character lines with separators and padding take under 100 bytes.
# A low limit makes a length field read from noise rarely look valid.
MRZ_MAX_PAYLOAD = 256


@dataclass(frozen=True, slots=True)
class FrameFormat:
    header: bool = False
    bcc: bool = False
    start_marker: bytes = b""
    end_marker: bytes = b""
    max_payload: int = DEFAULT_MAX_PAYLOAD


@dataclass(frozen=True, slots=True)
class RawFrame:
    payload: bytes = field(repr=False)
    raw: bytes = field(repr=False)
    source: int | None = None
    type: int | None = None


def build_frame(
    payload: bytes,
    fmt: FrameFormat,
    *,
    source: int = ord("M"),
    frame_type: int = ord("T"),
    corrupt_bcc: bool = False,
) -> bytes:
    body = bytearray()
    if fmt.header:
        body += bytes([len(payload) >> 8, len(payload) & 0xFF, source, frame_type])
    body.append(STX)
    checked_from = 0 if fmt.header else 1
    body += payload
    body.append(ETX)
    out = bytearray(fmt.start_marker)
    if fmt.header:
        out.append(SOH)
    out += body
    if fmt.bcc:
        bcc = xor_bcc(bytes(body[checked_from:]))
        out.append(bcc ^ 0xFF if corrupt_bcc else bcc)
    out += fmt.end_marker
    return bytes(out)


class FrameDecoder(Decoder):
    """Finds frames of one `FrameFormat` in a byte stream.

    Subclasses turn each frame's payload into protocol frames in
    `_interpret`; they return None (after calling `_drop`) to reject it."""

    def __init__(self, fmt: FrameFormat) -> None:
        super().__init__()
        self.format = fmt
        if fmt.start_marker:
            self._lead = fmt.start_marker
        else:
            self._lead = bytes([SOH if fmt.header else STX])

    def _feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames: list[Frame] = []
        while True:
            found = self._next_frame()
            if found is None:
                break
            frames.extend(found)
        return frames

    def _next_frame(self) -> list[Frame] | None:
        """Decode or drop the frame at the buffer start; None means wait."""
        start = self._buffer.find(self._lead)
        if start < 0:
            # Keep a tail that may be the first bytes of a multi-byte marker.
            keep = len(self._lead) - 1
            self._discard_noise(len(self._buffer) - keep)
            return None
        self._discard_noise(start)
        self._end_noise_run()
        result = self._parse_at_start()
        if result is None:
            return None
        if result is False:
            # Drop only the lead, so a real frame inside the rejected
            # bytes is still found.
            self._consume(1)
            return []
        frame_length, raw_frame = result
        self._consume(frame_length)
        return self._interpret(raw_frame) or []

    def _parse_at_start(self) -> tuple[int, RawFrame] | Literal[False] | None:
        """Parse the candidate at the buffer start.

        Return (length, frame), False after a drop, or None when more bytes
        are needed."""
        fmt = self.format
        buf = self._buffer
        pos = len(fmt.start_marker)
        source = frame_type = None
        declared: int | None = None
        if fmt.header:
            if len(buf) < pos + 6:
                return None
            if buf[pos] != SOH:
                self._drop("start marker not followed by SOH")
                return False
            declared = (buf[pos + 1] << 8) | buf[pos + 2]
            source, frame_type = buf[pos + 3], buf[pos + 4]
            pos += 5
            if declared > fmt.max_payload:
                self._drop(f"header declares {declared} bytes, limit {fmt.max_payload}")
                return False
        if len(buf) <= pos:
            return None
        if buf[pos] != STX:
            self._drop(f"no STX at byte {pos} of the frame")
            return False
        payload_start = pos + 1
        if declared is not None:
            etx = payload_start + declared
            if len(buf) <= etx:
                return None
            if buf[etx] != ETX:
                self._drop(f"no ETX after the {declared} bytes the header declares")
                return False
        else:
            found = self._find_etx(payload_start)
            if found is None or found is False:
                return found
            etx = found
        end = etx + 1 + (1 if fmt.bcc else 0)
        if len(buf) < end + len(fmt.end_marker):
            return None
        if fmt.bcc:
            checked_from = len(fmt.start_marker) + 1
            expected = xor_bcc(bytes(buf[checked_from : etx + 1]))
            if buf[etx + 1] != expected:
                self._drop(f"block check mismatch in a frame of {end} bytes")
                return False
        if fmt.end_marker and buf[end : end + len(fmt.end_marker)] != fmt.end_marker:
            self._drop(f"no end marker after a frame of {end} bytes")
            return False
        total = end + len(fmt.end_marker)
        raw = bytes(buf[:total])
        payload = bytes(buf[payload_start:etx])
        return total, RawFrame(payload, raw, source, frame_type)

    def _find_etx(self, payload_start: int) -> int | Literal[False] | None:
        buf = self._buffer
        limit = payload_start + self.format.max_payload + 1
        etx = buf.find(bytes([ETX]), payload_start, limit)
        restart = buf.find(self._lead, 1, etx if etx >= 0 else limit)
        if restart >= 0:
            # A new frame began before this one ended: the sender was cut off.
            self._drop(f"frame cut off after {restart} bytes by the next frame")
            self._consume(restart - 1)
            return False
        if etx >= 0:
            return etx
        if len(buf) >= limit:
            self._drop(f"no ETX within {self.format.max_payload} bytes")
            return False
        return None

    def _interpret(self, frame: RawFrame) -> list[Frame] | None:
        raise NotImplementedError
