"""Command/response readers: the host asks, the device answers.

Host to device, each command ending in CR:
    R   read the document on the window once
    C1  switch continuous read on: the device sends every new document
    C0  switch continuous read off

Device to host, a type letter and a three-digit decimal payload length:
    M nnn <MRZ lines separated by CR>   a document
    N 000                               no document on the window
    A 000                               command accepted
    E nnn <ASCII reason>                device error

NOTE: this is a generic form of the command sets found on desktop MRZ
readers; real models differ in command letters, so map them here.
"""

from __future__ import annotations

from drivers.protocols.base import (
    Decoder,
    Document,
    Encoder,
    Frame,
    MrzFrame,
    StatusFrame,
    as_lines,
    check_mrz_lines,
    cut_lines,
    decode_ascii_lines,
)

READ_COMMAND = b"R\r"
CONTINUOUS_ON = b"C1\r"
CONTINUOUS_OFF = b"C0\r"
COMMANDS = (READ_COMMAND, CONTINUOUS_ON, CONTINUOUS_OFF)

_TYPES = b"MNAE"
_STATUS_NAMES = {ord("N"): "no_document", ord("A"): "ack", ord("E"): "error"}
_HEADER = 4
# Three decimal digits cap the payload at 999 bytes.
_MAX_PAYLOAD = 999
# Three 30-character lines with CR LF separators take 94 bytes. A larger
# length read from noise would make the decoder wait for, and swallow, the
# real responses that follow.
_MAX_MRZ_PAYLOAD = 128


class CommandDecoder(Decoder):
    """Decodes the device's responses (the host side of the link)."""

    name = "command"

    def _feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames: list[Frame] = []
        while True:
            start = _find_type(self._buffer)
            if start < 0:
                self._discard_noise(len(self._buffer))
                break
            self._discard_noise(start)
            if len(self._buffer) < _HEADER:
                break
            digits = bytes(self._buffer[1:_HEADER])
            if not digits.isdigit():
                # A type letter inside noise, not a response.
                self._discard_noise(1)
                continue
            self._end_noise_run()
            length = int(digits)
            kind = self._buffer[0]
            if kind in (ord("N"), ord("A")) and length != 0:
                self._drop(f"response type {chr(kind)} with a payload of {length}")
                self._consume(1)
                continue
            if kind == ord("M") and length > _MAX_MRZ_PAYLOAD:
                self._drop(f"MRZ response declares {length} bytes")
                self._consume(1)
                continue
            if len(self._buffer) < _HEADER + length:
                break
            frame = self._interpret(kind, length)
            if frame is None:
                self._consume(1)
                continue
            frames.append(frame)
        return frames

    def _interpret(self, kind: int, length: int) -> Frame | None:
        raw = bytes(self._buffer[: _HEADER + length])
        payload = raw[_HEADER:]
        if kind != ord("M"):
            if kind == ord("E") and decode_ascii_lines(payload) is None:
                self._drop(f"non-ASCII error response of {length} bytes")
                return None
            self._consume(len(raw))
            return StatusFrame(_STATUS_NAMES[kind], raw)
        lines = decode_ascii_lines(payload)
        if lines is None:
            self._drop(f"non-ASCII bytes in a response of {length} bytes")
            return None
        reason = check_mrz_lines(lines)
        if reason is not None:
            self._drop(reason)
            return None
        self._consume(len(raw))
        return MrzFrame(lines, raw)


def _find_type(buffer: bytearray) -> int:
    for index, byte in enumerate(buffer):
        if byte in _TYPES:
            return index
    return -1


def response(kind: str, payload: bytes = b"") -> bytes:
    if kind.encode() not in (b"M", b"N", b"A", b"E") or len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"invalid response type {kind!r} or length {len(payload)}")
    return kind.encode() + f"{len(payload):03d}".encode() + payload


class CommandEncoder(Encoder):
    """Encodes the device's responses; the simulator also parses commands."""

    name = "command"

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.supported_faults = self.supported_faults | {"cut-line"}

    def _encode(self, document: Document) -> bytes:
        return response("M", "\r".join(as_lines(document)).encode("ascii"))

    def _encode_faulty(self, document: Document, fault: str) -> bytes:
        lines = cut_lines(as_lines(document), self.rng)
        return response("M", "\r".join(lines).encode("ascii"))


def split_commands(buffer: bytearray) -> list[bytes]:
    """Take the complete commands (ending in CR) out of `buffer`.

    Unknown commands are returned too; the device answers them with E."""
    commands = []
    while (end := buffer.find(b"\r")) >= 0:
        commands.append(bytes(buffer[: end + 1]))
        del buffer[: end + 1]
    return commands
