"""MRZ crop thumbnails drawn with half blocks."""

from __future__ import annotations

import numpy as np

from kiosk.tui.thumbnail import ROWS_PER_LINE, crop_mrz, half_blocks


def striped_page() -> np.ndarray:
    """A white page with a black bar across the top half of a band."""
    page = np.full((200, 400, 3), 255, dtype=np.uint8)
    page[100:110, 50:350] = 0
    return page


def test_crop_follows_box_corners() -> None:
    box = [(50.0, 100.0), (350.0, 100.0), (350.0, 120.0), (50.0, 120.0)]
    crop = crop_mrz(striped_page(), box, 2)
    assert crop is not None
    assert crop.shape == (20, 300)
    assert crop[:8].mean() < 20
    assert crop[12:].mean() > 235


def test_crop_turns_upside_down_band() -> None:
    # Corners listed from the upright top-left, which lies bottom-right here.
    box = [(350.0, 120.0), (50.0, 120.0), (50.0, 100.0), (350.0, 100.0)]
    crop = crop_mrz(striped_page(), box, 2)
    assert crop is not None
    assert crop[:8].mean() > 235
    assert crop[12:].mean() < 20


def test_crop_needs_four_corners() -> None:
    assert crop_mrz(striped_page(), [(0.0, 0.0), (10.0, 0.0)], 2) is None
    assert crop_mrz(striped_page(), [], 2) is None


def test_half_blocks_size() -> None:
    grey = np.tile(np.arange(0, 200, dtype=np.uint8), (30, 1))
    text = half_blocks(grey, lines=3, width=20)
    rows = text.plain.split("\n")
    assert len(rows) == 3 * ROWS_PER_LINE
    assert all(row == "▀" * 20 for row in rows)
