"""Protocol decoders and encoders, without a port."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.protocols import (
    FAULTS,
    PROTOCOLS,
    Decoder,
    Frame,
    ImageFrame,
    MrzFrame,
    StatusFrame,
    check_mrz_lines,
    make_decoder,
    make_encoder,
)
from drivers.protocols.base import WARNINGS_PER_RUN, garble, xor_bcc
from drivers.protocols.command import CommandDecoder, response
from drivers.protocols.framing import FrameFormat, build_frame
from drivers.protocols.image import image_frame
from drivers.protocols.plain import PlainLinesDecoder, PlainLinesEncoder
from drivers.protocols.stx_etx import StxEtxDecoder
from drivers.specimens import SPECIMENS, specimen_documents
from tests.drivers.driver_helpers import jpeg_bytes, png_bytes

TD3 = SPECIMENS["td3"]
TD1 = SPECIMENS["td1"]
TD2 = SPECIMENS["td2"]
MRZ_PROTOCOLS = [p for p in PROTOCOLS if p != "image"]
# (protocol, options) pairs covering every framing variant.
VARIANTS: list[tuple[str, dict[str, bool]]] = [
    ("plain", {}),
    ("stx-etx", {}),
    ("stx-etx", {"bcc": True}),
    ("stx-etx", {"header": True, "bcc": True}),
    ("stx-etx", {"header": True}),
    ("cute", {}),
    ("cute", {"bcc": False}),
    ("command", {}),
    ("json", {}),
    ("json", {"bcc": True}),
]
VARIANT_IDS = [f"{name}-{'-'.join(sorted(opts)) or 'plain'}" for name, opts in VARIANTS]


def mrz_lines(frames: Sequence[Frame]) -> list[list[str]]:
    return [f.lines for f in frames if isinstance(f, MrzFrame)]


def feed_bytewise(decoder: Decoder, data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for index in range(len(data)):
        frames += decoder.feed(data[index : index + 1])
    return frames


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_round_trip_all_specimens(name: str, options: dict[str, bool]) -> None:
    encoder = make_encoder(name, **options)
    decoder = make_decoder(name, **options)
    stream = b"".join(encoder.encode(doc) for doc in specimen_documents())
    assert mrz_lines(decoder.feed(stream)) == specimen_documents()
    assert list(decoder.dropped) == []
    assert decoder.pending == 0


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_round_trip_byte_by_byte(name: str, options: dict[str, bool]) -> None:
    encoder = make_encoder(name, **options)
    decoder = make_decoder(name, **options)
    stream = b"".join(encoder.encode(doc) for doc in specimen_documents())
    assert mrz_lines(feed_bytewise(decoder, stream)) == specimen_documents()


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_unreadable_marker_kept(name: str, options: dict[str, bool]) -> None:
    doc = [TD3[0], TD3[1][:5] + "_" + TD3[1][6:]]
    frames = make_decoder(name, **options).feed(
        make_encoder(name, **options).encode(doc)
    )
    assert mrz_lines(frames) == [doc]


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_then_clean_document(
    name: str, options: dict[str, bool], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = make_encoder(name, seed=7, **options)
    if fault not in encoder.supported_faults:
        with pytest.raises(ValueError, match=fault):
            encoder.encode(TD1, fault)
        return
    decoder = make_decoder(name, **options)
    caplog.set_level(logging.DEBUG, logger="drivers")
    frames = decoder.feed(encoder.encode(TD1, fault))
    # The serial driver flushes after an idle timeout between documents.
    frames += decoder.flush()
    frames += decoder.feed(encoder.encode(TD3))
    decoded = mrz_lines(frames)
    assert decoded[-1] == TD3
    if fault == "garbage" and name != "plain":
        assert decoded == [TD1, TD3]
    elif fault != "garbage":
        assert decoded == [TD3]
        assert len(decoder.dropped) >= 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) >= 1
    # Drop reasons quote positions and lengths, never the MRZ text.
    for line in TD1 + TD3:
        assert line not in caplog.text
        assert line[:10] not in caplog.text


@pytest.mark.parametrize(("name", "options"), VARIANTS[1:], ids=VARIANT_IDS[1:])
def test_partial_frame_resyncs_without_timeout(
    name: str, options: dict[str, bool]
) -> None:
    encoder = make_encoder(name, seed=3, **options)
    decoder = make_decoder(name, **options)
    stream = encoder.encode(TD1, "partial") + encoder.encode(TD2)
    assert mrz_lines(decoder.feed(stream)) == [TD2]
    assert len(decoder.dropped) >= 1


@pytest.mark.parametrize("line_end", [b"\r", b"\n", b"\r\n"])
def test_plain_line_ends(line_end: bytes) -> None:
    data = line_end.join(line.encode() for line in TD1) + line_end + line_end
    decoder = PlainLinesDecoder()
    assert mrz_lines(decoder.feed(data)) == [TD1]
    assert mrz_lines(decoder.feed(data)) == [TD1]


def test_plain_crlf_split_across_chunks() -> None:
    decoder = PlainLinesDecoder()
    frames = decoder.feed(TD3[0].encode() + b"\r")
    frames += decoder.feed(b"\n" + TD3[1].encode() + b"\r")
    frames += decoder.feed(b"\n\r\n")
    assert mrz_lines(frames) == [TD3]
    assert list(decoder.dropped) == []


def test_plain_incomplete_document_dropped_at_blank_line() -> None:
    decoder = PlainLinesDecoder()
    assert decoder.feed(TD1[0].encode() + b"\r\n" + TD1[1].encode() + b"\r\n\r\n") == []
    assert "blank line" in decoder.dropped[-1]


def test_plain_timeout_ends_last_line_without_terminator() -> None:
    decoder = PlainLinesDecoder()
    assert decoder.feed(TD3[0].encode() + b"\r\n" + TD3[1].encode()) == []
    assert mrz_lines(decoder.flush()) == [TD3]


def test_plain_mixed_lengths_rejected_whole() -> None:
    decoder = PlainLinesDecoder()
    data = TD1[0].encode() + b"\r\n" + PlainLinesEncoder().encode(TD3)
    assert mrz_lines(decoder.feed(data)) == []
    assert "line 2 has length 44, expected 30" in decoder.dropped[-1]
    assert mrz_lines(decoder.feed(PlainLinesEncoder().encode(TD3))) == [TD3]


def test_plain_noise_line_before_document_skipped() -> None:
    decoder = PlainLinesDecoder()
    data = b"noise\r\n" + PlainLinesEncoder().encode(TD3)
    assert mrz_lines(decoder.feed(data)) == [TD3]
    assert "a line of 5 bytes is no MRZ line (0 lines held)" in decoder.dropped[-1]


def test_plain_long_noise_without_line_end() -> None:
    decoder = PlainLinesDecoder()
    assert decoder.feed(b"x" * 500) == []
    assert decoder.pending == 0
    assert mrz_lines(decoder.feed(PlainLinesEncoder().encode(TD2))) == [TD2]


def test_stx_three_line_frame_with_empty_leading_line() -> None:
    payload = b"\r" + TD3[0].encode() + b"\r" + TD3[1].encode()
    frame = build_frame(payload, FrameFormat())
    assert frame[0] == 0x02
    assert frame[-1] == 0x03
    assert mrz_lines(StxEtxDecoder().feed(frame)) == [TD3]


def test_stx_bcc_is_xor_after_stx_through_etx() -> None:
    payload = "\r".join(TD2).encode()
    frame = build_frame(payload, FrameFormat(bcc=True))
    assert frame[-1] == xor_bcc(payload + b"\x03")
    bad = frame[:-1] + bytes([frame[-1] ^ 0x01])
    decoder = StxEtxDecoder(bcc=True)
    assert decoder.feed(bad) == []
    assert "block check" in decoder.dropped[-1]


def test_stx_header_fields() -> None:
    payload = "\r".join(TD1).encode()
    frame = build_frame(payload, FrameFormat(header=True, bcc=True))
    assert frame[0] == 0x01
    assert (frame[1] << 8) | frame[2] == len(payload)
    assert frame[5] == 0x02
    assert mrz_lines(StxEtxDecoder(header=True, bcc=True).feed(frame)) == [TD1]


def test_stx_header_length_mismatch_dropped() -> None:
    payload = "\r".join(TD1).encode()
    frame = bytearray(build_frame(payload, FrameFormat(header=True)))
    frame[2] -= 1
    decoder = StxEtxDecoder(header=True)
    good = build_frame("\r".join(TD2).encode(), FrameFormat(header=True))
    assert mrz_lines(decoder.feed(bytes(frame) + good)) == [TD2]
    assert "declares" in decoder.dropped[0]


def test_stx_non_mrz_payload_dropped() -> None:
    decoder = StxEtxDecoder()
    assert decoder.feed(b"\x02hello\x03") == []
    assert "no MRZ shape" in decoder.dropped[-1]


def test_stx_runaway_frame_dropped() -> None:
    decoder = StxEtxDecoder()
    assert decoder.feed(b"\x02" + b"A" * 5000) == []
    assert "no ETX within" in decoder.dropped[-1]
    assert decoder.pending < 5000


def test_command_status_responses() -> None:
    decoder = CommandDecoder()
    frames = decoder.feed(response("A") + response("N") + response("E", b"jam"))
    assert [f.status for f in frames if isinstance(f, StatusFrame)] == [
        "ack",
        "no_document",
        "error",
    ]


def test_command_noise_length_is_bounded() -> None:
    decoder = CommandDecoder()
    encoded = make_encoder("command").encode(TD1)
    assert mrz_lines(decoder.feed(b"M900" + encoded)) == [TD1]


def test_json_status_frames() -> None:
    decoder = make_decoder("json")
    frames = decoder.feed(make_encoder("json").encode(TD2))
    assert [type(f) for f in frames] == [StatusFrame, MrzFrame, StatusFrame]
    statuses = [f.status for f in frames if isinstance(f, StatusFrame)]
    assert statuses == ["read_start", "read_end"]


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'{"type": "mrz", "lines": "x"}', b'{"type": "what"}', b"{not json"],
)
def test_json_invalid_payloads_dropped(payload: bytes) -> None:
    decoder = make_decoder("json")
    assert decoder.feed(b"\x02" + payload + b"\x03") == []
    assert len(decoder.dropped) == 1


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_image_round_trip(kind: str) -> None:
    data = jpeg_bytes() if kind == "jpeg" else png_bytes()
    decoder = make_decoder("image")
    frames = feed_bytewise(decoder, b"junk" + image_frame(data) + b"\x01")
    assert len(frames) == 1
    frame = frames[0]
    assert isinstance(frame, ImageFrame)
    assert frame.format == kind
    assert frame.data == data


@pytest.mark.parametrize("fault", FAULTS)
def test_image_faults(fault: str) -> None:
    jpeg, png = jpeg_bytes(), png_bytes()
    encoder = make_encoder("image", seed=5)
    decoder = make_decoder("image")
    frames = decoder.feed(encoder.encode(jpeg, fault))
    frames += decoder.flush()
    frames += decoder.feed(encoder.encode(png))
    images = [f.data for f in frames if isinstance(f, ImageFrame)]
    if fault == "garbage":
        assert images == [jpeg, png]
    else:
        assert images == [png]
        assert len(decoder.dropped) >= 1


def test_image_encoder_rejects_mrz_lines() -> None:
    with pytest.raises(TypeError):
        make_encoder("image").encode(TD3)


def test_check_mrz_lines_reasons() -> None:
    assert check_mrz_lines(TD3) is None
    assert check_mrz_lines([]) == "no MRZ lines"
    assert "no MRZ shape" in (check_mrz_lines(TD3[:1]) or "")
    assert "column 3" in (
        check_mrz_lines([TD2[0][:2] + "a" + TD2[0][3:], TD2[1]]) or ""
    )
    assert "line 2 has length" in (check_mrz_lines([TD1[0], TD1[1][:-1], TD1[2]]) or "")


def test_unknown_protocol_names_choices() -> None:
    with pytest.raises(ValueError, match="stx-etx"):
        make_decoder("stxetx")


def test_garble_changes_every_byte() -> None:
    import random

    data = b"\x02" + TD3[0].encode() + b"\x03"
    garbled = garble(data, random.Random(1))
    assert 0x02 not in garbled
    assert len(garbled) >= len(data)


@pytest.mark.parametrize(("name", "options"), [*VARIANTS, ("image", {})])
@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes_never_crash(
    name: str, options: dict[str, bool], data: list[bytes]
) -> None:
    decoder = make_decoder(name, **options)
    for chunk in data:
        for frame in decoder.feed(chunk):
            if isinstance(frame, MrzFrame):
                assert check_mrz_lines(frame.lines) is None
    decoder.flush()
    assert decoder.pending == 0


_NOISE = st.binary(max_size=60).map(
    lambda b: bytes(x for x in b if x not in b"\x01\x02\x03\x1c\x1d\r\nMNAE")
)


@pytest.mark.parametrize(("name", "options"), VARIANTS[1:], ids=VARIANT_IDS[1:])
@settings(max_examples=80, deadline=None)
@given(noise=_NOISE, split=st.integers(min_value=0, max_value=200))
def test_frame_found_after_noise(
    name: str, options: dict[str, bool], noise: bytes, split: int
) -> None:
    decoder = make_decoder(name, **options)
    stream = noise + make_encoder(name, **options).encode(TD3)
    frames = decoder.feed(stream[:split]) + decoder.feed(stream[split:])
    assert mrz_lines(frames) == [TD3]


def test_noise_length_field_recovered_at_flush() -> None:
    fmt = FrameFormat(header=True)
    real = build_frame("\r".join(TD1).encode(), fmt)
    # SOH, a length of 255 and STX at the right place: a header made of noise.
    bogus = b"\x01\x00\xffMT\x02"
    decoder = StxEtxDecoder(header=True)
    assert decoder.feed(bogus + real) == []
    assert mrz_lines(decoder.flush()) == [TD1]
    assert "incomplete frame" in decoder.dropped[0]
    assert decoder.pending == 0


def test_header_length_above_mrz_limit_dropped() -> None:
    fmt = FrameFormat(header=True)
    real = build_frame("\r".join(TD2).encode(), fmt)
    decoder = StxEtxDecoder(header=True)
    assert mrz_lines(decoder.feed(b"\x01\x02\x00MT\x02" + real)) == [TD2]
    assert "limit 256" in decoder.dropped[0]


@pytest.mark.parametrize(("name", "options"), VARIANTS[1:], ids=VARIANT_IDS[1:])
@settings(max_examples=60, deadline=None)
@given(noise=st.binary(max_size=80))
def test_frame_survives_any_noise_with_flush(
    name: str, options: dict[str, bool], noise: bytes
) -> None:
    decoder = make_decoder(name, **options)
    frames = decoder.feed(noise + make_encoder(name, **options).encode(TD2))
    frames += decoder.flush()
    assert mrz_lines(frames) == [TD2]


def test_drop_count_outlives_reason_list() -> None:
    decoder = make_decoder("stx-etx")
    for _ in range(150):
        decoder.feed(b"\x02bad\x03")
    assert decoder.drop_count == 150
    assert len(decoder.dropped) == 100


def decoder_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_decoder_warnings_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    decoder = PlainLinesDecoder()
    caplog.set_level(logging.WARNING, logger="drivers")
    decoder.feed(b"not an MRZ line\r\n" * 1000)
    flood = decoder_warnings(caplog)

    assert decoder.drop_count == 1000
    # In full up to WARNINGS_PER_RUN, then summaries at 10, 20, 40 ... 640.
    assert len(flood) == WARNINGS_PER_RUN + 7
    assert "further warnings are counted" in flood[WARNINGS_PER_RUN - 1]
    assert flood[-1].startswith("plain decoder: 320 more warnings not logged (640")
    assert "a line of 15 bytes is no MRZ line" in flood[-1]

    caplog.clear()
    frames = decoder.feed(b"\r\n".join(line.encode() for line in TD3) + b"\r\n\r\n")
    assert mrz_lines(frames) == [TD3]
    assert decoder_warnings(caplog) == [
        "plain decoder: 360 more warnings not logged (1000 since the last decoded "
        "frame); the latest: dropped a frame: offset 17000: a line of 15 bytes is "
        "no MRZ line (0 lines held)"
    ]

    # A decoded frame starts a new run, whose warnings are logged in full.
    caplog.clear()
    decoder.feed(b"not an MRZ line\r\n")
    assert len(decoder_warnings(caplog)) == 1
    assert "dropped a frame" in decoder_warnings(caplog)[0]


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
def test_decoder_garbage_logs_few_lines(
    name: str, options: dict[str, bool], caplog: pytest.LogCaptureFixture
) -> None:
    decoder = make_decoder(name, **options)
    caplog.set_level(logging.WARNING, logger="drivers")
    garbage = random.Random(5).randbytes(256 * 1024)
    for start in range(0, len(garbage), 4096):
        decoder.feed(garbage[start : start + 4096])
    decoder.flush()

    doublings = max(decoder.drop_count, 1).bit_length()
    assert len(decoder_warnings(caplog)) <= WARNINGS_PER_RUN + doublings
    assert mrz_lines(decoder.feed(make_encoder(name, **options).encode(TD3))) == [TD3]


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize(
    "lines",
    [
        [TD3[0], TD3[1], TD3[1]],
        [TD3[0], TD3[1], TD3[0], TD3[1]],
        [*TD1, TD1[2]],
        [TD2[0], TD2[1], TD2[1]],
        [TD3[0]],
        [TD3[0], TD3[1][:40]],
        [TD3[0] + "<<", TD3[1] + "<<"],
        [TD1[0], TD3[0], TD3[1]],
        [TD3[0], TD3[1], TD1[0]],
        [TD3[0], TD3[1][:40], TD3[0], TD3[1]],
    ],
    ids=[
        "3x44",
        "4x44",
        "4x30",
        "3x36",
        "1x44",
        "44-40",
        "2x46",
        "30-44-44",
        "44-44-30",
        "44-40-44-44",
    ],
)
def test_wrong_line_count_or_length_rejected(
    name: str, options: dict[str, bool], lines: list[str]
) -> None:
    encoder = make_encoder(name, **options)
    decoder = make_decoder(name, **options)
    frames = decoder.feed(encoder.encode(lines))
    frames += decoder.flush()

    assert mrz_lines(frames) == []
    assert decoder.drop_count >= 1
    assert mrz_lines(decoder.feed(encoder.encode(TD3))) == [TD3]


def test_plain_extra_line_reason() -> None:
    decoder = PlainLinesDecoder()
    stream = b"\r\n".join(line.encode() for line in [*TD3, TD3[1]]) + b"\r\n\r\n"

    assert decoder.feed(stream) == []
    assert "line 3 follows a complete MRZ of 2 lines of 44" in decoder.dropped[-1]
    assert decoder.pending == 0


def test_plain_complete_document_waits_for_end() -> None:
    decoder = PlainLinesDecoder()
    stream = b"\r\n".join(line.encode() for line in TD3) + b"\r\n"

    assert decoder.feed(stream) == []
    assert decoder.needs_flush
    assert mrz_lines(decoder.flush()) == [TD3]
    assert list(decoder.dropped) == []
