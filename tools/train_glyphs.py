"""Train the OCR-B glyph classifier used by kiosk.reader.

Renders random MRZ-like lines in the OCR-B font and damages them the way
camera photos are damaged: weight, blur, noise, JPEG, glare, low resolution,
skew and background print. Cells are cut with the reader's own `cut_cells`.
A two-layer perceptron is trained in numpy, twice from consecutive seeds, and
the reader averages the two. A fixed seed makes the output reproducible on the same
numpy/OpenCV build and BLAS thread count. Takes about 6 minutes per network
on one core.

    python -m tools.train_glyphs [--lines 6000] [--out kiosk/reader/glyphs.npz]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from kiosk.reader.glyphs import (
    ALPHABET,
    GlyphEnsemble,
    GlyphModel,
    LineGeometry,
    cut_cells,
    features,
    ink_map,
)

log = logging.getLogger("train_glyphs")

FONT_PATH = Path("/usr/share/fonts/opentype/ocr-b/OCRB.otf")
FONT_PX = 64
LINE_CHARS = 44
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "kiosk/reader/glyphs.npz"

FloatArray = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def random_text(rng: np.random.Generator) -> str:
    """Draw a line that mixes filler runs, letter runs and digit runs like an MRZ."""
    out: list[str] = []
    while len(out) < LINE_CHARS:
        kind = rng.random()
        run = int(rng.integers(1, 9))
        if kind < 0.25:
            out += ["<"] * run
        elif kind < 0.55:
            out += list(rng.choice(list(ALPHABET[:26]), run))
        elif kind < 0.85:
            out += list(rng.choice(list(ALPHABET[26:36]), run))
        else:
            out += list(rng.choice(list(ALPHABET), run))
    return "".join(out[:LINE_CHARS])


class LineRenderer:
    """Render clean OCR-B lines at high resolution and know their glyph centres."""

    def __init__(self) -> None:
        self.font = ImageFont.truetype(str(FONT_PATH), FONT_PX)
        self.advance = float(self.font.getlength("A"))
        probe = Image.new("L", (FONT_PX * 3, FONT_PX * 3), 0)
        ImageDraw.Draw(probe).text((0, 0), "H", font=self.font, fill=255)
        ys = np.nonzero(np.asarray(probe))[0]
        self.cap_top = float(ys.min())
        self.cap = float(ys.max() - ys.min() + 1)

    def render(self, text: str) -> tuple[U8, float, float]:
        """Return (ink image 0..255, x of glyph 0 centre, y of the cap centre)."""
        margin = int(self.cap)
        width = int(self.advance * len(text)) + 2 * margin
        height = int(self.cap * 3)
        img = Image.new("L", (width, height), 0)
        top = (height - self.cap) / 2 - self.cap_top
        ImageDraw.Draw(img).text((margin, top), text, font=self.font, fill=255)
        x0 = margin + self.advance / 2
        y0 = top + self.cap_top + self.cap / 2
        return np.asarray(img).copy(), x0, y0


def background(rng: np.random.Generator, h: int, w: int) -> FloatArray:
    """Paper with a gradient and security-print waves, grey levels 0..255."""
    level = rng.uniform(150, 250)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.full((h, w), level, np.float32)
    bg += rng.uniform(-30, 30) * xx / max(w, 1) + rng.uniform(-20, 20) * yy / h
    if rng.random() < 0.25:
        # The edge of a printed zone (the MRZ's white strip on a tinted page)
        # running through the line.
        edge = rng.uniform(0.2, 0.8) * h + xx * rng.normal(0, 0.02)
        step = rng.uniform(-70, 70)
        bg += np.where(yy < edge, step, 0.0).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):
        period = rng.uniform(4, 40)
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
        bg += rng.uniform(3, 25) * wave
    return bg


def damage_line(
    rng: np.random.Generator, renderer: LineRenderer, text: str
) -> tuple[FloatArray, list[tuple[float, float]], float, float]:
    """Render and damage one line; return its ink map, glyph centres, pitch, cap."""
    clean, x0, y0 = renderer.render(text)

    weight = int(rng.integers(-3, 4))
    if weight:
        kernel = np.ones((abs(weight) + 1, abs(weight) + 1), np.uint8)
        op = cv2.dilate if weight > 0 else cv2.erode
        clean = np.asarray(op(clean, kernel), np.uint8)

    # Small rotation, shear and vertical squash at high resolution.
    h, w = clean.shape
    angle = rng.normal(0, 1.2)
    shear = rng.normal(0, 0.04)
    squash = rng.uniform(0.9, 1.1)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    extra = np.array([[1, shear, -shear * h / 2], [0, squash, (1 - squash) * h / 2]])
    affine = rot @ np.vstack([extra, [0, 0, 1]])
    clean = np.asarray(
        cv2.warpAffine(clean, affine, (w, h), flags=cv2.INTER_LINEAR), np.uint8
    )
    centres = []
    for i in range(len(text)):
        p = affine @ np.array([x0 + i * renderer.advance, y0, 1.0])
        centres.append((float(p[0]), float(p[1])))

    # Down to the target capital height; log-uniform favours the small sizes.
    cap_target = float(np.exp(rng.uniform(np.log(7.0), np.log(40.0))))
    scale = cap_target / (renderer.cap * squash)
    sw, sh = max(int(w * scale), 8), max(int(h * scale), 8)
    small = cv2.resize(clean, (sw, sh), interpolation=cv2.INTER_AREA)
    centres = [(x * scale, y * scale) for x, y in centres]
    pitch = renderer.advance * scale
    cap = renderer.cap * scale * squash

    paper = background(rng, sh, sw)
    ink_level = rng.uniform(0, 110)
    alpha = small.astype(np.float32) / 255.0
    gray = paper * (1 - alpha) + ink_level * alpha

    if rng.random() < 0.3:
        # Glare: a bright blob that washes the print out towards white.
        cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
        radius = rng.uniform(0.1, 0.5) * sw
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
        strength = rng.uniform(0.3, 0.85)
        gray = gray + (255 - gray) * strength * blob

    sigma = rng.uniform(0, 0.16) * cap
    if sigma > 0.3:
        gray = cv2.GaussianBlur(gray, (0, 0), sigma)
    if rng.random() < 0.2:
        length = int(rng.integers(2, max(3, int(cap * 0.35))))
        line = np.zeros((length, length), np.float32)
        line[length // 2, :] = 1.0 / length
        rot_k = cv2.getRotationMatrix2D(
            ((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0
        )
        turned = np.asarray(cv2.warpAffine(line, rot_k, (length, length)), np.float32)
        gray = cv2.filter2D(gray, -1, turned / max(float(turned.sum()), 1e-6))
    gray = gray + rng.normal(0, rng.uniform(0, 10), gray.shape)
    image = np.clip(gray, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        quality = int(rng.integers(25, 95))
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return ink_map(image, cap), centres, pitch, cap


def make_samples(
    rng: np.random.Generator, renderer: LineRenderer, lines: int
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Cut jittered cells from `lines` damaged lines; return features and labels."""
    cells: list[FloatArray] = []
    labels: list[int] = []
    for _ in range(lines):
        text = random_text(rng)
        ink, centres, pitch, cap = damage_line(rng, renderer, text)
        for i, (cx, cy) in enumerate(centres):
            # Jitter the frame as much as the reader's geometry may be off.
            geometry = LineGeometry(
                x0=cx + rng.normal(0, 0.07) * pitch,
                pitch=pitch * rng.uniform(0.92, 1.08),
                y0=cy + rng.normal(0, 0.07) * cap,
                slope=0.0,
                cap=cap * rng.uniform(0.88, 1.12),
                count=1,
            )
            cells.append(cut_cells(ink, geometry)[0])
            labels.append(ALPHABET.index(text[i]))
    return features(np.stack(cells)), np.array(labels, np.int64)


