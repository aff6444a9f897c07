"""MRZ lines in STX/ETX frames, with an optional header and block check.

Lines inside a frame are separated by CR. Readers that always send three
lines put an empty first line before a TD3 or TD2; the decoder removes it.
"""

from __future__ import annotations

from drivers.protocols.base import (
    Document,
    Encoder,
    Frame,
    MrzFrame,
    as_lines,
    check_mrz_lines,
    cut_lines,
    decode_ascii_lines,
)
from drivers.protocols.framing import (
    MRZ_MAX_PAYLOAD,
    FrameDecoder,
    FrameFormat,
    RawFrame,
    build_frame,
)


class MrzFrameDecoder(FrameDecoder):
    """Shared by every protocol whose frame payload is CR-separated MRZ lines."""

    def _interpret(self, frame: RawFrame) -> list[Frame] | None:
        lines = decode_ascii_lines(frame.payload)
        if lines is None:
            self._drop(f"non-ASCII bytes in a payload of {len(frame.payload)} bytes")
            return None
        reason = check_mrz_lines(lines)
        if reason is not None:
            self._drop(reason)
            return None
        return [MrzFrame(lines, frame.raw)]


class StxEtxDecoder(MrzFrameDecoder):
    name = "stx-etx"

    def __init__(self, *, header: bool = False, bcc: bool = False) -> None:
        super().__init__(
            FrameFormat(header=header, bcc=bcc, max_payload=MRZ_MAX_PAYLOAD)
        )


def mrz_payload(lines: list[str], three_lines: bool) -> bytes:
    if three_lines and len(lines) == 2:
        lines = ["", *lines]
    return "\r".join(lines).encode("ascii")


class StxEtxEncoder(Encoder):
    name = "stx-etx"

    def __init__(
        self,
        *,
        header: bool = False,
        bcc: bool = False,
        three_lines: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.format = FrameFormat(header=header, bcc=bcc)
        self.three_lines = three_lines
        self.supported_faults = self.supported_faults | {"cut-line"}
        if bcc:
            self.supported_faults = self.supported_faults | {"bad-bcc"}

    def _encode(self, document: Document) -> bytes:
        payload = mrz_payload(as_lines(document), self.three_lines)
        return build_frame(payload, self.format)

    def _encode_faulty(self, document: Document, fault: str) -> bytes:
        lines = as_lines(document)
        if fault == "cut-line":
            payload = mrz_payload(cut_lines(lines, self.rng), self.three_lines)
            return build_frame(payload, self.format)
        payload = mrz_payload(lines, self.three_lines)
        return build_frame(payload, self.format, corrupt_bcc=True)
