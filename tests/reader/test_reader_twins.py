"""O against 0 where a field allows both and the image is too soft to tell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from kiosk.reader import read_image
from kiosk.reader import reader as rd

FIXTURE = Path(__file__).parents[2] / "fixtures" / "images" / "mrvb-visa-moderate.jpg"
VISA = ["V<NLDEKSTROM<<RUTH<<<<<<<<<<<<<<<<<<", "N068650936NLD8701141X3202241<<<<<<<<"]


def _blurred(radius: float) -> np.ndarray:
    with Image.open(FIXTURE) as image:
        soft = image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))
    return np.ascontiguousarray(np.asarray(soft)[:, :, ::-1])


def test_sharp_visa_reads_its_zeros() -> None:
    result = read_image(_blurred(0))
    assert result.ok
    assert list(result.text) == VISA


def test_soft_visa_zeros_rejected() -> None:
    # Blurred this much, the glyph network read both zeros of N06865093 as
    # O at 0.99 each, and the two swaps cancel in the check digit: the
    # reading was accepted as exact with the wrong number.
    result = read_image(_blurred(4))
    assert not result.ok
    assert result.rejection is not None
    assert "unclear" in result.rejection


def test_doubt_twins_alnum_fields_only() -> None:
    alternatives = [[[(c, 1.0)] for c in line] for line in VISA]
    assert rd._doubt_twins(alternatives, lambda: False) == alternatives
    doubted = rd._doubt_twins(alternatives, lambda: True)
    # Position 2 of the number may be O or 0; the birth date's 0 may not.
    assert dict(doubted[1][1]) == {"0": 1.0 - rd.TWIN_FLOOR, "O": rd.TWIN_FLOOR}
    assert doubted[1][15] == [("0", 1.0)]
    assert doubted[0] == alternatives[0]
