"""Fitting the glyph grid of one MRZ line to its ink components."""

from __future__ import annotations

import numpy as np
import pytest

from kiosk.reader.segment import LineSpan, find_lines, grid_for

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
    # Glare can break a glyph into two blobs a pixel or two apart. Each
    # used to take a grid place of its own, which shifted the rest of the line.
    xs = _perspective_centres()
    pieces = [xs[10] + 1.0, xs[25] - 1.5, xs[26] + 0.5]
    geometry = grid_for(_span(xs, pieces), COUNT)
    fitted = [geometry.centre(i)[0] for i in range(COUNT)]
    errors = np.abs(np.array(fitted) - np.array(xs)) / 27.0
    assert float(errors.max()) < 0.25


def _glyph_row(washed_out: range) -> np.ndarray:
    """An ink map of one 36-glyph line, 24 px glyphs at a 27 px pitch, whose
    glyphs in `washed_out` are left as two short pieces each, as glare
    leaves them."""
    ink = np.zeros((80, 1200), np.float32)
    for i in range(36):
        x = 100 + 27 * i
        if i in washed_out:
            ink[30:38, x : x + 8] = 1.0
            ink[44:50, x + 10 : x + 18] = 1.0
        else:
            ink[28:52, x : x + 18] = 1.0
    return ink


def test_line_spans_glare_gap() -> None:
    # Five washed-out glyphs left a gap wider than a cap height, and the
    # line was measured as its longer half, too short to read.
    (span,) = find_lines(_glyph_row(range(14, 19)))
    assert span.left == pytest.approx(100, abs=2)
    assert span.right == pytest.approx(100 + 27 * 35 + 18, abs=2)


def test_line_ends_at_tall_glyphs() -> None:
    # Pieces may bridge a gap but do not stretch the line's ends.
    (span,) = find_lines(_glyph_row(range(32, 36)))
    assert span.left == pytest.approx(100, abs=2)
    assert span.right == pytest.approx(100 + 27 * 31 + 18, abs=2)
