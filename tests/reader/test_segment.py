"""Fitting the glyph grid of one MRZ line to its ink components."""

from __future__ import annotations

import numpy as np
import pytest

from kiosk.reader.segment import LineSpan, grid_for

COUNT = 44


def _span(xs: list[float], extra: list[float]) -> LineSpan:
    """A line whose glyphs are centred at `xs`, with more blobs at `extra`."""
    centres = xs + extra
    components = np.array([[x, 18.0, 24.0] for x in centres], np.float64)
    return LineSpan(
        top=100,
        bottom=124,
        cy=112.0,
        slope=0.0,
        cap=24.0,
        left=xs[0] - 9.0,
        right=xs[-1] + 9.0,
        components=components,
    )


def _perspective_centres() -> list[float]:
    # The pitch shrinks from 29 to about 25 pixels along the line, as on a
    # document tilted away from the camera.
    xs, x, pitch = [], 240.0, 29.0
    for _ in range(COUNT):
        xs.append(x)
        x += pitch
        pitch -= 0.09
    return xs


@pytest.mark.parametrize("extra", [[], [147.0], [147.0, 60.0], [1580.0]])
def test_grid_fits_every_glyph(extra: list[float]) -> None:
    # A blob from other print or the document's edge, beyond the line's run
    # of glyphs, once shifted the whole grid by a pitch.
    xs = _perspective_centres()
    geometry = grid_for(_span(xs, extra), COUNT)
    fitted = [geometry.centre(i)[0] for i in range(COUNT)]
    errors = np.abs(np.array(fitted) - np.array(xs)) / 27.0
    assert float(errors.max()) < 0.25


def test_glyph_pieces_share_place() -> None:
    # Glare can break a glyph into two blobs a pixel or two apart; each
    # used to take a grid place of its own, shifting the rest of the line.
    xs = _perspective_centres()
    pieces = [xs[10] + 1.0, xs[25] - 1.5, xs[26] + 0.5]
    geometry = grid_for(_span(xs, pieces), COUNT)
    fitted = [geometry.centre(i)[0] for i in range(COUNT)]
    errors = np.abs(np.array(fitted) - np.array(xs)) / 27.0
    assert float(errors.max()) < 0.25
