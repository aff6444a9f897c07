"""A finger or another dark object over part of the MRZ."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from kiosk import mrz
from kiosk.reader import read_image
from tools import render
from tools.render import Damage, render_document

PLAIN = Damage(glyph_px=26.0, clutter=False, jpeg_quality=90, noise_sigma=1.5)


def _with_finger(fmt: str, seed: int, line: int, column: float) -> np.ndarray:
    """Render a document and lay a dark grey ellipse over a few glyphs of
    one MRZ line, blended at 90 % as a fingertip in a photo."""
    rng = random.Random(seed)
    image, truth = render_document(mrz.random_fields(rng, fmt), rng, PLAIN)
    clean = read_image(image)
    assert clean.ok
    (x0, y0), (x1, _), _, (_, y3) = clean.box
    lines = len(truth["lines"])
    count = len(truth["lines"][0])
    pitch = (x1 - x0) / count
    height = (y3 - y0) / lines
    centre = (int(x0 + column * pitch), int(y0 + (line + 0.5) * height))
    axes = (int(1.6 * pitch), int(0.6 * height))
    overlay = image.copy()
    cv2.ellipse(overlay, centre, axes, 15, 0, 360, (70, 70, 70), -1, cv2.LINE_AA)
    return cv2.addWeighted(overlay, 0.9, image, 0.1, 0)


@pytest.mark.parametrize(
    ("fmt", "line", "column"),
    [("TD3", 0, 20.0), ("TD1", 2, 12.0), ("MRVA", 1, 30.0)],
)
def test_finger_over_glyphs_rejected(fmt: str, line: int, column: float) -> None:
    # Fingers over names and optional data were read as other letters at up
    # to 0.99, where no check digit could catch them.
    result = read_image(_with_finger(fmt, 61, line, column))
    assert not result.ok
    assert result.rejection is not None
    assert result.rejection.startswith("MRZ covered on")
    assert any(ln == line for ln, _ in result.doubtful)


def test_finger_misread_now_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by a break test: with a finger over "UMAR" on the name line,
    # the reader accepted "2MAR" at full confidence, and no check digit
    # covers the name.
    fields = mrz.DocumentFields(
        mrz.MrzFormat("TD3"),
        "PK",
        "KEN",
        "JP5906582",
        "CASTELLANO",
        "UMAR",
        "KEN",
        "020805",
        "M",
        "260607",
    )
    layout = render.LAYOUTS["TD3"]
    scale = render.BASE_PX_PER_MM
    draw = render.draw_document

    def draw_with_finger(*args: object, **kwargs: object) -> tuple[np.ndarray, object]:
        pixels, box = draw(*args, **kwargs)  # type: ignore[arg-type]
        overlay = pixels.copy()
        x = (layout.mrz_left_mm + 17.5 * layout.pitch_mm) * scale
        y = layout.height_mm - layout.bottom_mm - layout.line_pitch_mm
        y = (y - layout.cap_mm / 2) * scale
        axes = (int(2.31 * layout.pitch_mm * scale), int(0.62 * layout.cap_mm * scale))
        cv2.ellipse(overlay, (int(x), int(y)), axes, 20, 0, 360, (94, 94, 94), -1)
        return cv2.addWeighted(overlay, 0.95, pixels, 0.05, 0), box

    monkeypatch.setattr(render, "draw_document", draw_with_finger)
    damage = Damage(glyph_px=30.3, skew_deg=0.74, noise_sigma=2.28, jpeg_quality=91)
    image, _ = render_document(fields, random.Random("finger"), damage)

    result = read_image(image)

    assert not result.ok
    assert result.rejection is not None
    assert result.rejection.startswith("MRZ covered on the top line")
