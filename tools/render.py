"""Render specimen-like travel documents with a known MRZ, then photograph them badly.

The document is drawn flat at `BASE_PX_PER_MM`, with the MRZ in OCR-B at the
fixed character pitch of its format. One homography then places it in a larger
camera frame (scale, rotation, skew, perspective), and photometric damage
follows in camera order: lighting and glare, optical blur, sensor noise, JPEG.

Everything random comes from the `random.Random` passed in, so the same seed
gives the same pixels with the same library versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

Image8 = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]

OCRB_FONT_PATH: Final = Path("/usr/share/fonts/opentype/ocr-b/OCRB.otf")
OCRB_PACKAGE: Final = "fonts-ocr-b"

# Drawing resolution of the flat document, about 305 dpi: OCR-B glyphs are
# about 29 px high here, above anything the camera step produces.
BASE_PX_PER_MM: Final = 12.0

FORMATS: Final = ("TD1", "TD2", "TD3", "MRVA", "MRVB", "FRA_ID")
DamageLevel = Literal["none", "light", "moderate", "heavy"]


class RenderError(Exception):
    """The renderer cannot run (font missing) or got input it cannot draw."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Physical size of a document and the geometry of its MRZ, in millimetres.

    Sizes and the 2.54 mm pitch (10 characters per inch) follow ICAO 9303.
    The 4.23 mm line pitch (6 lines per inch) and the 2.4 mm cap height are
    approximations of printed documents, not values read from the standard.
    """

    width_mm: float
    height_mm: float
    lines: int
    chars: int
    pitch_mm: float = 2.54
    cap_mm: float = 2.4
    line_pitch_mm: float = 4.23
    # Distance from the bottom edge to the baseline of the last MRZ line.
    bottom_mm: float = 4.2
    title: str = "PASSPORT"
    side: str = "front"

    @property
    def mrz_width_mm(self) -> float:
        return self.chars * self.pitch_mm

    @property
    def mrz_left_mm(self) -> float:
        return (self.width_mm - self.mrz_width_mm) / 2.0


LAYOUTS: Final[dict[str, Layout]] = {
    "TD3": Layout(125.0, 88.0, 2, 44, title="PASSPORT"),
    "MRVA": Layout(120.0, 80.0, 2, 44, title="VISA"),
    "MRVB": Layout(105.0, 74.0, 2, 36, title="VISA"),
    "TD2": Layout(105.0, 74.0, 2, 36, title="IDENTITY CARD"),
    # NOTE: a TD1 card is drawn as its MRZ side only, with a small portrait;
    # its other side is never rendered.
    "TD1": Layout(
        85.6, 53.98, 3, 30, bottom_mm=3.4, title="IDENTITY CARD", side="back"
    ),
    # The French card squeezes 36 characters onto an ID-1 card, so its pitch
    # and glyphs are smaller than ICAO size. NOTE: 2.2 mm pitch and 2.15 mm
    # glyph height are estimates, not values from the French specification.
    "FRA_ID": Layout(
        85.6, 53.98, 2, 36, pitch_mm=2.2, cap_mm=2.15, line_pitch_mm=4.0,
        bottom_mm=3.6, title="CARTE NATIONALE D'IDENTITE",
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Damage:
    """Concrete camera damage for one image; `Damage.sample` draws one at random.

    Lengths are in pixels of the output image. `glyph_px` is the cap height of
    the MRZ glyphs before perspective. `quarter_turns` turns the document
    clockwise in the frame by that many right angles (2 = upside down), and
    `skew_deg` adds a small clockwise turn on top.
    """

    glyph_px: float = 30.0
    fill: float = 0.85
    quarter_turns: int = 0
    skew_deg: float = 0.0
    perspective: float = 0.0
    defocus_px: float = 0.0
    motion_px: float = 0.0
    motion_angle_deg: float = 0.0
    lighting: float = 0.0
    glare: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None
    clutter: bool = True
    max_frame_px: int = 1600

    @classmethod
    def sample(
        cls,
        rng: random.Random,
        level: DamageLevel = "moderate",
        quarter_turns: int = 0,
    ) -> Damage:
        """Draw damage of one severity level; `quarter_turns` is passed through."""
        if level == "none":
            return cls(quarter_turns=quarter_turns, clutter=False)
        ranges = _DAMAGE_RANGES[level]

        def pick(name: str) -> float:
            low, high = ranges[name]
            return rng.uniform(low, high)

        quality_low, quality_high = ranges["jpeg_quality"]
        return cls(
            glyph_px=pick("glyph_px"),
            fill=pick("fill"),
            quarter_turns=quarter_turns % 4,
            skew_deg=pick("skew_deg") * rng.choice((-1.0, 1.0)),
            perspective=pick("perspective"),
            defocus_px=pick("defocus_px"),
            motion_px=pick("motion_px"),
            motion_angle_deg=rng.uniform(0.0, 180.0),
            lighting=pick("lighting"),
            glare=pick("glare"),
            noise_sigma=pick("noise_sigma"),
            jpeg_quality=rng.randint(int(quality_low), int(quality_high)),
        )


# Per level, the uniform range of each damage parameter. The worst corner of
# "heavy" is meant to stay legible to a person at 100 % zoom, which was
# checked by eye on a few rendered samples only.
_DAMAGE_RANGES: Final[dict[str, dict[str, tuple[float, float]]]] = {
    "light": {
        "glyph_px": (22.0, 34.0),
        "fill": (0.6, 0.9),
        "skew_deg": (0.0, 3.0),
        "perspective": (0.0, 0.02),
        "defocus_px": (0.0, 0.6),
        "motion_px": (0.0, 1.0),
        "lighting": (0.0, 0.25),
        "glare": (0.0, 0.3),
        "noise_sigma": (0.0, 3.0),
        "jpeg_quality": (80, 95),
    },
    "moderate": {
        "glyph_px": (17.0, 30.0),
        "fill": (0.5, 0.85),
        "skew_deg": (0.0, 8.0),
        "perspective": (0.01, 0.05),
        "defocus_px": (0.3, 1.2),
        "motion_px": (0.0, 2.5),
        "lighting": (0.15, 0.45),
        "glare": (0.2, 0.55),
        "noise_sigma": (2.0, 7.0),
        "jpeg_quality": (60, 85),
    },
    "heavy": {
        "glyph_px": (15.0, 22.0),
        "fill": (0.45, 0.8),
        "skew_deg": (3.0, 15.0),
        "perspective": (0.03, 0.08),
        "defocus_px": (0.8, 1.6),
        "motion_px": (1.5, 3.5),
        "lighting": (0.35, 0.6),
        "glare": (0.45, 0.7),
        "noise_sigma": (5.0, 10.0),
        "jpeg_quality": (45, 65),
    },
}


@dataclass(frozen=True, slots=True)
class Case:
    """One rendered image of a set, with its ground truth."""

    name: str
    image: Image8
    truth: dict[str, Any] = field(repr=False)


# --------------------------------------------------------------------------
# Fonts


_font_cache: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def ocrb_font(size_px: int) -> ImageFont.FreeTypeFont:
    """Load OCR-B at `size_px`; raise RenderError naming the package if absent."""
    key = ("ocrb", size_px)
    cached = _font_cache.get(key)
    if cached is not None:
        return cached
    if not OCRB_FONT_PATH.is_file():
        raise RenderError(
            f"OCR-B font not found at {OCRB_FONT_PATH}: install the Debian "
            f"package {OCRB_PACKAGE} (apt-get install {OCRB_PACKAGE}, or run "
            "`make system-deps`)"
        )
    font = ImageFont.truetype(str(OCRB_FONT_PATH), size_px)
    _font_cache[key] = font
    return font


def _label_font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font needs no system package; the visual zone only has
    # to look like print, so its exact face does not matter.
    key = ("label", size_px)
    cached = _font_cache.get(key)
    if cached is not None:
        return cached
    font = ImageFont.load_default(size_px)
    if isinstance(font, ImageFont.FreeTypeFont):
        _font_cache[key] = font
    return font


# --------------------------------------------------------------------------
# Input: fields or lines


def format_of_lines(lines: Sequence[str]) -> str:
    """Name the MRZ format of `lines` from their shape and first characters."""
    shape = (len(lines), len(lines[0]) if lines else 0)
    if any(len(line) != shape[1] for line in lines):
        raise RenderError(
            f"MRZ lines have different lengths {[len(line) for line in lines]}: "
            "pass complete lines of one format"
        )
    if shape == (3, 30):
        return "TD1"
    if shape == (2, 44):
        return "MRVA" if lines[0].startswith("V") else "TD3"
    if shape == (2, 36):
        if lines[0].startswith("IDFRA"):
            return "FRA_ID"
        return "MRVB" if lines[0].startswith("V") else "TD2"
    raise RenderError(
        f"no MRZ format has {shape[0]} lines of {shape[1]} characters: "
        "expected 3x30, 2x36 or 2x44"
    )


def _compose(fields: Any) -> list[str]:
    from kiosk import mrz

    return list(mrz.compose(fields))


def _field_dict(fields: Any) -> dict[str, Any]:
    values = dataclasses.asdict(fields)
    return {key: _jsonable(value) for key, value in values.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, str):
        # Plain str, so enum members such as MrzFormat serialise as their value.
        return str(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _visual_values(
    fmt: str, lines: Sequence[str], fields: Any
) -> list[tuple[str, str]]:
    """Label and value pairs for the visual zone.

    With fields, the values are printed from them. With bare lines, names and
    numbers are sliced from the fixed MRZ positions of the format, which is
    enough for decoration.
    """
    if fields is not None:
        return [
            ("Surname", str(fields.surname)),
            ("Given names", str(fields.given_names)),
            ("Nationality", str(fields.nationality).replace("<", "")),
            ("Date of birth", _display_date(fields.birth_date)),
            # "<" in the MRZ means unspecified, printed as a dash.
            ("Sex", str(fields.sex).replace("<", "-")),
            ("Date of expiry", _display_date(fields.expiry_date)),
            ("Document no.", str(fields.document_number).replace("<", "")),
            ("Authority", str(fields.issuing_state).replace("<", "")),
        ]
    if fmt == "TD1":
        names, number = lines[2], lines[0][5:14]
    elif fmt == "FRA_ID":
        names, number = lines[0][5:30] + "<<" + lines[1][13:27], lines[1][0:12]
    else:
        names, number = lines[0][5:], lines[1][0:9]
    surname, _, given = names.partition("<<")
    return [
        ("Surname", surname.replace("<", " ").strip()),
        ("Given names", given.replace("<", " ").strip()),
        ("Document no.", number.replace("<", "")),
    ]


def _display_date(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return str(value.strftime("%d %b %Y")).upper()
    text = str(value)
    if len(text) == 6 and text.isdigit():
        return f"{text[4:6]}.{text[2:4]}.{text[0:2]}"
    return text


# --------------------------------------------------------------------------
# The flat document


def _mm(value: float) -> int:
    return round(value * BASE_PX_PER_MM)


def _background(rng: random.Random, width: int, height: int) -> FloatImage:
    """Pale security-print background: colour blotches and guilloche waves."""
    hue = rng.uniform(0.0, 180.0)
    base = np.array([[[hue, rng.uniform(25, 60), rng.uniform(225, 245)]]], np.float32)
    hsv = np.broadcast_to(base, (height, width, 3)).copy()
    blotches = np.array(
        [[rng.uniform(-12.0, 12.0) for _ in range(8)] for _ in range(6)], np.float32
    )
    hsv[:, :, 2] += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    hsv = np.clip(hsv, 0, 255).astype(np.uint8)
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

    wave_colour = tuple(int(c * 0.85) for c in image[height // 2, width // 2])
    period = rng.uniform(6.0, 14.0) * BASE_PX_PER_MM
    amplitude = rng.uniform(1.5, 4.0) * BASE_PX_PER_MM
    xs = np.arange(0, width, 4, dtype=np.float32)
    for row in range(-2, height // _mm(2.2) + 3):
        y0 = row * _mm(2.2)
        phase = rng.uniform(0.0, 0.3) + row * 0.35
        ys = y0 + amplitude * np.sin(2 * math.pi * xs / period + phase)
        points = np.stack([xs, ys], axis=1).astype(np.int32)
        cv2.polylines(image, [points], False, wave_colour, 1, cv2.LINE_AA)
    return image.astype(np.float32)


def _draw_face_box(image: Image.Image, box: tuple[int, int, int, int]) -> None:
    """Paste a grey portrait placeholder: a head and shoulders clipped to `box`."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    portrait = Image.new("RGB", (width, height), (178, 178, 178))
    draw = ImageDraw.Draw(portrait)
    cx = width / 2
    head = (cx - width * 0.22, height * 0.16, cx + width * 0.22, height * 0.6)
    draw.ellipse(head, fill=(140, 140, 140))
    shoulders = (width * 0.06, height * 0.66, width * 0.94, height * 1.4)
    draw.ellipse(shoulders, fill=(140, 140, 140))
    draw.rectangle((0, 0, width - 1, height - 1), outline=(120, 120, 120), width=2)
    image.paste(portrait, (left, top))


