"""Per-glyph OCR-B classifier: cell cutting, features and the trained network.

The same `cut_cells` function feeds training (tools/train_glyphs.py) and
reading, so both see a cell framed the same way: one character pitch wide,
centred on the expected glyph centre, and `CELL_HEIGHT_FACTOR` cap heights
tall around the line's centre line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"
CELL_W = 16
CELL_H = 24
# Cell height in cap heights: the OCR-B capitals and the filler fill about
# 0.75 of it, which leaves room for the centre-line error of a damaged line.
CELL_HEIGHT_FACTOR = 1.35
MODEL_FILE = "glyphs.npz"

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LineGeometry:
    """Glyph grid of one text line in a grey image, in pixels.

    Glyph i is centred at x = x0 + i * pitch + curve * i**2 (the curve term
    absorbs perspective) and y = y0 + slope * (x - x0). `cap` is the capital
    height.
    """

    x0: float
    pitch: float
    y0: float
    slope: float
    cap: float
    count: int
    curve: float = 0.0

    def centre(self, i: int) -> tuple[float, float]:
        x = self.x0 + i * self.pitch + self.curve * i * i
        return x, self.y0 + self.slope * (x - self.x0)


def cut_cells(ink: FloatArray, geometry: LineGeometry) -> FloatArray:
    """Cut the glyph cells of one line from an ink map (1 = ink, 0 = paper).

    Returns an array (count, CELL_H, CELL_W) of float32. Parts of a cell
    outside the image read as paper.
    """
    cells = np.zeros((geometry.count, CELL_H, CELL_W), np.float32)
    half_w = geometry.pitch / 2.0
    half_h = geometry.cap * CELL_HEIGHT_FACTOR / 2.0
    h, w = ink.shape
    for i in range(geometry.count):
        cx, cy = geometry.centre(i)
        # An affine map from the output cell to the source window; warpAffine
        # interpolates sub-pixel positions and pads outside with zero.
        sx = (2 * half_w) / CELL_W
        sy = (2 * half_h) / CELL_H
        matrix = np.array(
            [
                [sx, 0.0, cx - half_w + sx / 2 - 0.5],
                [0.0, sy, cy - half_h + sy / 2 - 0.5],
            ],
            np.float64,
        )
        if sx > 1.5 or sy > 1.5:
            # Shrinking: smooth first so that thin strokes are not skipped.
            x_lo = max(int(cx - half_w) - 2, 0)
            x_hi = min(int(cx + half_w) + 3, w)
            y_lo = max(int(cy - half_h) - 2, 0)
            y_hi = min(int(cy + half_h) + 3, h)
            if x_hi <= x_lo or y_hi <= y_lo:
                continue
            window = ink[y_lo:y_hi, x_lo:x_hi]
            k = int(max(sx, sy) / 2) * 2 + 1
            window = np.asarray(cv2.blur(window, (k, k)), np.float32)
            matrix[0, 2] -= x_lo
            matrix[1, 2] -= y_lo
        else:
            window = ink
        cells[i] = cv2.warpAffine(
            window,
            matrix,
            (CELL_W, CELL_H),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
    return cells


def features(cells: FloatArray) -> FloatArray:
    """Turn cells into network inputs: pixels plus gradient orientation maps.

    Each cell is scaled so its darkest pixel is 1, which removes the contrast
    left over after line normalisation. The gradient maps make the input less
    sensitive to stroke thickness.
    """
    n = cells.shape[0]
    peak = cells.reshape(n, -1).max(axis=1)
    scaled = cells / np.maximum(peak, 0.25)[:, None, None]
    gx = np.zeros_like(scaled)
    gy = np.zeros_like(scaled)
    gx[:, :, 1:-1] = scaled[:, :, 2:] - scaled[:, :, :-2]
    gy[:, 1:-1, :] = scaled[:, 2:, :] - scaled[:, :-2, :]
    # Four orientation channels pooled 2x2: 8x12 each.
    channels = [np.maximum(gx, 0), np.maximum(-gx, 0), np.maximum(gy, 0)]
    channels.append(np.maximum(-gy, 0))
    pooled = [
        c.reshape(n, CELL_H // 2, 2, CELL_W // 2, 2).sum(axis=(2, 4)) for c in channels
    ]
    parts = [scaled.reshape(n, -1)] + [p.reshape(n, -1) for p in pooled]
    return np.concatenate(parts, axis=1).astype(np.float32)


@dataclass(frozen=True)
class GlyphModel:
    """A two-layer perceptron with a softmax temperature fitted after training."""

    mean: FloatArray
    scale: FloatArray
    w1: FloatArray
    b1: FloatArray
    w2: FloatArray
    b2: FloatArray
    temperature: float

    def logits(self, inputs: FloatArray) -> FloatArray:
        """Return raw class scores for `features` rows."""
        x = (inputs - self.mean) / self.scale
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        out: FloatArray = hidden @ self.w2 + self.b2
        return out

    def probabilities(self, inputs: FloatArray) -> FloatArray:
        """Return calibrated class probabilities for `features` rows, shape
        (n, len(ALPHABET))."""
        z = self.logits(inputs) / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p: FloatArray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return p

    def arrays(self, prefix: str) -> dict[str, npt.NDArray[np.generic]]:
        """Return the parameters as named arrays for an .npz file."""
        return {
            f"{prefix}mean": self.mean,
            f"{prefix}scale": self.scale,
            # Half precision halves the file and changes no argmax in tests.
            f"{prefix}w1": self.w1.astype(np.float16),
            f"{prefix}b1": self.b1,
            f"{prefix}w2": self.w2.astype(np.float16),
            f"{prefix}b2": self.b2,
            f"{prefix}temperature": np.array(self.temperature, np.float32),
        }

    @classmethod
    def from_arrays(
        cls, data: Mapping[str, npt.NDArray[np.generic]], prefix: str
    ) -> GlyphModel:
        return cls(
            mean=data[f"{prefix}mean"].astype(np.float32),
            scale=data[f"{prefix}scale"].astype(np.float32),
            w1=data[f"{prefix}w1"].astype(np.float32),
            b1=data[f"{prefix}b1"].astype(np.float32),
            w2=data[f"{prefix}w2"].astype(np.float32),
            b2=data[f"{prefix}b2"].astype(np.float32),
            temperature=float(data[f"{prefix}temperature"]),
        )


@dataclass(frozen=True)
class GlyphEnsemble:
    """Networks trained alike from different seeds; their calibrated
    probabilities are averaged, which evens out each one's blind spots."""

    members: tuple[GlyphModel, ...]

    def probabilities(self, cells: FloatArray) -> FloatArray:
        """Return mean class probabilities, shape (n, len(ALPHABET))."""
        inputs = features(cells)
        total = self.members[0].probabilities(inputs)
        for member in self.members[1:]:
            total = total + member.probabilities(inputs)
        out: FloatArray = (total / len(self.members)).astype(np.float32)
        return out

    def save(self, path: Path) -> None:
        arrays: dict[str, npt.NDArray[np.generic]] = {"alphabet": np.array(ALPHABET)}
        arrays["members"] = np.array(len(self.members), np.int32)
        for k, member in enumerate(self.members):
            arrays.update(member.arrays(f"m{k}_"))
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> GlyphEnsemble:
        with np.load(path) as data:
            if str(data["alphabet"]) != ALPHABET:
                raise ValueError(f"{path}: trained for another alphabet; retrain it")
            count = int(data["members"])
            members = tuple(
                GlyphModel.from_arrays(data, f"m{k}_") for k in range(count)
            )
        return cls(members)


