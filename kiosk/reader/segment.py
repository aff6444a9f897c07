"""Cut a located band into MRZ lines and fixed-pitch character cells.

The band is resampled upright so that capitals are about `TARGET_CAP` pixels
high, and its skew is refined on the ink's row profile. Lines are taken from
that profile. Each line's glyph grid (first centre, pitch, slope) is fitted
to the centres of its connected components. An MRZ line has no gaps wider than a
character, because empty positions are printed as `<`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from kiosk.reader.glyphs import FloatArray, LineGeometry, ink_map
from kiosk.reader.locate import Band

log = logging.getLogger(__name__)

TARGET_CAP = 22.0
MAX_UPSCALE = 5.0
# OCR-B advance width over capital height, measured on OCRB.otf.
PITCH_PER_CAP = 1.02
# The part of a pitch covered by a glyph's ink: the line's ink runs from the
# first glyph's left edge to the last one's right edge.
INK_PER_PITCH = 0.7
LINE_LENGTHS = (30, 36, 44)

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class BandImage:
    """An upright resampled band: grey pixels, ink map and the frame mapping."""

    gray: U8
    ink: FloatArray
    # 3x3 homography from band pixels to frame pixels.
    to_frame: npt.NDArray[np.float64]
    # 255 where the band pixel comes from inside the frame, 0 outside.
    inside: U8


@dataclass(frozen=True)
class LineSpan:
    """One text line found in a band: rows, centre line and ink extent."""

    top: int
    bottom: int
    cy: float
    slope: float
    cap: float
    left: float
    right: float
    # Connected ink components in the line's strip: (x centre, width, height).
    components: npt.NDArray[np.float64]


def _warp_affine(
    image: U8,
    matrix: npt.NDArray[np.float64],
    size: tuple[int, int],
    flags: int = cv2.INTER_LINEAR,
    border: int = cv2.BORDER_CONSTANT,
) -> U8:
    return np.asarray(
        cv2.warpAffine(image, matrix, size, flags=flags, borderMode=border), np.uint8
    )


def extract_band(gray: U8, band: Band, turn: float) -> BandImage:
    """Resample `band` upright, turned by `turn` extra degrees (0 or 180)."""
    scale = min(max(TARGET_CAP / max(band.cap, 1.0), 0.2), MAX_UPSCALE)
    width = round(band.width * scale)
    height = round(max(band.height, band.cap * 3) * scale)
    angle = math.radians(band.angle + turn)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    # Band pixel (u, v) -> frame point centre + R(angle) (u - w/2, v - h/2) / scale.
    to_frame = np.array(
        [
            [cos, -sin, band.cx - cos * width / 2 + sin * height / 2],
            [sin, cos, band.cy - sin * width / 2 - cos * height / 2],
        ]
    )

    upright = _warp_affine(
        gray,
        to_frame,
        (max(width, 1), max(height, 1)),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        border=cv2.BORDER_REPLICATE,
    )
    inside = _warp_affine(
        np.full(gray.shape, 255, np.uint8),
        to_frame,
        (max(width, 1), max(height, 1)),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    )

    ink = ink_map(upright, TARGET_CAP)
    # Replicated border pixels form streaks that would read as ink.
    ink[cv2.erode(inside, np.ones((5, 5), np.uint8)) == 0] = 0.0
    return BandImage(upright, ink, np.vstack([to_frame, [0.0, 0.0, 1.0]]), inside)


def refine_skew(band: BandImage) -> BandImage:
    """Straighten the band by the angle that makes its row profile sharpest."""
    ink = band.ink
    h, w = ink.shape
    small = cv2.resize(
        ink, (max(w // 2, 1), max(h // 2, 1)), interpolation=cv2.INTER_AREA
    )

    best, best_angle = -1.0, 0.0
    centre = (small.shape[1] / 2, small.shape[0] / 2)
    for angle in np.arange(-2.0, 2.01, 0.25):
        rot = cv2.getRotationMatrix2D(centre, float(angle), 1.0)
        turned = np.asarray(
            cv2.warpAffine(small, rot, (small.shape[1], small.shape[0])), np.float32
        )
        profile = _row_activity(turned)
        sharpness = float((np.diff(profile) ** 2).sum())
        if sharpness > best:
            best, best_angle = sharpness, float(angle)
    if best_angle == 0.0:
        return band

    straighten = np.asarray(
        cv2.getRotationMatrix2D((w / 2, h / 2), best_angle, 1.0), np.float64
    )
    gray = _warp_affine(band.gray, straighten, (w, h), border=cv2.BORDER_REPLICATE)
    inside = _warp_affine(band.inside, straighten, (w, h), flags=cv2.INTER_NEAREST)
    # Compose: new band pixel -> old band pixel -> frame.
    inverse = cv2.invertAffineTransform(straighten)
    to_frame = band.to_frame @ np.vstack([inverse, [0, 0, 1]])
    ink = ink_map(gray, TARGET_CAP)
    ink[cv2.erode(inside, np.ones((5, 5), np.uint8)) == 0] = 0.0
    return BandImage(gray, ink, to_frame, inside)


def rectify(band: BandImage, geometries: list[LineGeometry]) -> BandImage:
    """Undo perspective: map the outer glyph centres of the first and last
    line onto an upright grid with the target pitch and cap height."""
    first, last = geometries[0], geometries[-1]
    count = first.count
    pitch = TARGET_CAP * PITCH_PER_CAP
    spacing_caps = (last.centre(0)[1] - first.centre(0)[1]) / max(first.cap, 1.0)
    spacing = spacing_caps / max(len(geometries) - 1, 1) * TARGET_CAP
    margin = 2.0 * pitch
    src = np.array(
        [
            first.centre(0),
            first.centre(count - 1),
            last.centre(0),
            last.centre(count - 1),
        ],
        np.float32,
    )

    bottom = margin + spacing * (len(geometries) - 1)
    right = margin + pitch * (count - 1)
    dst = np.array(
        [[margin, margin], [right, margin], [margin, bottom], [right, bottom]],
        np.float32,
    )
    to_band = cv2.getPerspectiveTransform(dst, src)

    size = (int(right + margin), int(bottom + margin))
    gray = np.asarray(
        cv2.warpPerspective(
            band.gray,
            to_band,
            size,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        ),
        np.uint8,
    )
    inside = np.asarray(
        cv2.warpPerspective(
            band.inside, to_band, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        ),
        np.uint8,
    )

    ink = ink_map(gray, TARGET_CAP)
    ink[cv2.erode(inside, np.ones((5, 5), np.uint8)) == 0] = 0.0
    return BandImage(gray, ink, band.to_frame @ to_band, inside)


def _row_activity(ink: FloatArray) -> FloatArray:
    """Sum of horizontal ink changes per row: high across text, low along a
    dark edge or stripe that would dominate a plain ink sum."""
    out: FloatArray = np.abs(np.diff(ink, axis=1)).sum(axis=1, dtype=np.float32)
    return out


def find_lines(ink: FloatArray) -> list[LineSpan]:
    """Find text lines from the row profile of the ink, top to bottom."""
    h = ink.shape[0]
    profile = cv2.blur(_row_activity(ink)[:, None], (1, 3)).ravel()
    if profile.max() <= 0:
        return []
    # Security print behind the MRZ raises the floor of the profile.
    floor = float(np.percentile(profile, 20))
    rows = profile > floor + 0.35 * (float(profile.max()) - floor)
    spans: list[LineSpan] = []
    y = 0
    while y < h:
        if not rows[y]:
            y += 1
            continue
        start = y
        while y < h and rows[y]:
            y += 1
        height = y - start
        if height < TARGET_CAP * 0.4:
            continue
        span = _measure_line(ink, start, y)
        if span is not None:
            spans.append(span)
    return spans


def _measure_line(ink: FloatArray, top: int, bottom: int) -> LineSpan | None:
    h = ink.shape[0]
    cap = float(bottom - top)
    lo = max(int(top - 0.3 * cap), 0)
    hi = min(int(bottom + 0.3 * cap), h)
    strip = ink[lo:hi]
    # Extents from glyph-sized components: every MRZ glyph, the filler too,
    # is at least 0.85 cap heights tall, while background print breaks up
    # into smaller pieces.
    binary = (strip > 0.45).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    lefts = stats[1:, cv2.CC_STAT_LEFT].astype(np.float64)
    widths = stats[1:, cv2.CC_STAT_WIDTH].astype(np.float64)
    heights = stats[1:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    components = np.stack([lefts + widths / 2, widths, heights], axis=1)
    tall = (heights >= 0.6 * cap) & (heights <= 1.8 * cap)
    # Glare can wash glyphs out into pieces shorter than a glyph. Pieces
    # bridge the gaps between tall glyphs but never set the line's ends.
    piece = ~tall & (heights >= 0.25 * cap) & (widths <= 1.5 * cap)
    boxes = sorted(
        zip(
            lefts[tall | piece].tolist(),
            (lefts + widths)[tall | piece].tolist(),
            tall[tall | piece].tolist(),
            strict=True,
        )
    )

    # The widest run of glyphs with no gap wider than one cap height,
    # measured between its outermost tall glyphs.
    best = (0.0, 0.0)
    start: float | None = None
    end = 0.0
    last = -1.0
    for x_lo, x_hi, is_tall in boxes:
        if x_lo - last > cap:
            start = None
        last = max(last, x_hi)
        if not is_tall:
            continue
        if start is None:
            start = x_lo
            end = x_hi
        end = max(end, x_hi)
        if end - start > best[1] - best[0]:
            best = (start, end)

    left, right = int(best[0]), int(best[1])
    if right - left < 10 * cap:
        return None

    # Vertical ink centre of the left and right quarters gives the slope.
    ys = np.arange(lo, hi, dtype=np.float32)[:, None]
    quarter = (right - left) // 4
    centres = []
    for a, b in ((left, left + quarter), (right - quarter, right)):
        part = strip[:, a:b]
        mass = float(part.sum())
        if mass <= 0:
            return None
        centres.append(((a + b) / 2, float((part * ys).sum()) / mass))
    (x1, y1), (x2, y2) = centres
    slope = (y2 - y1) / max(x2 - x1, 1.0)
    cy = y1 + slope * (((left + right) / 2) - x1)
    return LineSpan(top, bottom, cy, slope, cap, float(left), float(right), components)


def plausible_counts(span: LineSpan, counts: tuple[int, ...]) -> list[int]:
    """Return the characters-per-line counts whose pitch fits the line's cap
    height; blur inflates the measured height, so the window is wide."""
    fitting = []
    for count in counts:
        pitch = (span.right - span.left) / (count - 1 + INK_PER_PITCH)
        if 0.75 < pitch / (span.cap * PITCH_PER_CAP) < 1.4:
            fitting.append(count)
    return fitting


def grid_for(span: LineSpan, count: int) -> LineGeometry:
    """Fit the glyph grid of a line with `count` characters."""
    pitch = (span.right - span.left) / (count - 1 + INK_PER_PITCH)
    x0 = span.left + pitch * INK_PER_PITCH / 2
    y_at_left = span.cy + span.slope * (x0 - (span.left + span.right) / 2)
    # The row profile overstates the cap height of a blurred or skewed line,
    # while the pitch is fixed by the font, so keep the two consistent.
    from_pitch = pitch / PITCH_PER_CAP
    cap = min(max(span.cap, 0.8 * from_pitch), 1.15 * from_pitch)
    geometry = LineGeometry(x0, pitch, y_at_left, span.slope, cap, count)
    return _refine_with_components(span, geometry)


def _refine_with_components(span: LineSpan, geometry: LineGeometry) -> LineGeometry:
    """Least-squares fit of glyph centres to single-glyph components."""
    cx, cw, ch = span.components.T
    # Box centres, not centroids: a glyph's ink mass is not centred (7, F).
    single = (cw > 0.3 * geometry.pitch) & (cw < 0.95 * geometry.pitch)
    # Print or a document edge beyond the line's run of glyphs is not one of
    # its glyphs. Left in, it made the walk below index the whole line from
    # the wrong place, a pitch or more off.
    margin = 0.5 * geometry.pitch
    within = (cx > span.left - margin) & (cx < span.right + margin)
    centres = cx[single & within & (ch > 0.3 * geometry.cap)]
    if len(centres) < max(8, geometry.count // 4):
        return geometry

    xs_all = np.sort(centres)
    pitch = geometry.pitch
    # Perspective makes the pitch drift along the line, so a straight grid
    # from the line's ends can be half a pitch off in the middle. Walking
    # from glyph to glyph with the local pitch keeps the count right, and a
    # quadratic through the walk is the first guess.
    coeffs = _walk_grid(xs_all, geometry)
    for tolerance in (0.35, 0.3, 0.25):
        grid = np.polyval(coeffs, np.arange(geometry.count))
        nearest = np.abs(xs_all[:, None] - grid[None, :]).argmin(axis=1)
        error = np.abs(xs_all - grid[nearest])
        keep = error < tolerance * pitch
        if keep.sum() < max(8, geometry.count // 4):
            return geometry
        ii = nearest[keep].astype(np.float64)
        degree = 2 if len(np.unique(ii)) >= geometry.count // 2 else 1
        coeffs = np.polyfit(ii, xs_all[keep], degree)

    if len(coeffs) == 3:
        curve, new_pitch, x0 = (float(c) for c in coeffs)
    else:
        curve = 0.0
        new_pitch, x0 = (float(c) for c in coeffs)
    if not 0.85 * pitch < new_pitch < 1.15 * pitch:
        return geometry
    y0 = geometry.y0 + geometry.slope * (x0 - geometry.x0)
    return LineGeometry(
        x0, new_pitch, y0, geometry.slope, geometry.cap, geometry.count, curve
    )


def _walk_grid(
    centres: npt.NDArray[np.float64], geometry: LineGeometry
) -> npt.NDArray[np.float64]:
    """Index sorted glyph centres by stepping from neighbour to neighbour and
    return polynomial coefficients of x over glyph index (highest first)."""
    straight = np.array([geometry.pitch, geometry.x0])
    local = geometry.pitch
    index = [round((centres[0] - geometry.x0) / local)]
    for k in range(1, len(centres)):
        gap = centres[k] - centres[k - 1]
        # Two pieces of one glyph broken by glare sit less than half a
        # pitch apart and share its index.
        steps = round(gap / local)
        index.append(index[-1] + steps)
        if steps == 1 and 0.7 * local < gap < 1.3 * local:
            local = 0.7 * local + 0.3 * gap
    ii = np.array(index, np.float64)
    if ii.min() < -1 or ii.max() > geometry.count:
        return straight
    degree = 2 if len(centres) >= geometry.count // 2 else 1
    coeffs: npt.NDArray[np.float64] = np.polyfit(ii, centres, degree)
    return coeffs