def draw_document(
    fmt: str,
    lines: Sequence[str],
    rng: random.Random,
    fields: Any = None,
    *,
    with_mrz: bool = True,
) -> tuple[Image8, tuple[float, float, float, float]]:
    """Draw the flat document of format `fmt`; return BGR pixels and the MRZ box.

    The box is (left, top, right, bottom) in document pixels around the MRZ
    glyph cells.
    """
    layout = LAYOUTS[fmt]
    width, height = _mm(layout.width_mm), _mm(layout.height_mm)
    background = _background(rng, width, height)

    mrz_top_mm = (
        layout.height_mm
        - layout.bottom_mm
        - (layout.lines - 1) * layout.line_pitch_mm
        - layout.cap_mm
        - 1.2
    )
    # The MRZ band is printed on a quieter, lighter background.
    band_top = _mm(mrz_top_mm - 1.0)
    background[band_top:, :, :] = background[band_top:, :, :] * 0.35 + 255 * 0.65

    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)[:, :, ::-1])
    draw = ImageDraw.Draw(image)
    ink = (rng.randint(10, 40), rng.randint(10, 40), rng.randint(20, 60))
    label_ink = (rng.randint(60, 110), rng.randint(60, 110), rng.randint(80, 130))

    margin = _mm(4.0)
    title_font = _label_font(_mm(3.2 if layout.width_mm > 100 else 2.6))
    state = fields.issuing_state if fields is not None else lines[0][2:5]
    title = f"{layout.title}   {str(state).replace('<', '')}"
    draw.text((margin, margin), title, font=title_font, fill=label_ink)

    zone_top = margin + _mm(6.0)
    zone_bottom = band_top - _mm(1.5)
    face_height = min(zone_bottom - zone_top, _mm(40.0))
    face_width = round(face_height * 0.78)
    if layout.side == "front":
        face_box = (margin, zone_top, margin + face_width, zone_top + face_height)
        text_left = face_box[2] + _mm(4.0)
    else:
        face_width //= 2
        face_box = (
            width - margin - face_width,
            zone_top,
            width - margin,
            zone_top + face_height // 2,
        )
        text_left = margin
    _draw_face_box(image, face_box)

    label_font = _label_font(_mm(1.7))
    value_font = _label_font(_mm(2.6))
    row_height = _mm(6.4)
    column_width = _mm(34.0)
    if layout.side == "back":
        text_width = face_box[0] - text_left
    else:
        text_width = width - margin - text_left
    columns = max(1, text_width // column_width)
    values = _visual_values(fmt, lines, fields)
    for index, (label, value) in enumerate(values):
        column, row = index % columns, index // columns
        # On a front side the names take the first two full rows.
        if layout.side == "front" and index < 2:
            column, row = 0, index
        elif layout.side == "front":
            column, row = (index - 2) % columns, 2 + (index - 2) // columns
        x = text_left + column * column_width
        y = zone_top + row * row_height
        if y + row_height > zone_bottom:
            break
        draw.text((x, y), label, font=label_font, fill=label_ink)
        draw.text((x, y + _mm(2.0)), value[:24], font=value_font, fill=ink)

    mrz_box = (
        _mm(layout.mrz_left_mm),
        _mm(mrz_top_mm + 1.2),
        _mm(layout.mrz_left_mm + layout.mrz_width_mm),
        _mm(layout.height_mm - layout.bottom_mm + 0.3),
    )
    if with_mrz:
        _draw_mrz(draw, layout, lines, rng)
    pixels = np.asarray(image, dtype=np.uint8)[:, :, ::-1].copy()
    return pixels, mrz_box


def _draw_mrz(
    draw: ImageDraw.ImageDraw,
    layout: Layout,
    lines: Sequence[str],
    rng: random.Random,
) -> None:
    cap_ratio = _ocrb_cap_ratio()
    font = ocrb_font(round(layout.cap_mm * BASE_PX_PER_MM / cap_ratio))
    advance = font.getlength("0")
    pitch = layout.pitch_mm * BASE_PX_PER_MM
    shade = rng.randint(0, 35)
    colour = (shade, shade, shade + rng.randint(0, 15))
    for row, line in enumerate(lines):
        baseline = (
            layout.height_mm
            - layout.bottom_mm
            - (layout.lines - 1 - row) * layout.line_pitch_mm
        ) * BASE_PX_PER_MM
        for column, char in enumerate(line):
            x = (
                layout.mrz_left_mm * BASE_PX_PER_MM
                + column * pitch
                + (pitch - advance) / 2
            )
            draw.text((x, baseline), char, font=font, fill=colour, anchor="ls")


def _ocrb_cap_ratio() -> float:
    font = ocrb_font(100)
    _, top, _, bottom = font.getbbox("H", anchor="ls")
    return float(bottom - top) / 100.0


# --------------------------------------------------------------------------
# The camera


def _random_words(rng: random.Random) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = []
    for _ in range(rng.randint(2, 6)):
        length = rng.randint(2, 8)
        words.append("".join(rng.choice(letters) for _ in range(length)))
    return " ".join(words)


def _clutter(rng: random.Random, width: int, height: int, enabled: bool) -> FloatImage:
    """Desk-like frame background with papers, strokes and stray print."""
    grey = rng.uniform(50, 190)
    tone = np.array([grey + rng.uniform(-30, 30) for _ in range(3)], np.float32)
    frame = np.empty((height, width, 3), np.float32)
    frame[:] = tone
    ramp = np.linspace(-25.0, 25.0, width, dtype=np.float32)[None, :, None]
    frame += ramp * rng.uniform(-1.0, 1.0)
    if not enabled:
        return frame

    canvas = np.clip(frame, 0, 255).astype(np.uint8)
    for _ in range(rng.randint(2, 6)):
        # Papers and folders: mostly pale, desaturated tones.
        grey = rng.randint(90, 245)
        colour = tuple(min(255, max(0, grey + rng.randint(-30, 30))) for _ in range(3))
        centre = (rng.uniform(0, width), rng.uniform(0, height))
        size = (rng.uniform(0.2, 0.7) * width, rng.uniform(0.2, 0.7) * height)
        box = cv2.boxPoints((centre, size, rng.uniform(0, 90))).astype(np.int32)
        cv2.fillConvexPoly(canvas, box, colour, cv2.LINE_AA)

    for _ in range(rng.randint(3, 10)):
        colour = tuple(rng.randint(0, 120) for _ in range(3))
        start = (rng.randint(0, width), rng.randint(0, height))
        end = (rng.randint(0, width), rng.randint(0, height))
        cv2.line(canvas, start, end, colour, rng.randint(1, 4), cv2.LINE_AA)

    pil = Image.fromarray(canvas[:, :, ::-1])
    draw = ImageDraw.Draw(pil)
    font = _label_font(max(10, height // 40))
    for _ in range(rng.randint(2, 6)):
        words = _random_words(rng)
        position = (rng.uniform(0, width * 0.8), rng.uniform(0, height))
        draw.text(position, words, font=font, fill=(30, 30, 30))
    return np.asarray(pil, dtype=np.float32)[:, :, ::-1].copy()


def _placement(
    rng: random.Random, damage: Damage, doc_size: tuple[int, int], scale: float
) -> tuple[npt.NDArray[np.float64], tuple[int, int], float]:
    """Homography from document pixels to frame pixels, the frame size and the
    scale used.

    The scale drops below the requested one when the document would not fit
    in `damage.max_frame_px` (with a 2 % margin).
    """
    width, height = doc_size
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    unit = corners - [width / 2, height / 2]
    offsets = np.array(
        [[rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)] for _ in range(4)]
    )
    # Clockwise on screen, because image y grows downwards.
    angle = math.radians(damage.quarter_turns * 90.0 + damage.skew_deg)
    rotation = np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    shape = (unit + offsets * damage.perspective * max(width, height)) @ rotation.T
    unit_span = shape.max(axis=0) - shape.min(axis=0)
    scale = min(scale, 0.98 * damage.max_frame_px / float(unit_span.max()))
    turned = shape * scale
    span = unit_span * scale

    fill = max(damage.fill, float(span.max()) / damage.max_frame_px)
    frame_w = max(64, min(damage.max_frame_px, math.ceil(span[0] / fill)))
    frame_h = max(64, min(damage.max_frame_px, math.ceil(span[1] / fill)))
    # Camera frames are landscape; sideways documents leave margins left and right.
    if frame_h > frame_w:
        frame_w = max(frame_w, min(damage.max_frame_px, round(frame_h * 4 / 3)))
    free = np.maximum(np.array([frame_w, frame_h]) - span, 0.0)
    offset = -turned.min(axis=0) + [rng.uniform(0, free[0]), rng.uniform(0, free[1])]
    placed = (turned + offset).astype(np.float32)
    homography = cv2.getPerspectiveTransform(corners.astype(np.float32), placed)
    return homography.astype(np.float64), (frame_w, frame_h), scale


def _apply_light(
    rng: random.Random,
    frame: FloatImage,
    damage: Damage,
    target: npt.NDArray[np.float64],
) -> FloatImage:
    height, width = frame.shape[:2]
    # Both fields are smooth, so they are computed on a grid 8 times coarser.
    step = 8
    ys, xs = np.mgrid[0:height:step, 0:width:step].astype(np.float32)
    gain = np.ones(xs.shape, np.float32)
    glow = np.zeros(xs.shape, np.float32)
    if damage.lighting > 0:
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        gain = 1.0 - damage.lighting * ramp
    if damage.glare > 0:
        # The glare centre lands somewhere on the document.
        cx = rng.uniform(target[:, 0].min(), target[:, 0].max())
        cy = rng.uniform(target[:, 1].min(), target[:, 1].max())
        radius = rng.uniform(0.05, 0.15) * max(width, height)
        spot = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))
        glow = 255.0 * damage.glare * spot
    if damage.lighting <= 0 and damage.glare <= 0:
        return frame
    size = (width, height)
    gain_full = cv2.resize(gain, size, interpolation=cv2.INTER_LINEAR)
    glow_full = cv2.resize(
        glow.astype(np.float32), size, interpolation=cv2.INTER_LINEAR
    )
    return frame * gain_full[:, :, None] + glow_full[:, :, None]


