"""Train the Tesseract MRZ model `kiosk/reader/tessdata/mrz.traineddata`.

    python -m tools.train_tesseract [--documents 600] [--iterations 40000]
                                    [--work DIR] [--jobs 2]

Stages, each skipped when its output is already in the work directory:

1. lines: render `--documents` invented documents of every format with the
   benchmark's camera damage (tools/render.py), on a seed the benchmark does
   not use. Find their MRZ with the kiosk's reader and save each line image
   as the reader passes it to Tesseract, plus three altered copies, with the
   true text. Documents whose reading has the
   wrong shape are skipped. Each unaltered line is also cut into pieces of
   5 to 14 characters, each saved with one altered copy.
2. lstmf: write a box file per line image (every character gets the whole
   line's box, the usual form for line-level training) and let `tesseract
   ... lstm.train` turn each into an .lstmf sample.
3. starter: build the unicharset from the box files and a starter
   traineddata with `combine_lang_model`.
4. train: `lstmtraining` from scratch (the stock English model is an
   integer model and cannot be fine-tuned), 90 % of the lines for training
   and 10 % for evaluation.
5. finish: `lstmtraining --stop_training --convert_to_int` writes the
   integer traineddata, which is copied into the package.

Training on clean font pages alone does not transfer to camera images, so
every line here comes from a damaged photo. The Debian `tesseract-ocr`
package provides the training programs and `fonts-ocr-b` the font.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from kiosk.reader import tesseract

logger = logging.getLogger(__name__)

TRAIN_SEED: Final = 7100
# More heavy damage than the benchmark: the model matters most there.
TRAIN_LEVELS: Final = (("light", 0.2), ("moderate", 0.45), ("heavy", 0.35))
# A small network: a 37-character alphabet in one font needs little capacity.
NET_SPEC: Final = "[1,36,0,1 Ct3,3,16 Mp3,3 Lfys48 Lfx96 Lrx96 Lfx128 O1c{size}]"
PROGRAMS: Final = (
    "tesseract",
    "unicharset_extractor",
    "combine_lang_model",
    "lstmtraining",
)


class TrainingError(Exception):
    """A training stage failed; the message names the stage and what to do."""


def _environment() -> dict[str, str]:
    """Return the programs' environment, with one OpenMP thread each.

    Tesseract's OpenMP threads spin while they wait. On the 2-CPU development
    machine under load, training ran more than twice as fast with one thread.
    """
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


def _run(args: Sequence[str], stage: str) -> str:
    logger.debug("running %s", " ".join(args))
    proc = subprocess.run(
        args, capture_output=True, text=True, check=False, env=_environment()
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise TrainingError(
            f"{stage}: {args[0]} exited with {proc.returncode}: " + " | ".join(tail)
        )
    return proc.stdout + proc.stderr


def _variants(
    image: npt.NDArray[np.uint8], rng: random.Random, *, trim_sides: bool = True
) -> list[npt.NDArray[np.uint8]]:
    """Return the line image and three altered copies.

    Each copy is rescaled and recropped, as a less exact segmentation gives,
    then optionally blurred, or given less contrast and more noise. Rendering
    is the slow step, so each rendered line is used four times.
    """
    out = [image]
    for kind in ("crop", "blur", "faint"):
        scale = rng.uniform(0.8, 1.2)
        picture = np.asarray(
            cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
            np.float32,
        )
        h, w = picture.shape
        top, bottom = rng.randint(0, max(h // 8, 1)), rng.randint(0, max(h // 8, 1))
        left, right = rng.randint(0, 12), rng.randint(0, 12)
        if not trim_sides:
            left = right = 0
        picture = picture[top : h - bottom, left : w - right]
        if kind == "blur":
            sigma = rng.uniform(0.8, 2.0)
            picture = np.asarray(cv2.GaussianBlur(picture, (0, 0), sigma), np.float32)
        elif kind == "faint":
            contrast = rng.uniform(0.25, 0.6)
            noise = np.random.default_rng(rng.randrange(2**32))
            spread = noise.normal(0, rng.uniform(3, 12), picture.shape)
            picture = np.asarray(255 - (255 - picture) * contrast + spread, np.float32)
        out.append(np.clip(picture, 0, 255).astype(np.uint8))
    return out


def _document_lines(seed: int, index: int, out_dir: str) -> int:
    """Render one document, save its line images and return how many were saved."""
    from kiosk.reader.reader import line_images
    from tools.render import render_set

    case = next(render_set(seed, 1, levels=TRAIN_LEVELS, start=index))
    truth: list[str] = list(case.truth["lines"])
    rng = random.Random(f"train-tesseract:{seed}:{index}")
    saved = 0
    for reading in line_images(case.image):
        if len(reading) != len(truth):
            continue
        for ln, (image, text) in enumerate(zip(reading, truth, strict=True)):
            for variant, picture in enumerate(_variants(image, rng)):
                stem = Path(out_dir) / f"{index:05d}-{ln}-{variant}"
                cv2.imwrite(f"{stem}.png", picture)
                Path(f"{stem}.gt.txt").write_text(text + "\n", encoding="utf-8")
                saved += 1
        break
    return saved


def make_lines(work: Path, documents: int, jobs: int) -> list[Path]:
    lines_dir = work / "lines"
    done = lines_dir / "done.json"
    if done.is_file():
        return sorted(lines_dir.glob("[0-9]*.png"))
    lines_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        counts = list(
            pool.map(
                _document_lines,
                [TRAIN_SEED] * documents,
                range(documents),
                [str(lines_dir)] * documents,
                chunksize=8,
            )
        )
    skipped = sum(1 for c in counts if c == 0)
    done.write_text(json.dumps({"documents": documents, "skipped": skipped}) + "\n")
    logger.info(
        "line images: %d from %d documents (%d skipped) in %.0f s",
        sum(counts),
        documents,
        skipped,
        time.monotonic() - started,
    )
    return sorted(lines_dir.glob("[0-9]*.png"))


def _line_chunks(png_name: str) -> int:
    """Cut one unaltered line image into pieces of 5 to 14 characters, save
    each piece with one altered copy and return how many images were saved.

    `line_image` cuts from 1.5 pitches before the first character to 1.5
    after the last and adds 8 px on each side, so the pitch follows from the
    width, and the cuts fall midway between characters.
    """
    png = Path(png_name)
    text = png.with_name(png.stem + ".gt.txt").read_text("utf-8").strip()
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    if image is None or not text:
        return 0
    width = image.shape[1]
    pitch = (width - 16) / (len(text) + 2)
    rng = random.Random(f"train-tesseract-chunks:{png.stem}")
    saved, start, piece = 0, 0, 0
    while start < len(text):
        end = min(start + rng.randint(5, 14), len(text))
        x0 = 0 if start == 0 else round(8 + (start + 1) * pitch)
        x1 = width if end == len(text) else round(8 + (end + 1) * pitch)
        chunk = np.ascontiguousarray(image[:, x0:x1], dtype=np.uint8)
        # A piece's ends lie between characters: trimming them would cut glyphs.
        altered = rng.choice(_variants(chunk, rng, trim_sides=False)[1:])
        for variant, picture in enumerate((chunk, altered)):
            stem = png.with_name(f"c{png.stem}-{piece}-{variant}")
            cv2.imwrite(f"{stem}.png", picture)
            Path(f"{stem}.gt.txt").write_text(text[start:end] + "\n", "utf-8")
            saved += 1
        start, piece = end, piece + 1
    return saved


def make_chunks(work: Path, jobs: int) -> list[Path]:
    """Cut every unaltered line into short pieces and return their images.

    Trained from scratch on whole MRZ lines alone, the network read every
    line as "V<<<<..." for over 4,000 iterations. Long runs of fillers make it
    hard to learn where characters are.
    """
    lines_dir = work / "lines"
    done = lines_dir / "chunks.json"
    if not done.is_file():
        bases = sorted(str(p) for p in lines_dir.glob("[0-9]*-0.png"))
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            counts = list(pool.map(_line_chunks, bases, chunksize=32))
        done.write_text(json.dumps({"lines": len(bases), "chunks": sum(counts)}) + "\n")
        logger.info("chunk images: %d from %d lines", sum(counts), len(bases))
    return sorted(lines_dir.glob("c*.png"))


def write_box(png: Path) -> Path:
    """Write the line-level box file for one line image and its text."""
    line = png.with_name(png.stem + ".gt.txt").read_text("utf-8").strip()
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise TrainingError(f"lstmf: cannot read {png}: delete the work directory")
    h, w = image.shape
    rows = [f"{char} 0 0 {w} {h} 0" for char in line]
    rows.append(f"\t 0 0 {w} {h} 0")
    box = png.with_suffix(".box")
    box.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return box


def _lstmf(png_name: str) -> str:
    png = Path(png_name)
    write_box(png)
    out = png.with_suffix("")
    if not out.with_suffix(".lstmf").is_file():
        _run(
            ["tesseract", str(png), str(out), "--psm", "13", "lstm.train"],
            "lstmf",
        )
    return str(out.with_suffix(".lstmf"))


def make_lstmf(pngs: list[Path], jobs: int) -> list[Path]:
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        written = [Path(p) for p in pool.map(_lstmf, map(str, pngs), chunksize=32)]
    present = [p for p in written if p.is_file()]
    logger.info(
        "lstmf samples: %d of %d in %.0f s",
        len(present),
        len(pngs),
        time.monotonic() - started,
    )
    return present


def make_starter(work: Path) -> Path:
    """Build the unicharset and the starter traineddata; return its path."""
    starter = work / "starter" / "mrz" / "mrz.traineddata"
    if starter.is_file():
        return starter

    # The character set, from the box files.
    boxes = sorted(str(p) for p in (work / "lines").glob("*.box"))
    unicharset = work / "unicharset"
    _run(
        [
            "unicharset_extractor",
            "--output_unicharset",
            str(unicharset),
            "--norm_mode",
            "1",
            *boxes,
        ],
        "starter",
    )

    script_dir = work / "script"
    script_dir.mkdir(exist_ok=True)
    # combine_lang_model insists on a radical table. Latin script has no
    # radicals, so a table containing only a comment is enough.
    (script_dir / "radical-stroke.txt").write_text("# no radicals in OCR-B\n")
    (work / "starter").mkdir(exist_ok=True)
    _run(
        [
            "combine_lang_model",
            "--input_unicharset",
            str(unicharset),
            "--script_dir",
            str(script_dir),
            "--output_dir",
            str(work / "starter"),
            "--lang",
            "mrz",
        ],
        "starter",
    )
    if not starter.is_file():
        raise TrainingError(f"starter: combine_lang_model wrote no {starter}")
    return starter


def _unicharset_size(work: Path) -> int:
    """Return the number of entries in the unicharset, from its first line."""
    first = (work / "unicharset").read_text("utf-8").splitlines()[0]
    return int(first)


def train(work: Path, starter: Path, samples: list[Path], iterations: int) -> Path:
    """Run lstmtraining on 90 % of the samples, from its last checkpoint if
    there is one; return the checkpoint path."""
    # A fixed split: 10 % of the samples for evaluation.
    rng = random.Random(TRAIN_SEED)
    shuffled = sorted(p.resolve() for p in samples)
    rng.shuffle(shuffled)
    cut = max(len(shuffled) // 10, 1)
    (work / "eval.list").write_text("".join(f"{p}\n" for p in shuffled[:cut]))
    (work / "train.list").write_text("".join(f"{p}\n" for p in shuffled[cut:]))

    checkpoints = work / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    args = [
        "lstmtraining",
        "--traineddata",
        str(starter),
        "--model_output",
        str(checkpoints / "mrz"),
        "--train_listfile",
        str(work / "train.list"),
        "--eval_listfile",
        str(work / "eval.list"),
        "--max_iterations",
        str(iterations),
        "--learning_rate",
        "0.002",
        "--target_error_rate",
        "0.001",
    ]
    checkpoint = checkpoints / "mrz_checkpoint"
    if checkpoint.is_file():
        args += ["--continue_from", str(checkpoint)]
    else:
        args += ["--net_spec", NET_SPEC.format(size=_unicharset_size(work))]

    started = time.monotonic()
    log_path = work / "train.log"
    # lstmtraining reports its error rates as it goes. Follow them with
    # `tail -f` on the log.
    with log_path.open("w", encoding="utf-8") as log_file:
        code = subprocess.run(
            args, stdout=log_file, stderr=subprocess.STDOUT
        ).returncode
    if code != 0:
        tail = log_path.read_text("utf-8").strip().splitlines()[-5:]
        raise TrainingError(
            f"train: lstmtraining exited with {code}: " + " | ".join(tail)
        )
    logger.info("lstmtraining finished in %.0f s", time.monotonic() - started)
    return checkpoint


def finish(work: Path, starter: Path, checkpoint: Path, target: Path) -> None:
    model = work / "mrz.traineddata"
    _run(
        [
            "lstmtraining",
            "--stop_training",
            # The integer ("fast") form reads about a quarter faster, at
            # about the same error on the evaluation lines.
            "--convert_to_int",
            "--continue_from",
            str(checkpoint),
            "--traineddata",
            str(starter),
            "--model_output",
            str(model),
        ],
        "finish",
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, target)
    logger.info("wrote %s (%d bytes)", target, target.stat().st_size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.train_tesseract",
        description="Train the Tesseract MRZ model from rendered, damaged documents.",
    )
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--iterations", type=int, default=40000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("build/train-tesseract"),
        help="work directory; a later run reuses the stages it finds there",
    )
    parser.add_argument("--output", type=Path, default=tesseract.model_path())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        print(
            f"missing programs: {', '.join(missing)}; install tesseract-ocr "
            "and fonts-ocr-b (make system-deps)",
            file=sys.stderr,
        )
        return 2
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    try:
        pngs = make_lines(work, args.documents, args.jobs)
        pngs += make_chunks(work, args.jobs)
        samples = make_lstmf(pngs, args.jobs)
        starter = make_starter(work)
        checkpoint = train(work, starter, samples, args.iterations)
        finish(work, starter, checkpoint, args.output)
    except TrainingError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
