"""Finding the MRZ band when other long dark lines lie next to it."""

from __future__ import annotations

import random

import cv2
import numpy as np

from kiosk import mrz
from kiosk.reader import read_image
from tools.render import Damage, encode_case, render_document, render_set

PLAIN = Damage(glyph_px=24.0, clutter=False, jpeg_quality=90, noise_sigma=1.0)


def _with_dark_edge_below(seed: int) -> tuple[np.ndarray, list[str]]:
    """A rendered visa with a long dark bar under its MRZ, wider than the
    MRZ, as the edge of a document lying on a dark desk looks."""
    rng = random.Random(seed)
    image, truth = render_document(mrz.random_fields(rng, "MRVA"), rng, PLAIN)
    clean = read_image(image)
    assert clean.ok
    xs = [x for x, _ in clean.box]
    ys = [y for _, y in clean.box]
    half = (max(ys) - min(ys)) / 2
    width = max(xs) - min(xs)
    top = int(max(ys) + 0.8 * half)
    corner = (int(min(xs) - 0.15 * width), top)
    far = (int(max(xs) + 0.15 * width), top + int(0.5 * half))
    cv2.rectangle(image, corner, far, (40, 60, 60), -1)
    return image, list(truth["lines"])


def test_dark_edge_below_mrz() -> None:
    # Before the fix, the bar seeded a band that held the bottom MRZ line
    # only, and the band around both MRZ lines was dropped as its duplicate.
    image, lines = _with_dark_edge_below(42)

    result = read_image(image)

    assert result.ok
    assert list(result.text) == lines


def test_visa_on_dark_desk() -> None:
    # Case 141 of seed 2: the edge below the visa seeded the only band near
    # the MRZ, and that band cut the top line in half: "MRZ not found".
    (case,) = render_set(2, 1, start=141, apply_jpeg=False)
    image = cv2.imdecode(np.frombuffer(encode_case(case), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None

    result = read_image(image)

    assert result.ok
    assert list(result.text) == case.truth["lines"]
