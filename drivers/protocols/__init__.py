"""Byte-stream protocols of serial document readers: decoders and encoders.

Every decoder is pure (bytes in, frames out) so it is tested without a port.
The matching encoder produces the device side for the simulator.
"""

from __future__ import annotations

from drivers.errors import DriverConfigError
from drivers.protocols.base import (
    FAULTS,
    Decoder,
    Document,
    Encoder,
    Frame,
    ImageFrame,
    MrzFrame,
    StatusFrame,
    check_mrz_lines,
)
from drivers.protocols.command import CommandDecoder, CommandEncoder
from drivers.protocols.cute import CuteDecoder, CuteEncoder
from drivers.protocols.image import ImageDecoder, ImageEncoder
from drivers.protocols.json_frames import JsonDecoder, JsonEncoder
from drivers.protocols.plain import PlainLinesDecoder, PlainLinesEncoder
from drivers.protocols.stx_etx import StxEtxDecoder, StxEtxEncoder

PROTOCOLS: tuple[str, ...] = ("plain", "stx-etx", "cute", "command", "json", "image")


def make_decoder(
    name: str, *, header: bool = False, bcc: bool | None = None
) -> Decoder:
    """Create the decoder for protocol `name`.

    `bcc=None` takes the protocol's usual setting: on for cute, off elsewhere.
    `header` applies to stx-etx only."""
    if name == "plain":
        return PlainLinesDecoder()
    if name == "stx-etx":
        return StxEtxDecoder(header=header, bcc=bool(bcc))
    if name == "cute":
        return CuteDecoder(bcc=True if bcc is None else bcc)
    if name == "command":
        return CommandDecoder()
    if name == "json":
        return JsonDecoder(bcc=bool(bcc))
    if name == "image":
        return ImageDecoder()
    raise DriverConfigError(
        f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
    )


def make_encoder(
    name: str, *, header: bool = False, bcc: bool | None = None, seed: int | None = None
) -> Encoder:
    """Create the device-side encoder matching `make_decoder` with the same options."""
    if name == "plain":
        return PlainLinesEncoder(seed=seed)
    if name == "stx-etx":
        return StxEtxEncoder(header=header, bcc=bool(bcc), seed=seed)
    if name == "cute":
        return CuteEncoder(bcc=True if bcc is None else bcc, seed=seed)
    if name == "command":
        return CommandEncoder(seed=seed)
    if name == "json":
        return JsonEncoder(bcc=bool(bcc), seed=seed)
    if name == "image":
        return ImageEncoder(seed=seed)
    raise DriverConfigError(
        f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
    )


__all__ = [
    "FAULTS",
    "PROTOCOLS",
    "Decoder",
    "Document",
    "Encoder",
    "Frame",
    "ImageFrame",
    "MrzFrame",
    "StatusFrame",
    "check_mrz_lines",
    "make_decoder",
    "make_encoder",
]