def train(
    x: FloatArray,
    y: npt.NDArray[np.int64],
    rng: np.random.Generator,
    hidden: int,
    epochs: int,
) -> GlyphModel:
    """Fit the perceptron with Adam on softmax cross-entropy."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    xs = ((x - mean) / scale).astype(np.float32)
    n, d = xs.shape
    k = len(ALPHABET)
    params = {
        "w1": (rng.normal(0, np.sqrt(2 / d), (d, hidden))).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.normal(0, np.sqrt(1 / hidden), (hidden, k))).astype(np.float32),
        "b2": np.zeros(k, np.float32),
    }
    moments = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in params.items()}

    batch = 256
    step = 0
    for epoch in range(epochs):
        lr = 2e-3 * (0.5 ** (epoch / max(epochs / 4, 1)))
        order = rng.permutation(n)
        loss_sum = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            xb, yb = xs[idx], y[idx]
            h_pre = xb @ params["w1"] + params["b1"]
            h = np.maximum(h_pre, 0)
            z = h @ params["w2"] + params["b2"]
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            loss_sum += float(-np.log(p[np.arange(len(yb)), yb] + 1e-9).sum())

            dz = p
            dz[np.arange(len(yb)), yb] -= 1
            dz /= len(yb)
            grads = {"w2": h.T @ dz, "b2": dz.sum(axis=0)}
            dh = (dz @ params["w2"].T) * (h_pre > 0)
            grads["w1"] = xb.T @ dh + 1e-4 * params["w1"]
            grads["b1"] = dh.sum(axis=0)

            step += 1
            for name, g in grads.items():
                m, v = moments[name]
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                m_hat = m / (1 - 0.9**step)
                v_hat = v / (1 - 0.999**step)
                params[name] -= (lr * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(
                    np.float32
                )
        log.info("epoch %d: loss %.4f", epoch + 1, loss_sum / n)
    return GlyphModel(
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        w1=params["w1"],
        b1=params["b1"],
        w2=params["w2"],
        b2=params["b2"],
        temperature=1.0,
    )


def fit_temperature(
    model: GlyphModel, x_cells_logits: FloatArray, y: npt.NDArray[np.int64]
) -> float:
    """Pick the softmax temperature that minimises held-out log loss."""
    best_t, best_loss = 1.0, float("inf")
    for t in np.arange(0.5, 3.01, 0.05):
        z = x_cells_logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = float(-logp[np.arange(len(y)), y].mean())
        if loss < best_loss:
            best_t, best_loss = float(t), loss
    log.info("temperature %.2f, held-out log loss %.4f", best_t, best_loss)
    return best_t


def train_member(args: argparse.Namespace, seed: int) -> GlyphModel:
    """Render fresh data from `seed`, train one network and calibrate it."""
    rng = np.random.default_rng(seed)
    renderer = LineRenderer()
    started = time.monotonic()
    x, y = make_samples(rng, renderer, args.lines)
    x_val, y_val = make_samples(rng, renderer, max(args.lines // 10, 20))
    log.info(
        "seed %d: rendered %d + %d cells in %.0f s",
        seed,
        len(y),
        len(y_val),
        time.monotonic() - started,
    )
    model = train(x, y, rng, args.hidden, args.epochs)
    val_logits = model.logits(x_val)
    accuracy = float((val_logits.argmax(axis=1) == y_val).mean())
    log.info("seed %d: held-out accuracy %.4f", seed, accuracy)
    temperature = fit_temperature(model, val_logits, y_val)
    return GlyphModel(
        mean=model.mean,
        scale=model.scale,
        w1=model.w1,
        b1=model.b1,
        w2=model.w2,
        b2=model.b2,
        temperature=temperature,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=6000, help="training lines")
    parser.add_argument("--hidden", type=int, default=256, help="hidden units")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs")
    parser.add_argument(
        "--members", type=int, default=2, help="networks, trained from seed, seed+1..."
    )
    parser.add_argument("--seed", type=int, default=9303, help="random seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cv2.setNumThreads(1)
    started = time.monotonic()
    members = tuple(train_member(args, args.seed + k) for k in range(args.members))
    GlyphEnsemble(members).save(args.out)
    log.info("wrote %s in %.0f s", args.out, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