@lru_cache(maxsize=1)
def default_model() -> GlyphEnsemble:
    """Load the model shipped with the package (once per process)."""
    ref = resources.files("kiosk.reader").joinpath(MODEL_FILE)
    with resources.as_file(ref) as path:
        log.info("loading glyph model %s", path.name)
        return GlyphEnsemble.load(Path(path))


def ink_map(gray: npt.NDArray[np.uint8], cap: float) -> FloatArray:
    """Turn a grey image into ink strength 0..1 relative to the local paper.

    The paper level is a grey dilation over about half a cap height, which is
    wider than an OCR-B stroke, so uneven light and glare cancel out. The
    difference is scaled by the local ink level so that faint print reaches 1.
    """
    size = max(3, round(cap * 0.6) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    paper = cv2.dilate(gray, kernel)
    paper = cv2.blur(paper, (size, size))
    diff = paper.astype(np.float32) - gray.astype(np.float32)
    np.maximum(diff, 0.0, out=diff)
    # Every third pixel each way gives the same percentile at a ninth of the cost.
    sample = diff[::3, ::3]
    top = max(float(np.percentile(sample, 99.0)) if sample.size else 0.0, 12.0)
    # Glare lowers the contrast of a few glyphs only, so each pixel is also
    # scaled by the strongest ink within about three cap heights. The floor
    # at a quarter of the global level keeps blank paper from turning into
    # amplified noise.
    reach = max(3, round(cap * 3) | 1)
    local = cv2.dilate(diff, cv2.getStructuringElement(cv2.MORPH_RECT, (reach, reach)))
    local = cv2.blur(local, (reach, reach))
    scale = np.clip(local, 0.25 * top, top)
    out: FloatArray = np.clip(diff / scale, 0.0, 1.0)
    return out