def _blur_kernels(damage: Damage) -> list[npt.NDArray[np.float32]]:
    kernels = []
    if damage.defocus_px > 0.05:
        radius = damage.defocus_px
        size = 2 * math.ceil(radius) + 1
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - size // 2
        # A disc with a one-pixel soft edge models the out-of-focus aperture.
        disc = np.clip(radius + 0.5 - np.sqrt(xs**2 + ys**2), 0.0, 1.0)
        kernels.append((disc / disc.sum()).astype(np.float32))
    if damage.motion_px > 0.5:
        length = damage.motion_px
        size = 2 * math.ceil(length / 2) + 1
        line = np.zeros((size, size), np.float32)
        centre = size // 2
        dx = math.cos(math.radians(damage.motion_angle_deg)) * length / 2
        dy = math.sin(math.radians(damage.motion_angle_deg)) * length / 2
        start = (round((centre - dx) * 16), round((centre - dy) * 16))
        end = (round((centre + dx) * 16), round((centre + dy) * 16))
        cv2.line(line, start, end, 1.0, 1, cv2.LINE_AA, shift=4)
        kernels.append(line / line.sum())
    return kernels


def photograph(
    document: Image8,
    mrz_box: tuple[float, float, float, float],
    rng: random.Random,
    damage: Damage,
    base_cap_px: float,
) -> tuple[Image8, dict[str, Any]]:
    """Place `document` in a camera frame and damage it as a camera would.

    Returns the BGR frame and its geometry. `glyph_px` is the MRZ cap height
    in pixels, below `damage.glyph_px` when the document had to shrink to fit
    the frame. `mrz_quad` and `document_quad` are corners in frame pixels,
    clockwise from the document's top-left corner. `size` is (width, height).
    """
    height, width = document.shape[:2]
    requested = damage.glyph_px / base_cap_px
    homography, (frame_w, frame_h), scale = _placement(
        rng, damage, (width, height), requested
    )

    # Shrinking first with area averaging avoids the aliasing that a single
    # bilinear warp produces at large reductions.
    if scale < 1.0:
        small = cv2.resize(
            document, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
        )
        shrink = np.diag([small.shape[1] / width, small.shape[0] / height, 1.0])
        warp = homography @ np.linalg.inv(shrink)
    else:
        small, warp = document, homography
    warped = cv2.warpPerspective(
        small.astype(np.float32), warp, (frame_w, frame_h), flags=cv2.INTER_LINEAR
    )
    mask = cv2.warpPerspective(
        np.ones(small.shape[:2], np.float32),
        warp,
        (frame_w, frame_h),
        flags=cv2.INTER_LINEAR,
    )[:, :, None]
    frame = _clutter(rng, frame_w, frame_h, damage.clutter)
    frame = (frame * (1.0 - mask) + warped * mask).astype(np.float32)

    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    target = cv2.perspectiveTransform(corners[None], homography)[0]
    frame = _apply_light(rng, frame, damage, target)
    for kernel in _blur_kernels(damage):
        blurred = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)
        frame = np.asarray(blurred, dtype=np.float32)
    if damage.noise_sigma > 0:
        noise_rng = np.random.default_rng(rng.getrandbits(64))
        noise = noise_rng.normal(0.0, damage.noise_sigma, frame.shape)
        frame = (frame + noise).astype(np.float32)
    image = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    if damage.jpeg_quality is not None:
        image = _jpeg_roundtrip(image, damage.jpeg_quality)

    left, top, right, bottom = mrz_box
    box = np.array(
        [[left, top], [right, top], [right, bottom], [left, bottom]], np.float64
    )
    quad = cv2.perspectiveTransform(box[None], homography)[0]
    geometry = {
        "glyph_px": round(base_cap_px * scale, 2),
        "mrz_quad": [[round(float(x), 1), round(float(y), 1)] for x, y in quad],
        "document_quad": [[round(float(x), 1), round(float(y), 1)] for x, y in target],
        "size": [frame_w, frame_h],
    }
    return image, geometry


