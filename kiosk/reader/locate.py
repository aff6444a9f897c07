"""Find MRZ-like text bands in a grey frame at any rotation.

Works on a copy scaled to `WORK_SIZE` pixels on the long side. Dark thin
print is isolated with a black-hat filter, characters are joined along the
line with horizontal closings, and long thin blobs become candidate text
lines. The search runs on the frame as given and turned by 90 degrees, so
sideways documents are found too. The reader settles upside-down bands by
reading them both ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

WORK_SIZE = 960
# A line of 30 to 44 characters is about 25 to 50 cap heights long; blur and
# skew fatten the blob, so accept from 9.
MIN_LINE_ASPECT = 9.0
MIN_LINE_FRACTION = 0.12

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class TextLine:
    """A long thin blob in work coordinates: centre, length, thickness, angle."""

    cx: float
    cy: float
    length: float
    thickness: float
    angle: float  # degrees, the direction of the line, in (-90, 90]

    def direction(self) -> tuple[float, float]:
        a = math.radians(self.angle)
        return math.cos(a), math.sin(a)


@dataclass(frozen=True)
class Band:
    """A rotated rectangle around one or more parallel text lines (frame pixels).

    Turning the frame by `angle` makes the lines run left to right, possibly
    upside down. `cap` is an estimate of the capital height.
    """

    cx: float
    cy: float
    width: float
    height: float
    angle: float
    cap: float
    lines: int
    score: float


def _work_image(gray: U8) -> tuple[U8, float]:
    h, w = gray.shape
    scale = WORK_SIZE / max(h, w)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    work = np.asarray(cv2.resize(gray, size, interpolation=interpolation), np.uint8)
    return work, scale


def _ink_masks(work: U8) -> list[U8]:
    blackhat = cv2.morphologyEx(
        work, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (21, 21))
    )
    otsu, _ = cv2.threshold(blackhat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    # A dark photo on the page drags Otsu's level far above the contrast of
    # thin print, so half of it is tried too. A busy security background needs
    # a level above most of the page instead. Both demand some real contrast.
    low = max(0.5 * otsu, 18.0)
    high = max(float(otsu), float(np.percentile(blackhat[::4, ::4], 90)), 18.0)
    return [(blackhat > level).astype(np.uint8) * 255 for level in (low, high)]


def _line_blobs(binary: U8, gap: int) -> list[TextLine]:
    joined = cv2.morphologyEx(
        binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (gap, 1))
    )
    # Drop rules and hairlines that are thinner than any readable glyph.
    joined = cv2.morphologyEx(
        joined, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3))
    )
    contours, _ = cv2.findContours(joined, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    min_length = MIN_LINE_FRACTION * max(binary.shape)
    lines = []
    for contour in contours:
        if len(contour) < 5:
            continue
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        if w < h:
            w, h = h, w
            angle += 90.0
        if angle > 90.0:
            angle -= 180.0
        if w < min_length or h < 3 or w / h < MIN_LINE_ASPECT:
            continue
        # A text line covers much of its rectangle; a diagonal stroke or a
        # curve does not.
        if cv2.contourArea(contour) < 0.45 * w * h:
            continue
        lines.append(TextLine(cx, cy, w, h, angle))
    return lines


def _angle_diff(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def _merge_collinear(lines: list[TextLine]) -> list[TextLine]:
    """Join pieces of one line split by glare or a gap in the print."""
    merged = True
    lines = sorted(lines, key=lambda t: -t.length)
    while merged:
        merged = False
        for i in range(len(lines)):
            for j in range(i + 1, len(lines)):
                a, b = lines[i], lines[j]
                if _angle_diff(a.angle, b.angle) > 4:
                    continue
                dx, dy = a.direction()
                rel = (b.cx - a.cx, b.cy - a.cy)
                along = rel[0] * dx + rel[1] * dy
                across = -rel[0] * dy + rel[1] * dx
                thick = max(a.thickness, b.thickness)
                gap = abs(along) - (a.length + b.length) / 2
                if abs(across) > 0.6 * thick or gap > 4 * thick:
                    continue
                lo = min(-a.length / 2, along - b.length / 2)
                hi = max(a.length / 2, along + b.length / 2)
                mid = (lo + hi) / 2
                lines[i] = TextLine(
                    a.cx + mid * dx,
                    a.cy + mid * dy,
                    hi - lo,
                    thick,
                    a.angle,
                )
                del lines[j]
                merged = True
                break
            if merged:
                break
    return lines


def _band_around(seed: TextLine, lines: list[TextLine]) -> tuple[Band, set[int]]:
    """Gather the lines parallel to `seed` next to it into one band; return
    it with the indices in `lines` of its members."""
    dx, dy = seed.direction()
    members = [(0.0, seed)]
    indices = {i for i, line in enumerate(lines) if line is seed}
    for i, other in enumerate(lines):
        if other is seed or _angle_diff(other.angle, seed.angle) > 5:
            continue
        rel = (other.cx - seed.cx, other.cy - seed.cy)
        along = rel[0] * dx + rel[1] * dy
        across = -rel[0] * dy + rel[1] * dx
        if abs(along) > seed.length / 2 or abs(across) > 4.5 * seed.thickness:
            continue
        if not 0.6 < other.length / seed.length < 1.6:
            continue
        if not 0.6 < other.thickness / seed.thickness < 1.7:
            continue
        members.append((across, other))
        indices.add(i)
    offsets = [m[0] for m in members]
    # Room for a line the blob search missed on either side.
    lo = min(offsets) - 2.5 * seed.thickness
    hi = max(offsets) + 2.5 * seed.thickness
    mid = (lo + hi) / 2
    length = max(m[1].length for m in members)
    band = Band(
        cx=seed.cx - mid * dy,
        cy=seed.cy + mid * dx,
        # Generous: the blob may miss faint fillers at either end of the line.
        width=length * 1.3 + 4 * seed.thickness,
        height=hi - lo,
        angle=seed.angle,
        cap=float(np.median([m[1].thickness for m in members])) * 0.8,
        lines=len(members),
        score=sum(m[1].length for m in members),
    )
    return band, indices


def _turn_back(line: TextLine, height: int) -> TextLine:
    # Undo cv2.ROTATE_90_CLOCKWISE: a point (x, y) there came from
    # (y, height - 1 - x) in the original image.
    angle = line.angle - 90.0
    if angle <= -90.0:
        angle += 180.0
    return TextLine(line.cy, height - 1 - line.cx, line.length, line.thickness, angle)


def find_bands(gray: U8, limit: int = 4, sideways: bool = False) -> list[Band]:
    """Return up to `limit` candidate MRZ bands, the most promising first.

    `sideways` searches for lines running roughly top to bottom instead of
    left to right.
    """
    work, scale = _work_image(gray)
    lines: list[TextLine] = []
    for mask in _ink_masks(work):
        if sideways:
            mask = np.asarray(cv2.rotate(mask, cv2.ROTATE_90_CLOCKWISE), np.uint8)
        # Several closing widths. The narrow one keeps small print apart from
        # its neighbours. The wide ones bridge the gaps between large glyphs,
        # and between the tips of a run of `<` fillers, which are up to a whole
        # pitch apart on the middle rows.
        for gap in (9, 17, 29):
            found = _line_blobs(mask, gap)
            if sideways:
                found = [_turn_back(t, work.shape[0]) for t in found]
            lines += found
    lines = _merge_collinear(lines)
    seeds = sorted(lines, key=lambda t: -t.length)
    bands: list[Band] = []
    gathered: list[set[int]] = []
    for seed in seeds:
        band, members = _band_around(seed, lines)
        # A band around the same lines as an earlier one adds nothing, but
        # one with a line the other left out does. A long dark edge below a
        # document can seed a band that contains the bottom MRZ line and
        # leaves out the top one.
        duplicate = any(
            _angle_diff(b.angle, band.angle) < 5
            and math.hypot(b.cx - band.cx, b.cy - band.cy) < b.height / 2
            and members <= earlier
            for b, earlier in zip(bands, gathered, strict=True)
        )
        if not duplicate:
            bands.append(band)
            gathered.append(members)
    bands.sort(key=lambda b: -b.score)
    return [
        Band(
            cx=b.cx / scale,
            cy=b.cy / scale,
            width=b.width / scale,
            height=b.height / scale,
            angle=b.angle,
            cap=b.cap / scale,
            lines=b.lines,
            score=b.score / scale,
        )
        for b in bands[:limit]
    ]
