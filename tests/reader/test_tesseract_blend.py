"""Tesseract as the reader's second recogniser, with its output faked.

These tests fix what the reader does with Tesseract's lines, whatever model
is installed. The cases come from the reading benchmark's rendered set.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kiosk import mrz
from kiosk.reader import read_image, tesseract
from kiosk.reader.glyphs import LineGeometry


def _case(index: int) -> tuple[np.ndarray, list[str]]:
    """Case `index` of the benchmark's rendered set, decoded as the bench does."""
    from tools.render import encode_case, render_set

    case = next(render_set(1, 1, apply_jpeg=False, start=index))
    data = np.frombuffer(encode_case(case), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None
    return image, list(case.truth["lines"])


def _fake_tesseract(
    monkeypatch: pytest.MonkeyPatch, lines: list[str], conf: float
) -> list[int]:
    calls: list[int] = []

    def read_lines(
        gray: np.ndarray, geometries: list[LineGeometry]
    ) -> list[tesseract.LineReading | None]:
        calls.append(len(geometries))
        return [tesseract.LineReading(tuple((c, conf) for c in t)) for t in lines]

    monkeypatch.setattr(tesseract, "available", lambda: True)
    monkeypatch.setattr(tesseract, "read_lines", read_lines)
    return calls


def test_tesseract_settles_an_unclear_glyph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In this case the glyph network reads every character right but is
    # unsure of one filler on the top line, so the reading alone is refused.
    image, truth = _case(5)
    monkeypatch.setattr(tesseract, "available", lambda: False)
    alone = read_image(image)
    assert not alone.ok
    assert alone.rejection == "MRZ unclear on the top line"
    calls = _fake_tesseract(monkeypatch, truth, 0.95)
    helped = read_image(image)
    assert calls, "Tesseract was not asked"
    assert helped.ok
    assert list(helped.text) == truth
    assert helped.recogniser == "glyphs+tesseract"


def test_tesseract_check_digit_misread_outvoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tesseract misreads the number's last digit: the check digit rejects
    # its reading of the number, and the glyph network's passes.
    image, truth = _case(5)
    wrong = [truth[0], truth[1].replace("200723110160", "200723110168")]
    _fake_tesseract(monkeypatch, wrong, 0.99)
    result = read_image(image)
    assert result.ok
    assert list(result.text) == truth


def test_tesseract_cannot_overrule_clear_glyph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another number that passes the same check digits (weights 7 and 3 sum
    # to 10): the glyph network read these digits clearly, so the
    # disagreement means a rescan.
    image, truth = _case(5)
    number = "200723110160"
    other = "310723110160"
    assert mrz.compute_check_digit(number) == mrz.compute_check_digit(other)
    wrong = [truth[0], truth[1].replace(number, other)]
    assert mrz.parse(wrong).valid
    _fake_tesseract(monkeypatch, wrong, 0.99)
    result = read_image(image)
    assert not result.ok
    assert result.rejection


def test_tesseract_skipped_when_glyphs_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image, truth = _case(0)
    calls = _fake_tesseract(monkeypatch, ["X" * len(t) for t in truth], 0.99)
    result = read_image(image)
    assert result.ok
    assert list(result.text) == truth
    assert not calls
