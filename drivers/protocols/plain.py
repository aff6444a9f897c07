"""Plain MRZ lines separated by CR, LF or CRLF.

A document ends when its lines form a complete MRZ shape. A blank line, or
the serial driver's idle timeout via `flush()`, ends an incomplete one, which
is then dropped.
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
                    self._drop_document(f"no line end within {MAX_LINE} bytes")
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
        if self._lines:
            self._drop_document("document incomplete at timeout")
        self._end_noise_run()
        self._skip_lf = False
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._raw)

    def _add_line(self, line_bytes: bytes, line_raw: bytes) -> list[Frame]:
        if not line_bytes:
            if self._lines:
                self._drop_document("document incomplete at a blank line")
            return []
        try:
            line = line_bytes.decode("ascii")
        except UnicodeDecodeError:
            line = None
        if line is None or len(line) not in _LINE_LENGTHS:
            self._drop_document(f"a line of {len(line_bytes)} bytes is no MRZ line")
            return []
        reason = check_mrz_lines([line] * _LINE_COUNTS[len(line)])
        if reason is not None:
            self._drop_document(reason)
            return []
        if self._lines and len(self._lines[0]) != len(line):
            # Resynchronise: this line may start the next document.
            self._drop_document(
                f"line of length {len(line)} after lines of {len(self._lines[0])}"
            )
        self._lines.append(line)
        self._raw += line_raw
        if len(self._lines) < _LINE_COUNTS[len(line)]:
            return []
        frame = MrzFrame(self._lines, bytes(self._raw))
        self._lines = []
        self._raw.clear()
        return [frame]

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
