"""JSON documents inside STX/ETX frames, with read status frames.

    STX {"type": "status", "status": "read_start"} ETX
    STX {"type": "mrz", "lines": ["...", "..."]} ETX
    STX {"type": "status", "status": "read_end"} ETX

Status values: read_start, read_end, document_removed, error.
"""

from __future__ import annotations

import json

from drivers.protocols.base import (
    Document,
    Encoder,
    Frame,
    MrzFrame,
    StatusFrame,
    as_lines,
    check_mrz_lines,
    cut_lines,
)
from drivers.protocols.framing import FrameDecoder, FrameFormat, RawFrame, build_frame

STATUSES = frozenset({"read_start", "read_end", "document_removed", "error"})


class JsonDecoder(FrameDecoder):
    name = "json"

    def __init__(self, *, bcc: bool = False) -> None:
        # JSON quoting roughly doubles an MRZ payload; 1 KiB leaves room.
        super().__init__(FrameFormat(bcc=bcc, max_payload=1024))

    def _interpret(self, frame: RawFrame) -> list[Frame] | None:
        size = len(frame.payload)
        try:
            message = json.loads(frame.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._drop(f"payload of {size} bytes is not JSON")
            return None
        if not isinstance(message, dict):
            self._drop(f"JSON payload of {size} bytes is not an object")
            return None
        kind = message.get("type")
        if kind == "status":
            status = message.get("status")
            if status not in STATUSES:
                self._drop(f"unknown status in a JSON frame of {size} bytes")
                return None
            return [StatusFrame(str(status), frame.raw)]
        if kind != "mrz":
            self._drop(f"unknown message type in a JSON frame of {size} bytes")
            return None
        lines = message.get("lines")
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            self._drop(f"JSON frame of {size} bytes has no list of lines")
            return None
        reason = check_mrz_lines(lines)
        if reason is not None:
            self._drop(reason)
            return None
        return [MrzFrame(lines, frame.raw)]


class JsonEncoder(Encoder):
    name = "json"

    def __init__(self, *, bcc: bool = False, seed: int | None = None) -> None:
        super().__init__(seed)
        self.format = FrameFormat(bcc=bcc)
        self.supported_faults = self.supported_faults | {"cut-line"}
        if bcc:
            self.supported_faults = self.supported_faults | {"bad-bcc"}

    def status(self, status: str) -> bytes:
        payload = json.dumps({"type": "status", "status": status}).encode()
        return build_frame(payload, self.format)

    def _document_frame(self, lines: list[str], corrupt_bcc: bool = False) -> bytes:
        payload = json.dumps({"type": "mrz", "lines": lines}).encode()
        return build_frame(payload, self.format, corrupt_bcc=corrupt_bcc)

    def _encode(self, document: Document) -> bytes:
        return (
            self.status("read_start")
            + self._document_frame(as_lines(document))
            + self.status("read_end")
        )

    def _encode_faulty(self, document: Document, fault: str) -> bytes:
        lines = as_lines(document)
        if fault == "cut-line":
            middle = self._document_frame(cut_lines(lines, self.rng))
        else:
            middle = self._document_frame(lines, corrupt_bcc=True)
        return self.status("read_start") + middle + self.status("read_end")
