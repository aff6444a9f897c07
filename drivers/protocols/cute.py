"""CUTE-style readers: one STX/ETX frame wrapped in data markers.

    FS STX line CR line [CR line] ETX [BCC] GS

FS (0x1C) starts and GS (0x1D) ends the data of one document.
NOTE: reader models differ in their marker bytes; these are the defaults of
this implementation, not taken from a vendor manual.
"""

from __future__ import annotations

from drivers.protocols.base import Document, Encoder, as_lines, cut_lines
from drivers.protocols.framing import MRZ_MAX_PAYLOAD, FrameFormat, build_frame
from drivers.protocols.stx_etx import MrzFrameDecoder, mrz_payload

START_OF_DATA = b"\x1c"
END_OF_DATA = b"\x1d"


def cute_format(bcc: bool) -> FrameFormat:
    return FrameFormat(
        bcc=bcc,
        start_marker=START_OF_DATA,
        end_marker=END_OF_DATA,
        max_payload=MRZ_MAX_PAYLOAD,
    )


class CuteDecoder(MrzFrameDecoder):
    name = "cute"

    def __init__(self, *, bcc: bool = True) -> None:
        super().__init__(cute_format(bcc))


class CuteEncoder(Encoder):
    name = "cute"

    def __init__(self, *, bcc: bool = True, seed: int | None = None) -> None:
        super().__init__(seed)
        self.format = cute_format(bcc)
        self.supported_faults = self.supported_faults | {"cut-line"}
        if bcc:
            self.supported_faults = self.supported_faults | {"bad-bcc"}

    def _encode(self, document: Document) -> bytes:
        return build_frame(mrz_payload(as_lines(document), False), self.format)

    def _encode_faulty(self, document: Document, fault: str) -> bytes:
        lines = as_lines(document)
        if fault == "cut-line":
            return build_frame(
                mrz_payload(cut_lines(lines, self.rng), False), self.format
            )
        payload = mrz_payload(lines, False)
        return build_frame(payload, self.format, corrupt_bcc=True)
