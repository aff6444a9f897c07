"""Plain MRZ lines separated by CR, LF or CRLF.

A document ends at a blank line, or at the serial driver's idle timeout via
`flush()`. Its lines must then form one complete MRZ shape. Once a document
has a line, a line missing, a line too many or a line of another length
drops the whole document with the reason, and its remaining lines are
skipped, so no part of it passes as a document. A line that is no MRZ line
before a document starts is dropped as noise.
"""

from __future__ import annotations

from drivers.protocols.base import (
    CR,
    LF,
    MRZ_SHAPES,
    Decoder,
    Document,
    Encoder,
    Frame,
    MrzFrame,
    as_lines,
    check_mrz_lines,
    cut_lines,
)

LINE_ENDS = {"crlf": b"\r\n", "cr": b"\r", "lf": b"\n"}
_LINE_LENGTHS = {length for _, length in MRZ_SHAPES}
_LINE_COUNTS = {length: count for count, length in MRZ_SHAPES}
# The longest MRZ line is 44 characters; anything much longer is noise.
MAX_LINE = 128


class PlainLinesDecoder(Decoder):
    name = "plain"

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._raw = bytearray()
        # Set once a document is rejected: its remaining lines are skipped
        # up to its end, so they do not pass as a document.
        self._skip_to_end = False
        # A CR ended the last chunk, so an LF at the start of the next one
        # belongs to the same CRLF.
        self._skip_lf = False

    def _feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        frames: list[Frame] = []
        while self._buffer:
            if self._skip_lf and self._buffer[0] == LF:
                self._consume(1)
                self._skip_lf = False
                continue
            self._skip_lf = False
            end = _find_line_end(self._buffer)
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    if not self._skip_to_end:
                        self._reject(f"no line end within {MAX_LINE} bytes")
                    self._discard_noise(len(self._buffer))
                break
            line = self._consume(end)
            terminator_length = 1
            if self._buffer[0] == CR:
                if len(self._buffer) > 1 and self._buffer[1] == LF:
                    terminator_length = 2
                elif len(self._buffer) == 1:
                    self._skip_lf = True
            line_raw = line + self._consume(terminator_length)
            frames.extend(self._add_line(line, line_raw))
        return frames

    def _flush(self) -> list[Frame]:
        frames: list[Frame] = []
        if self._buffer:
            line = self._consume(len(self._buffer))
            frames.extend(self._add_line(line, line))
        frames.extend(self._end_document("timeout"))
        self._end_noise_run()
        self._skip_lf = False
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._raw)

    def _add_line(self, line_bytes: bytes, line_raw: bytes) -> list[Frame]:
        if not line_bytes:
            return self._end_document("a blank line")
        if self._skip_to_end:
            return []
        try:
            line = line_bytes.decode("ascii")
        except UnicodeDecodeError:
            line = None
        if line is None or len(line) not in _LINE_LENGTHS:
            self._reject(f"a line of {len(line_bytes)} bytes is no MRZ line")
            return []
        reason = check_mrz_lines([line] * _LINE_COUNTS[len(line)])
        if reason is not None:
            self._reject(reason)
            return []
        if self._lines:
            held_length = len(self._lines[0])
            shape_lines = _LINE_COUNTS[held_length]
            number = len(self._lines) + 1
            if number > shape_lines:
                self._reject(
                    f"line {number} follows a complete MRZ of {shape_lines} "
                    f"lines of {held_length} characters"
                )
                return []
            if len(line) != held_length:
                self._reject(
                    f"line {number} has length {len(line)}, expected {held_length}"
                )
                return []
        self._lines.append(line)
        self._raw += line_raw
        return []

    def _end_document(self, at: str) -> list[Frame]:
        """End the document at a blank line or timeout: return it as a frame
        when its lines form a complete MRZ, and drop it otherwise."""
        if self._skip_to_end:
            self._skip_to_end = False
            return []
        if not self._lines:
            return []
        if len(self._lines) < _LINE_COUNTS[len(self._lines[0])]:
            self._drop_document(f"document incomplete at {at}")
            return []
        frame = MrzFrame(self._lines, bytes(self._raw))
        self._lines = []
        self._raw.clear()
        return [frame]

    def _reject(self, reason: str) -> None:
        """Drop the document begun, skipping its remaining lines, or drop the
        line alone as noise when no document has begun."""
        if not self._lines:
            self._drop_document(reason)
            return
        self._drop_document(f"{reason}; the document is skipped up to its end")
        self._skip_to_end = True

    def _drop_document(self, reason: str) -> None:
        self._drop(f"{reason} ({len(self._lines)} lines held)")
        self._lines = []
        self._raw.clear()


def _find_line_end(buffer: bytearray) -> int:
    positions = [p for p in (buffer.find(b"\r"), buffer.find(b"\n")) if p >= 0]
    return min(positions) if positions else -1


class PlainLinesEncoder(Encoder):
    name = "plain"

    def __init__(self, *, line_end: str = "crlf", seed: int | None = None) -> None:
        super().__init__(seed)
        self.line_end = LINE_ENDS[line_end]
        self.supported_faults = self.supported_faults | {"cut-line"}

    def _encode(self, document: Document) -> bytes:
        return self._join(as_lines(document))

    def _encode_faulty(self, document: Document, fault: str) -> bytes:
        return self._join(cut_lines(as_lines(document), self.rng))

    def _join(self, lines: list[str]) -> bytes:
        text = b"".join(line.encode("ascii") + self.line_end for line in lines)
        return text + self.line_end
