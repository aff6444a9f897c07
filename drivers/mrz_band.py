"""A fast detector of the MRZ band in a camera frame, and its quality measures.

The camera driver only needs to know whether a document with an MRZ lies
still and readable in front of it. Reading the MRZ is the reader's job. The
detector looks for a wide band of two or three dark text lines:

1. a morphological black-hat brings out dark characters on a light page;
2. a horizontal Sobel gradient keeps the many vertical strokes of text;
3. a closing with a wide kernel merges characters into lines; Otsu's
   threshold and the contours give wide, flat line candidates;
4. two or three lines of similar width at a close, even pitch form the band,
   and the lowest such band on the page is the MRZ.

Sizes are for a frame scaled to 640 pixels wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

WORK_WIDTH = 640
# Wider than tall by this factor: one MRZ line is 30 to 44 characters long.
MIN_ASPECT = 8.0
# A line must span this fraction of the frame width, so a document far away
# (too small to read) is not captured.
MIN_WIDTH_FRACTION = 0.3
# A pixel this bright is treated as saturated by glare.
GLARE_LEVEL = 250

GrayImage = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Band:
    """The MRZ band's bounding box in frame pixels."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.width / 2, self.y + self.height / 2)

    def shift_from(self, other: Band) -> float:
        """Largest movement of the centre or change of size, in pixels."""
        (cx, cy), (ox, oy) = self.center, other.center
        return max(
            abs(cx - ox),
            abs(cy - oy),
            abs(self.width - other.width),
            abs(self.height - other.height),
        )

    def crop(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        return image[self.y : self.y + self.height, self.x : self.x + self.width]


def to_gray(frame: npt.NDArray[np.uint8]) -> GrayImage:
    if frame.ndim == 2:
        return frame
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def find_mrz_band(gray: GrayImage) -> Band | None:
    """Return the most likely MRZ band in a grayscale frame, or None."""
    height, width = gray.shape[:2]
    scale = WORK_WIDTH / width
    small = np.asarray(
        cv2.resize(gray, (WORK_WIDTH, max(1, round(height * scale)))), dtype=np.uint8
    )
    groups = _group_lines(_text_lines(small))
    if not groups:
        return None
    # The MRZ is the lowest qualifying group on the page.
    chosen = max(groups, key=lambda group: group[-1][1])
    x0 = min(x for x, _, _, _ in chosen)
    y0 = min(y for _, y, _, _ in chosen)
    x1 = max(x + w for x, _, w, _ in chosen)
    y1 = max(y + h for _, y, _, h in chosen)
    # Pad: the closing trims the ends of the lines.
    pad = 4
    x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
    x1, y1 = min(WORK_WIDTH, x1 + pad), min(small.shape[0], y1 + pad)
    return Band(
        round(x0 / scale),
        round(y0 / scale),
        round((x1 - x0) / scale),
        round((y1 - y0) / scale),
    )


Rect = tuple[int, int, int, int]


def _text_lines(small: GrayImage) -> list[Rect]:
    """Find wide, flat runs of dark characters; return (x, y, w, h) sorted by y."""
    blurred = cv2.GaussianBlur(small, (3, 3), 0)
    blackhat = cv2.morphologyEx(
        blurred, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (15, 7))
    )
    gradient = np.absolute(cv2.Sobel(blackhat, cv2.CV_32F, 1, 0, ksize=-1))
    low, high = float(gradient.min()), float(gradient.max())
    if high - low < 1e-3:
        return []
    gradient8 = ((gradient - low) / (high - low) * 255).astype(np.uint8)
    closed = cv2.morphologyEx(
        gradient8, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (21, 3))
    )
    _, mask = cv2.threshold(closed, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found: list[Rect] = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w >= MIN_WIDTH_FRACTION * WORK_WIDTH and h >= 3 and w / h >= MIN_ASPECT:
            found.append((x, y, w, h))
    return sorted(found, key=lambda rect: rect[1])


def _group_lines(lines: list[Rect]) -> list[list[Rect]]:
    """Group lines stacked like an MRZ: 2 or 3 similar lines at a close pitch."""
    groups: list[list[Rect]] = []
    current: list[Rect] = []
    for line in lines:
        if current and _continues(current[-1], line):
            current.append(line)
            continue
        if current:
            groups.append(current)
        current = [line]
    if current:
        groups.append(current)
    result = []
    for group in groups:
        if len(group) < 2:
            continue
        # A longer stack is printed text above the MRZ: keep its last lines.
        bottom = group[-3:]
        if len(bottom) == 3 and not _similar_width(bottom[0], bottom[-1]):
            bottom = bottom[-2:]
        result.append(bottom)
    return result


def _continues(upper: Rect, lower: Rect) -> bool:
    ux, uy, uw, uh = upper
    lx, ly, lw, lh = lower
    pitch = ly - uy
    line_height = max(uh, lh)
    overlap = min(ux + uw, lx + lw) - max(ux, lx)
    return (
        line_height <= pitch <= 4 * line_height
        and overlap >= 0.6 * min(uw, lw)
        and _similar_width(upper, lower)
    )


def _similar_width(first: Rect, second: Rect) -> bool:
    return min(first[2], second[2]) >= 0.6 * max(first[2], second[2])


def sharpness(gray: GrayImage, band: Band) -> float:
    """Variance of the Laplacian over the band scaled to 640 pixels wide.

    Scaling makes the value independent of camera resolution and distance.
    On 18 specimen document images the sharp originals gave 605 to 7220; the
    same images blurred with a Gaussian of sigma 0.04 band heights gave 5 to
    200, so the default threshold is 300."""
    region = band.crop(gray)
    if region.size == 0:
        return 0.0
    factor = WORK_WIDTH / region.shape[1]
    height = max(1, round(region.shape[0] * factor))
    scaled = cv2.resize(region, (WORK_WIDTH, height), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(scaled, cv2.CV_64F).var())


def glare_extent(gray: GrayImage, band: Band) -> float:
    """Widest stretch washed out by glare along the band, as a fraction of its width.

    Glare that wipes out the end or the middle of a line also cuts the band
    short there, so the band's rows are searched a quarter of its width
    beyond each end. A column counts as washed out when nine tenths of its
    pixels are saturated. Gaps between printed characters are narrower than
    one character (under 1/30 of the band), so they do not count as glare."""
    margin = band.width // 4
    x0 = max(0, band.x - margin)
    x1 = min(gray.shape[1], band.x + band.width + margin)
    region = gray[band.y : band.y + band.height, x0:x1]
    if region.size == 0:
        return 0.0
    washed = (region >= GLARE_LEVEL).mean(axis=0) >= 0.9
    longest = run = 0
    for column in washed:
        run = run + 1 if column else 0
        longest = max(longest, run)
    return longest / band.width
