"""Measure how often the glyph model confuses check-neutral character pairs.

    python -m tools.probe_lookalikes [--seed 1]

Two MRZ characters whose check-digit values differ by a multiple of 10 (A
and K, P and F) can replace each other without breaking any check digit.
This renders the whole OCR-B alphabet in one line and damages it in 100
ways: Gaussian blur of sigma 0 to 7 px, strokes thinned or thickened by up
to 2 px, down-scaling to 0.22, and pixel noise. It cuts the glyph cells as
the reader does and runs the shipped glyph model on them. For each
check-neutral pair it prints the share of damaged cells of the first
character in which the model gave the second a probability of at least
`--min-p`. The default, 0.02, is the probability at which kiosk/pipeline.py
looks up an issuing-state alternative. kiosk/pipeline.py chooses its
LOOKALIKE_GROUPS from this table.

The probe covers the glyph model alone: it does not run Tesseract, and it
renders one font, not worn or misprinted documents.
"""

from __future__ import annotations

import argparse
import itertools

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from kiosk.reader.glyphs import ALPHABET, LineGeometry, cut_cells, default_model
from tools.render import ocrb_font

FONT_PX = 40
BLUR_SIGMAS = (0.0, 2.5, 4.0, 5.5, 7.0)
# Negative values erode (thinner strokes), positive ones dilate, in pixels.
STROKE_CHANGES = (-2, -1, 0, 1, 2)
SCALES = (1.0, 0.5, 0.3, 0.22)
NOISE_SIGMA = 0.08


def check_value(char: str) -> int:
    """Return the ICAO 9303 check-digit value of an MRZ character."""
    if char == "<":
        return 0
    if char.isdigit():
        return int(char)
    return ord(char) - ord("A") + 10


def neutral_pairs() -> list[tuple[str, str]]:
    """Return every ordered pair of characters with equal values modulo 10."""
    return [
        (a, b)
        for a, b in itertools.permutations(ALPHABET, 2)
        if check_value(a) % 10 == check_value(b) % 10
    ]


def _ink_line(text: str) -> tuple[npt.NDArray[np.float32], LineGeometry]:
    font = ocrb_font(FONT_PX)
    pitch = font.getlength("M")
    image = Image.new("L", (int(pitch * (len(text) + 4)), FONT_PX * 3), 255)
    ImageDraw.Draw(image).text((2 * pitch, FONT_PX), text, font=font, fill=0)
    ink = 1.0 - np.asarray(image, np.float32) / 255.0
    top, bottom = font.getbbox("H")[1], font.getbbox("H")[3]
    geometry = LineGeometry(
        x0=2.5 * pitch,
        pitch=pitch,
        y0=FONT_PX + (top + bottom) / 2,
        slope=0.0,
        cap=float(bottom - top),
        count=len(text),
    )
    return ink, geometry


def _damage(
    ink: npt.NDArray[np.float32],
    sigma: float,
    stroke: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    out = ink
    if stroke:
        kernel = np.ones((abs(stroke) + 1, abs(stroke) + 1), np.uint8)
        operation = cv2.dilate if stroke > 0 else cv2.erode
        out = np.asarray(operation(out, kernel), np.float32)
    if sigma:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), sigma), np.float32)
    noise = rng.normal(0.0, NOISE_SIGMA, out.shape).astype(np.float32)
    clipped: npt.NDArray[np.float32] = np.clip(out + noise, 0.0, 1.0)
    return clipped


def probe(seed: int, min_p: float) -> dict[tuple[str, str], float]:
    """Return, for each check-neutral pair (a, b), the share of damaged
    cells of `a` in which the model gave `b` at least `min_p`."""
    rng = np.random.default_rng(seed)
    model = default_model()
    ink, geometry = _ink_line(ALPHABET)
    pairs = neutral_pairs()
    hits = dict.fromkeys(pairs, 0)
    trials = 0
    for sigma, stroke, scale in itertools.product(BLUR_SIGMAS, STROKE_CHANGES, SCALES):
        damaged = _damage(ink, sigma, stroke, rng)
        small = cv2.resize(
            damaged, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
        )
        scaled = LineGeometry(
            x0=geometry.x0 * scale,
            pitch=geometry.pitch * scale,
            y0=geometry.y0 * scale,
            slope=0.0,
            cap=geometry.cap * scale,
            count=geometry.count,
        )
        probabilities = model.probabilities(cut_cells(np.asarray(small), scaled))
        trials += 1
        for a, b in pairs:
            if probabilities[ALPHABET.index(a), ALPHABET.index(b)] >= min_p:
                hits[(a, b)] += 1
    return {pair: count / trials for pair, count in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="noise seed")
    parser.add_argument(
        "--min-p",
        type=float,
        default=0.02,
        help="probability at which an alternative counts (default 0.02)",
    )
    args = parser.parse_args()
    shares = probe(args.seed, args.min_p)
    print("| read | model also gave | share of damaged cells |")
    print("|---|---|---|")
    for (a, b), share in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"| {a} | {b} | {share:.0%} |")


if __name__ == "__main__":
    main()