def _jpeg_roundtrip(image: Image8, quality: int) -> Image8:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RenderError(f"JPEG encoding failed at quality {quality}")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return np.asarray(decoded, dtype=np.uint8)


# --------------------------------------------------------------------------
# Public entry points


def render_document(
    fields_or_lines: Any,
    rng: random.Random,
    damage: Damage,
    *,
    fmt: str | None = None,
) -> tuple[Image8, dict[str, Any]]:
    """Render one document photo; return the BGR image and its ground truth.

    `fields_or_lines` is a `kiosk.mrz.DocumentFields` (composed with
    `kiosk.mrz.compose`) or the MRZ lines themselves. The truth dict contains
    `format`, `lines`, `fields` (None for bare lines), `document_number` (as
    in the MRZ, without fillers, None for bare lines), `rotation_deg` (how far
    the document is turned clockwise), `glyph_px`, `mrz_quad`,
    `document_quad`, `size` and `damage`.
    """
    if isinstance(fields_or_lines, list | tuple):
        lines = [str(line) for line in fields_or_lines]
        fields = None
    else:
        fields = fields_or_lines
        lines = _compose(fields)
    detected = format_of_lines(lines)
    if fmt is None:
        fmt = str(fields.format) if fields is not None else detected
    if fmt not in LAYOUTS:
        raise RenderError(
            f"unknown document format {fmt!r}: expected one of {', '.join(FORMATS)}"
        )
    layout = LAYOUTS[fmt]
    if (len(lines), len(lines[0])) != (layout.lines, layout.chars):
        raise RenderError(
            f"format {fmt} needs {layout.lines} lines of {layout.chars} characters, "
            f"got {len(lines)} of {len(lines[0])}"
        )

    document, mrz_box = draw_document(fmt, lines, rng, fields)
    image, geometry = photograph(
        document, mrz_box, rng, damage, layout.cap_mm * BASE_PX_PER_MM
    )
    truth: dict[str, Any] = {
        "format": fmt,
        "lines": lines,
        "fields": _field_dict(fields) if fields is not None else None,
        "document_number": (
            str(fields.document_number).replace("<", "") if fields is not None else None
        ),
        "rotation_deg": round(
            (damage.quarter_turns * 90.0 + damage.skew_deg) % 360.0, 2
        ),
        **geometry,
        "damage": {
            key: _jsonable(value) for key, value in dataclasses.asdict(damage).items()
        },
    }
    return image, truth


