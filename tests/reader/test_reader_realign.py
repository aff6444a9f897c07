"""Moving a line's glyph grid back when it sits a whole pitch off."""

from __future__ import annotations

import dataclasses
import random

import cv2
import numpy as np
import pytest

from kiosk import mrz
from kiosk.reader import read_image
from kiosk.reader import reader as rd
from kiosk.reader.glyphs import LineGeometry, cut_cells, default_model
from tools.render import Damage, encode_case, render_document, render_set

CLEAN = Damage(glyph_px=26.0, clutter=True, jpeg_quality=85, noise_sigma=2.0)


def _flat_reading(fmt: str, seed: int) -> tuple[rd._Reading, list[str]]:
    rng = random.Random(seed)
    image, truth = render_document(mrz.random_fields(rng, fmt), rng, CLEAN)
    readings, _, _ = rd._search(rd.to_gray(image), {})
    return rd._reread_flat(readings[0]), list(truth["lines"])


def _with_line_stepped(reading: rd._Reading, line: int, step: int) -> rd._Reading:
    geometries = list(reading.geometries)
    probs = list(reading.probs)
    geometries[line] = rd._step_grid(geometries[line], step)
    probs[line] = default_model().probabilities(
        cut_cells(reading.image.ink, geometries[line])
    )
    return dataclasses.replace(reading, geometries=geometries, probs=probs)


def test_step_grid_moves_one_place() -> None:
    geometry = LineGeometry(10.0, 20.0, 5.0, 0.1, 25.0, 44, curve=0.05)
    for step in (-1, 1):
        moved = rd._step_grid(geometry, step)
        for i in range(geometry.count - 1):
            assert moved.centre(i) == pytest.approx(geometry.centre(i + step))


@pytest.mark.parametrize(("fmt", "line", "step"), [("MRVA", 0, -1), ("TD3", 1, 1)])
def test_realign_restores_shifted_line(fmt: str, line: int, step: int) -> None:
    reading, truth = _flat_reading(fmt, 31)
    broken = _with_line_stepped(reading, line, step)
    assert not rd._finish(broken, broken.alternatives(), {}).ok

    fixed = rd._realign(broken)

    assert fixed is not None
    result = rd._finish(fixed, fixed.alternatives(), {})
    assert result.ok
    assert list(result.text) == truth


def test_realign_keeps_good_reading() -> None:
    reading, _ = _flat_reading("TD1", 32)
    assert rd._realign(reading) is None


def test_realign_rescues_damaged_card(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Case 48 of the rendered set with seed 3, a heavily damaged TD1 card:
    # without the move, one line's grid sits a pitch off and the bottom
    # line reads unclear.
    (case,) = render_set(3, 1, start=48, apply_jpeg=False)
    data = np.frombuffer(encode_case(case), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None

    with monkeypatch.context() as patch:
        patch.setattr(rd, "_realign", lambda reading: None)
        unmoved = read_image(image)
    result = read_image(image)

    assert not unmoved.ok
    assert result.ok
    assert list(result.text) == case.truth["lines"]
