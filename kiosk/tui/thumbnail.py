"""The MRZ crop of a page image, drawn with half-block characters.

Each character cell shows two pixels, one above the other: the upper half
block takes the top pixel as foreground colour and the cell background is
the bottom pixel. Any terminal with 24-bit or 256 colours shows it, so no
image protocol is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt
from rich.color import Color
from rich.style import Style
from rich.text import Text

# Cell rows per MRZ line: three rows (six pixel rows) keep the lines apart.
ROWS_PER_LINE = 3
# Width of the thumbnail in cells; fits the details column at 80 columns.
DEFAULT_WIDTH = 44


def crop_mrz(
    image: npt.NDArray[np.uint8], box: Sequence[tuple[float, float]], lines: int
) -> npt.NDArray[np.uint8] | None:
    """Return the MRZ band upright and in grey, or None without a usable box.

    `box` holds the four corners clockwise from the top-left of the upright
    MRZ, in image pixels, as the reader reports them.
    """
    if len(box) != 4 or lines < 1:
        return None
    corners = np.asarray(box, dtype=np.float32)
    width = float(np.linalg.norm(corners[1] - corners[0]))
    height = float(np.linalg.norm(corners[3] - corners[0]))
    if width < 2 or height < 2:
        return None
    target = np.asarray(
        [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
        dtype=np.float32,
    )
    matrix = cv2.getPerspectiveTransform(corners, target)
    upright = cv2.warpPerspective(image, matrix, (round(width), round(height)))
    if upright.ndim == 3:
        upright = cv2.cvtColor(upright, cv2.COLOR_BGR2GRAY)
    return np.asarray(upright, dtype=np.uint8)


def half_blocks(
    grey: npt.NDArray[np.uint8], *, lines: int, width: int = DEFAULT_WIDTH
) -> Text:
    """Draw a grey image as `width` cells by `lines * ROWS_PER_LINE` rows."""
    rows = max(1, lines * ROWS_PER_LINE)
    small = cv2.resize(grey, (width, rows * 2), interpolation=cv2.INTER_AREA)
    # Stretch the contrast, because a photographed MRZ is often grey on grey.
    low, high = int(small.min()), int(small.max())
    if high > low:
        small = ((small.astype(np.int32) - low) * 255 // (high - low)).astype(np.uint8)
    text = Text()
    for row in range(rows):
        if row:
            text.append("\n")
        for column in range(width):
            top = int(small[2 * row, column])
            bottom = int(small[2 * row + 1, column])
            style = Style(
                color=Color.from_rgb(top, top, top),
                bgcolor=Color.from_rgb(bottom, bottom, bottom),
            )
            text.append("▀", style=style)
    return text