def render_no_mrz(rng: random.Random, damage: Damage) -> tuple[Image8, dict[str, Any]]:
    """Render a passport-like page without any MRZ, for the "MRZ not found" path."""
    layout = LAYOUTS["TD3"]
    blank = ["<" * layout.chars] * layout.lines
    document, mrz_box = draw_document("TD3", blank, rng, None, with_mrz=False)
    image, geometry = photograph(
        document, mrz_box, rng, damage, layout.cap_mm * BASE_PX_PER_MM
    )
    geometry.pop("mrz_quad")
    truth = {
        "format": None,
        "lines": None,
        "fields": None,
        "document_number": None,
        **geometry,
    }
    return image, truth


# Shares of each damage level in `render_set`.
SET_LEVELS: Final[tuple[tuple[DamageLevel, float], ...]] = (
    ("light", 0.3),
    ("moderate", 0.5),
    ("heavy", 0.2),
)
# Quarter turns of successive rounds through the formats: 70 % upright, 10 %
# upside down and 10 % each way sideways, so every format meets every
# orientation within 10 rounds.
SET_TURN_CYCLE: Final = (0, 0, 2, 0, 1, 0, 0, 3, 0, 0)


def _weighted(rng: random.Random, choices: Sequence[tuple[Any, float]]) -> Any:
    values = [value for value, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(values, weights=weights, k=1)[0]


@dataclass(frozen=True, slots=True)
class CasePlan:
    """Content of case `index` of a rendered set, chosen before any drawing."""

    index: int
    fmt: str
    level: DamageLevel
    damage: Damage
    fields: Any
    rng: random.Random = field(repr=False, compare=False)


def plan_case(
    seed: int,
    index: int,
    *,
    formats: Sequence[str] = FORMATS,
    levels: Sequence[tuple[DamageLevel, float]] = SET_LEVELS,
    turn_cycle: Sequence[int] = SET_TURN_CYCLE,
) -> CasePlan:
    """Choose the format, damage and invented fields of case `index`.

    The returned `rng` continues the case's random stream for the drawing.
    """
    from kiosk import mrz

    rng = random.Random(f"render-set:{seed}:{index}")
    fmt = formats[index % len(formats)]
    level: DamageLevel = _weighted(rng, levels)
    turns = turn_cycle[(index // len(formats)) % len(turn_cycle)]
    damage = Damage.sample(rng, level, quarter_turns=turns)
    fields = mrz.random_fields(rng, fmt)
    return CasePlan(index, fmt, level, damage, fields, rng)


def render_set(
    seed: int,
    count: int,
    *,
    formats: Sequence[str] = FORMATS,
    levels: Sequence[tuple[DamageLevel, float]] = SET_LEVELS,
    turn_cycle: Sequence[int] = SET_TURN_CYCLE,
    apply_jpeg: bool = True,
    start: int = 0,
) -> Iterator[Case]:
    """Yield `count` rendered cases from index `start`, cycling through
    `formats`, with mixed damage.

    Case `i` depends only on (`seed`, `i`), so a prefix of a larger set is the
    same as a smaller set with the same seed, and one case can be rendered
    alone with `start=i, count=1`. With `apply_jpeg` false the images skip the
    JPEG step, so the caller can encode them once at
    `truth["damage"]["jpeg_quality"]` as a camera would.
    """
    for index in range(start, start + count):
        plan = plan_case(
            seed, index, formats=formats, levels=levels, turn_cycle=turn_cycle
        )
        damage = plan.damage
        if not apply_jpeg:
            damage = dataclasses.replace(damage, jpeg_quality=None)
        image, truth = render_document(plan.fields, plan.rng, damage)
        truth["damage"]["jpeg_quality"] = plan.damage.jpeg_quality
        truth["level"] = plan.level
        name = f"{seed}-{index:04d}-{plan.fmt.lower()}-{plan.level}"
        yield Case(name, image, truth)


def encode_case(case: Case) -> bytes:
    """Encode a case rendered without JPEG once, at its sampled JPEG quality."""
    quality = case.truth["damage"]["jpeg_quality"] or 90
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, encoded = cv2.imencode(".jpg", case.image, params)
    if not ok:
        raise RenderError(f"JPEG encoding failed for case {case.name}")
    return bytes(np.asarray(encoded).tobytes())


def write_set(out_dir: Path, seed: int, count: int, start: int = 0) -> dict[str, Any]:
    """Write a rendered set as JPEG files plus a truth.json beside them.

    The truth has the same shape as fixtures/images/truth.json, without a
    lookup expectation, so the kiosk's tester screen judges readings only.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {}
    for case in render_set(seed, count, apply_jpeg=False, start=start):
        name = f"{case.name}.jpg"
        (out_dir / name).write_bytes(encode_case(case))
        truth[name] = case.truth
    (out_dir / "truth.json").write_text(
        json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    logger.info("wrote %d rendered images to %s", count, out_dir)
    return truth


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.render",
        description="Write a seeded set of rendered document photos and their "
        "truth.json to a folder.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write into")
    parser.add_argument(
        "--count", type=int, default=30, help="number of images (default: 30)"
    )
    parser.add_argument("--seed", type=int, default=1, help="set seed (default: 1)")
    parser.add_argument(
        "--start",
        type=int,
        default=0,
        help="index of the first case, as in the benchmark's image names (default: 0)",
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        print(f"error: --count must be at least 1, got {args.count}", file=sys.stderr)
        return 2
    if args.start < 0:
        print(f"error: --start must not be negative, got {args.start}", file=sys.stderr)
        return 2
    try:
        write_set(args.out_dir, args.seed, args.count, args.start)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.count} images and truth.json to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
