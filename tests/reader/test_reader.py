"""Reading rendered documents and real specimen photos, and rejecting bad input."""

from __future__ import annotations

import json
import random
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk import mrz
from kiosk.errors import ImageError
from kiosk.reader import ReadResult, read_file, read_image
from tools.render import Damage, render_document, render_no_mrz

CLEAN = Damage(glyph_px=26.0, clutter=True, jpeg_quality=85, noise_sigma=2.0)


def _render(seed: int, fmt: str, damage: Damage) -> tuple[np.ndarray, list[str]]:
    rng = random.Random(seed)
    fields = mrz.random_fields(rng, fmt)
    image, truth = render_document(fields, rng, damage)
    return image, list(truth["lines"])


def _assert_read(result: ReadResult, lines: list[str]) -> None:
    assert result.rejection is None
    assert list(result.text) == lines
    assert result.ok
    assert 0.5 < result.confidence <= 1.0


@pytest.mark.parametrize("fmt", ["TD1", "TD2", "TD3", "MRVA", "MRVB", "FRA_ID"])
def test_reads_each_format(fmt: str) -> None:
    image, lines = _render(101, fmt, CLEAN)
    _assert_read(read_image(image), lines)


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_reads_each_rotation(turns: int) -> None:
    damage = Damage(glyph_px=24.0, quarter_turns=turns, skew_deg=4.0, jpeg_quality=80)
    image, lines = _render(200 + turns, "TD3", damage)
    result = read_image(image)
    _assert_read(result, lines)
    expected = (turns * 90.0 + 4.0) % 360.0
    error = abs((result.rotation - expected + 180.0) % 360.0 - 180.0)
    assert error < 3.0, f"rotation {result.rotation} for expected {expected}"


def test_reads_small_blurred_glyphs() -> None:
    damage = Damage(
        glyph_px=15.0, defocus_px=1.2, motion_px=2.0, noise_sigma=5.0, jpeg_quality=60
    )
    image, lines = _render(303, "TD2", damage)
    _assert_read(read_image(image), lines)


def test_reads_under_perspective_and_glare() -> None:
    damage = Damage(glyph_px=22.0, skew_deg=-6.0, perspective=0.05, glare=0.5)
    image, lines = _render(404, "TD1", damage)
    _assert_read(read_image(image), lines)


def test_result_carries_alternatives_box_and_timings() -> None:
    image, _ = _render(505, "TD3", CLEAN)
    result = read_image(image)
    assert [len(line) for line in result.alternatives] == [44, 44]
    for line in result.alternatives:
        for cands in line:
            probs = [p for _, p in cands]
            assert probs == sorted(probs, reverse=True)
            assert all(0.0 <= p <= 1.0 for p in probs)
            assert sum(probs) <= 1.0 + 1e-4
    assert len(result.box) == 4
    height, width = image.shape[:2]
    for x, y in result.box:
        assert -5 <= x <= width + 5
        assert -5 <= y <= height + 5
    assert {"locate", "recognise", "repair", "total"} <= set(result.timings)
    assert result.report is not None
    assert result.report.valid


def test_no_mrz_is_rejected() -> None:
    image, _ = render_no_mrz(random.Random(7), Damage(glyph_px=24.0))
    result = read_image(image)
    assert result.rejection == "MRZ not found"
    assert not result.ok


def test_blank_frame_is_rejected() -> None:
    result = read_image(np.full((480, 640, 3), 200, np.uint8))
    assert result.rejection == "MRZ not found"
    assert not result.ok


def test_mrz_cut_off_is_rejected() -> None:
    image, _ = _render(606, "TD3", Damage(glyph_px=24.0, fill=0.7, clutter=False))
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    result = read_image(gray)
    assert result.ok
    # Cut the frame through the middle of the MRZ, keeping its left half.
    xs = [x for x, _ in result.box]
    cut = int((min(xs) + max(xs)) / 2)
    cropped = read_image(np.ascontiguousarray(gray[:, :cut]))
    assert not cropped.ok
    assert cropped.rejection == "MRZ cut off at the edge"


def test_enormous_frame_is_scaled_down() -> None:
    image, lines = _render(707, "TD3", CLEAN)
    big = cv2.resize(image, None, fx=6.0, fy=6.0, interpolation=cv2.INTER_NEAREST)
    assert big.shape[0] * big.shape[1] > 24_000_000
    result = read_image(big)
    assert list(result.text) == lines


def test_huge_blank_frame_does_not_fail() -> None:
    result = read_image(np.zeros((12000, 12000), np.uint8))
    assert result.rejection == "MRZ not found"


@pytest.mark.parametrize(
    "array",
    [np.zeros((0, 0), np.uint8), np.zeros((10, 10), np.uint8), np.zeros((5, 5, 2))],
)
def test_unusable_arrays_raise(array: np.ndarray) -> None:
    with pytest.raises(ImageError):
        read_image(array)


def test_reads_file(tmp_path: Path) -> None:
    image, lines = _render(808, "TD2", CLEAN)
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), image)
    assert list(read_file(path).text) == lines


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + crc


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    image = np.random.default_rng(9).integers(0, 256, (240, 320, 3), np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    data = encoded.tobytes()
    files = {
        "empty.jpg": b"",
        "text.jpg": b"passport scan\nnot an image\n" * 20,
        "truncated.jpg": data[:200],
        "corrupt.jpg": data[:20] + bytes(range(256)) * 8,
        "huge.png": _png_header(30000, 30000) + b"\0" * 64,
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize(
    "name", ["empty.jpg", "text.jpg", "truncated.jpg", "corrupt.jpg", "huge.png"]
)
def test_bad_file_raises_image_error(tmp_path: Path, name: str) -> None:
    path = _bad_files(tmp_path)[name]
    with pytest.raises(ImageError, match=name.replace(".", r"\.")):
        read_file(path)


def test_missing_file_raises_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"absent\.jpg"):
        read_file(tmp_path / "absent.jpg")


def test_specimen_photos(shared_specimens: Path) -> None:
    truth = json.loads((shared_specimens / "truth.json").read_text())
    exact = []
    accepted = []
    for name, entry in sorted(truth.items()):
        result = read_file(shared_specimens / name)
        if list(result.text) == entry["lines"]:
            exact.append(name)
            if result.ok:
                accepted.append(name)
        else:
            # A wrong reading must never pass as valid.
            assert not result.ok, f"{name} misread but accepted"
    assert len(exact) >= 19, f"only {len(exact)} of {len(truth)} exact"
    # One specimen is misprinted and fails its checks as printed; a few more
    # carry look-alike rivals that the repair rightly reports as ambiguous.
    assert len(accepted) >= 15, f"only {len(accepted)} of {len(truth)} accepted"
