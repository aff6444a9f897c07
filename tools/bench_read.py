"""Benchmark MRZ reading: the kiosk reader against PassportEye on the same images.

    python -m tools.bench_read [--count 200] [--seed 1] [--shared-dir DIR]

Renders a seeded set of invented documents of every format with camera damage
(tools.render.render_set), encodes each once as the camera's JPEG, and gives
the same bytes to `kiosk.reader.read_image` (after decoding) and to
`passporteye.read_mrz`. Both are timed from the encoded bytes, so decoding is
part of both timings. Then does the same on the specimen photos in
`--shared-dir`/specimens when that folder exists. Prints Markdown tables and
writes them, with the machine and the command, to docs/benchmarks-read.md.

The process pins itself to one CPU (as `taskset -c` would) and limits
OpenMP and BLAS to one thread, because the speed target is per core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from kiosk import mrz
from kiosk.errors import KioskError
from tools.render import RenderError, encode_case, render_set

logger = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_SHARED_DIR: Final = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUTPUT: Final = REPO_ROOT / "docs" / "benchmarks-read.md"
KIOSK_NAME: Final = "kiosk reader"
BASELINE_NAME: Final = "PassportEye"
# Set in the re-executed, pinned process so it does not pin and re-execute again.
PINNED_ENV: Final = "KIOSK_BENCH_PINNED"
PROGRESS_EVERY: Final = 25
ORIENTATIONS: Final = (
    "upright",
    "sideways, turned clockwise",
    "upside down",
    "sideways, turned anticlockwise",
)
THREAD_ENV: Final = (
    "OMP_THREAD_LIMIT",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Reading of one image by one reader."""

    lines: tuple[str, ...] | None
    accepted: bool
    document_number: str | None
    seconds: float
    error: str | None = None
    rejection: str | None = None
    # Which recogniser gave an accepted reading (kiosk reader only).
    recogniser: str = ""


@dataclass(slots=True)
class Score:
    """Running totals of one reader over one image set."""

    images: int = 0
    exact: int = 0
    number_ok: int = 0
    accepted: int = 0
    silent: int = 0
    rejected: int = 0
    errors: int = 0
    # Accepted readings that needed Tesseract's lines.
    tesseract: int = 0
    seconds: list[float] = field(default_factory=list)
    # Per grouping ("format", "damage", "orientation") and value: [exact, total].
    exact_by_group: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def add(
        self,
        outcome: Outcome,
        lines: Sequence[str],
        number: str | None,
        groups: dict[str, str],
    ) -> bool:
        """Count `outcome` against the true `lines`; return whether it was exact."""
        exact = outcome.lines is not None and list(outcome.lines) == list(lines)
        self.images += 1
        self.exact += exact
        self.number_ok += number is not None and outcome.document_number == number
        self.accepted += outcome.accepted
        # A reading that passes its checks but differs from the document is
        # the dangerous case: it would be looked up without any warning.
        self.silent += outcome.accepted and not exact
        self.rejected += not outcome.accepted
        self.errors += outcome.error is not None
        self.tesseract += outcome.accepted and "tesseract" in outcome.recogniser
        self.seconds.append(outcome.seconds)
        for grouping, value in groups.items():
            counts = self.exact_by_group.setdefault(grouping, {}).setdefault(
                value, [0, 0]
            )
            counts[0] += exact
            counts[1] += 1
        return exact

    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    def p90(self) -> float:
        if len(self.seconds) < 2:
            return self.median()
        return statistics.quantiles(self.seconds, n=10, method="inclusive")[-1]


Reader = Callable[[bytes], Outcome]


# --------------------------------------------------------------------------
# Readers


def _clean_number(number: str | None) -> str | None:
    if number is None:
        return None
    cleaned = number.replace("<", "")
    return cleaned or None


def _number_from_lines(lines: Sequence[str] | None) -> str | None:
    if not lines:
        return None
    try:
        return _clean_number(mrz.parse(list(lines)).document_number)
    except KioskError:
        return None


def kiosk_reader() -> Reader | str:
    """Return the kiosk reader, or the reason it cannot be imported."""
    try:
        from kiosk.reader import read_image
    except ImportError as exc:
        return f"reader not available ({exc})"

    def run(data: bytes) -> Outcome:
        started = time.perf_counter()
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise RenderError("the benchmark image could not be decoded")
        result = read_image(np.asarray(decoded, dtype=np.uint8))
        seconds = time.perf_counter() - started
        lines = tuple(result.text) if result.text else None
        number = None
        if result.report is not None:
            number = _clean_number(result.report.document_number)
        elif lines is not None:
            number = _number_from_lines(lines)
        return Outcome(
            lines,
            bool(result.ok),
            number,
            seconds,
            None,
            result.rejection,
            result.recogniser,
        )

    return run


def passporteye_reader() -> Reader | str:
    """Return PassportEye's `read_mrz` as a reader, or why it is unavailable."""
    try:
        from passporteye import read_mrz
    except ImportError as exc:
        return f"PassportEye not available ({exc}): pip install 'passporteye>=2.2.2'"

    def run(data: bytes) -> Outcome:
        started = time.perf_counter()
        with warnings.catch_warnings():
            # PassportEye 2.2.2 calls scikit-image 0.26 APIs that emit
            # FutureWarning (the `plugin` parameter, `square`).
            warnings.simplefilter("ignore")
            result = read_mrz(io.BytesIO(data))
        seconds = time.perf_counter() - started
        if result is None:
            return Outcome(None, False, None, seconds, None, "MRZ not found")
        lines = tuple(str(result.aux.get("text", "")).split("\n"))
        number = _number_from_lines(lines) or _clean_number(str(result.number))
        return Outcome(lines, bool(result.valid), number, seconds)

    return run


def _run_guarded(name: str, reader: Reader, data: bytes, image_id: str) -> Outcome:
    started = time.perf_counter()
    try:
        return reader(data)
    except Exception as exc:
        # A crash is a result to count, not a reason to stop the benchmark.
        logger.warning("%s failed on image %s: %s", name, image_id, type(exc).__name__)
        seconds = time.perf_counter() - started
        return Outcome(None, False, None, seconds, type(exc).__name__)


# --------------------------------------------------------------------------
# Image sets


@dataclass(frozen=True, slots=True)
class Sample:
    """One image to read: encoded bytes and the truth to compare with."""

    image_id: str
    data: bytes
    lines: tuple[str, ...]
    document_number: str | None
    groups: dict[str, str]


def rendered_samples(seed: int, count: int) -> Iterable[Sample]:
    """Yield the rendered set, each image encoded once as the camera's JPEG."""
    for case in render_set(seed, count, apply_jpeg=False):
        yield Sample(
            case.name,
            encode_case(case),
            tuple(case.truth["lines"]),
            case.truth["document_number"],
            {
                "format": case.truth["format"],
                "damage": case.truth["level"],
                "orientation": ORIENTATIONS[case.truth["damage"]["quarter_turns"]],
            },
        )


def specimen_samples(specimen_dir: Path) -> list[Sample]:
    """Load the specimen photos listed in `specimen_dir`/truth.json."""
    truth = json.loads((specimen_dir / "truth.json").read_text(encoding="utf-8"))
    samples = []
    for name in sorted(truth):
        lines = tuple(truth[name]["lines"])
        samples.append(
            Sample(
                name,
                (specimen_dir / name).read_bytes(),
                lines,
                _number_from_lines(lines),
                {"format": str(truth[name].get("format", "?"))},
            )
        )
    return samples


def run_set(
    samples: Iterable[Sample],
    readers: dict[str, Reader],
    *,
    deadline: float | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Score]:
    """Run every reader on every sample; stop early once `deadline` passes."""
    scores = {name: Score() for name in readers}
    for sample in samples:
        if deadline is not None and time.monotonic() > deadline:
            logger.info("time limit reached after %d images", scores_images(scores))
            break
        # Every document here is invented or a public specimen, so the
        # details file may contain the MRZ text.
        row: dict[str, Any] = {
            "image": sample.image_id,
            **sample.groups,
            "truth": list(sample.lines),
        }
        for name, reader in readers.items():
            outcome = _run_guarded(name, reader, sample.data, sample.image_id)
            exact = scores[name].add(
                outcome, sample.lines, sample.document_number, sample.groups
            )
            row[name] = {
                "exact": exact,
                "lines": list(outcome.lines) if outcome.lines else None,
                "accepted": outcome.accepted,
                "seconds": round(outcome.seconds, 4),
                "rejection": outcome.rejection,
                "error": outcome.error,
            }
        if details is not None:
            details.append(row)
        done = scores_images(scores)
        if done % PROGRESS_EVERY == 0:
            logger.info("read %d images", done)
    return scores


def scores_images(scores: dict[str, Score]) -> int:
    return max((score.images for score in scores.values()), default=0)


# --------------------------------------------------------------------------
# Report


def _percent(part: int, whole: int) -> str:
    if whole == 0:
        return "-"
    return f"{100.0 * part / whole:.1f} %"


def format_table(
    scores: dict[str, Score], unavailable: dict[str, str], baseline: str = BASELINE_NAME
) -> str:
    """Format the main results table as Markdown."""
    header = (
        "| reader | images | exact MRZ | document number | accepted | "
        "accepted with Tesseract | silent misreads | rejections | errors | "
        f"median s | p90 s | speed vs {baseline} |"
    )
    rows = [header, "|" + " --- |" * 12]
    base = scores.get(baseline)
    for name, score in scores.items():
        if base is not None and base.seconds and score.seconds and name != baseline:
            speed = f"{base.median() / score.median():.1f}x faster"
        else:
            speed = "-"
        rows.append(
            f"| {name} | {score.images} | {_percent(score.exact, score.images)} | "
            f"{_percent(score.number_ok, score.images)} | "
            f"{_percent(score.accepted, score.images)} | "
            f"{score.tesseract if name != baseline else '-'} | {score.silent} | "
            f"{score.rejected} | {score.errors} | {score.median():.3f} | "
            f"{score.p90():.3f} | {speed} |"
        )
    for name, reason in unavailable.items():
        rows.append(f"| {name} | {reason} |" + " - |" * 10)
    return "\n".join(rows)


def format_groups(scores: dict[str, Score], grouping: str) -> str:
    """Format exact-MRZ counts per value of `grouping` as a Markdown table."""
    names = list(scores)
    values = sorted(
        {
            value
            for score in scores.values()
            for value in score.exact_by_group.get(grouping, {})
        }
    )
    rows = [
        f"| {grouping} | " + " | ".join(names) + " |",
        "|" + " --- |" * (len(names) + 1),
    ]
    for value in values:
        cells = []
        for name in names:
            counts = scores[name].exact_by_group.get(grouping, {})
            exact, total = counts.get(value, [0, 0])
            cells.append(f"{exact}/{total}")
        rows.append(f"| {value} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_misreads(details: Sequence[dict[str, Any]], seed: int | None) -> str:
    """List the kiosk reader's accepted but wrong readings, line by line.

    Only the lines that differ are shown. Every document is invented or a
    public specimen, so the MRZ text may appear here. With a `seed`, each
    entry ends with the command that renders that one image again.
    """
    blocks = []
    for row in details:
        outcome = row.get(KIOSK_NAME)
        if not outcome or not outcome["accepted"] or outcome["exact"]:
            continue
        read = outcome["lines"] or []
        text = [row["image"]]
        for number, truth_line in enumerate(row["truth"]):
            read_line = read[number] if number < len(read) else ""
            if read_line != truth_line:
                text += [f"  truth {truth_line}", f"  read  {read_line}"]
        if seed is not None:
            index = int(str(row["image"]).split("-")[1])
            text.append(
                f"  render: python -m tools.render DIR --seed {seed} "
                f"--start {index} --count 1"
            )
        blocks.append("```\n" + "\n".join(text) + "\n```")
    return "\n\n".join(blocks)


def _first_line(command: Sequence[str]) -> str:
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    output = (completed.stdout or completed.stderr).strip().splitlines()
    return output[0] if output else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def machine_description(load_at_start: str) -> list[str]:
    """Describe the machine, its load and the software versions, one per line."""
    if hasattr(os, "sched_getaffinity"):
        cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    else:
        cpus = "any (affinity not supported)"
    commit = _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    changed = _first_line(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "kiosk", "tools"]
    )
    if changed not in ("unknown", "not found"):
        commit += " with uncommitted changes in kiosk/ or tools/"
    return [
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"benchmark ran on CPU {cpus}",
        f"Load average (1 / 5 / 15 min) at start {load_at_start}, at end "
        f"{_load_average()}; other processes may share the machine",
        f"OS: {platform.platform()}",
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"OpenCV {cv2.__version__}, PassportEye {_package_version('passporteye')}",
        f"Tesseract: {_first_line(['tesseract', '--version'])}",
        f"Repository commit: {commit}",
    ]


def write_report(
    path: Path,
    command: str,
    sections: list[tuple[str, str]],
    machine: list[str],
) -> None:
    """Write the benchmark page: command, machine, tables and definitions."""
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# MRZ reading benchmark",
        "",
        "The kiosk reader (`kiosk.reader.read_image`) and PassportEye "
        "(`passporteye.read_mrz`) read the same encoded images in the same run. "
        "The rendered set consists of invented documents of every format drawn "
        "by `tools/render.py` with seeded camera damage (placement in a cluttered "
        "frame, skew, 90/180/270 degree turns, perspective, defocus and motion "
        "blur, uneven light, glare, sensor noise, JPEG, MRZ glyphs 15 to 34 px "
        "high).",
        "",
        f"Run on {today} with:",
        "",
        "```",
        command,
        "```",
        "",
        "Machine:",
        "",
        *[f"- {line}" for line in machine],
        "",
    ]
    for title, body in sections:
        parts += [f"## {title}", "", body, ""]
    parts += [
        "## Definitions",
        "",
        "- exact MRZ: every character of every line equals the truth.",
        "- document number: the number parsed from the reading (the full TD1 or "
        "TD2 number with its overflow) equals the true one.",
        "- accepted: the reader reported the reading as valid (kiosk: "
        "`ReadResult.ok`; PassportEye: `MRZ.valid`).",
        "- accepted with Tesseract: accepted readings that passed their checks "
        "only once Tesseract's reading of the lines was blended in.",
        "- silent misreads: accepted but not exact; these are the readings "
        "that would be looked up without a warning.",
        "- rejections: not accepted (not found, checks failed, ambiguous).",
        "- errors: the reader raised an exception (counted as rejections too).",
        "- time: wall time per image from the encoded bytes, decoding included, "
        "on one CPU.",
        "",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")


# --------------------------------------------------------------------------
# Entry point


def _pin_to_one_cpu(argv: Sequence[str]) -> None:
    """Re-execute this benchmark on the first allowed CPU with one thread each
    for OpenMP and BLAS; return without doing anything when already pinned."""
    if os.environ.get(PINNED_ENV) == "1" or not hasattr(os, "sched_setaffinity"):
        return
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    env = dict(os.environ)
    env[PINNED_ENV] = "1"
    for name in THREAD_ENV:
        env[name] = "1"
    command = [sys.executable, "-m", "tools.bench_read", *argv]
    logger.info("re-running pinned to CPU %d", cpu)
    sys.stdout.flush()
    os.execve(sys.executable, command, env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_read",
        description="Compare the kiosk MRZ reader with PassportEye on rendered "
        "documents and on specimen photos.",
    )
    parser.add_argument(
        "--count", type=int, default=200, help="rendered images (default: 200)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the rendered set (default: 1)"
    )
    parser.add_argument(
        "--shared-dir",
        type=Path,
        default=DEFAULT_SHARED_DIR,
        help="folder with specimens/truth.json; skipped with a note when absent "
        "(default: ../shared/data next to the repository)",
    )
    parser.add_argument(
        "--limit-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop starting new rendered images after this many seconds",
    )
    parser.add_argument(
        "--no-passporteye",
        action="store_true",
        help="skip the PassportEye baseline, the slowest part of the run",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="Markdown page to write (default: docs/benchmarks-read.md); "
        "'-' writes nothing",
    )
    parser.add_argument(
        "--details",
        type=Path,
        default=None,
        help="also write per-image results as JSON to this file",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the benchmark to one CPU",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_list)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.count < 1:
        print(f"error: --count must be at least 1, got {args.count}", file=sys.stderr)
        return 2
    if not args.no_pin and argv is None:
        _pin_to_one_cpu(args_list)
    cv2.setNumThreads(1)

    readers: dict[str, Reader] = {}
    unavailable: dict[str, str] = {}
    candidates = [(KIOSK_NAME, kiosk_reader())]
    if not args.no_passporteye:
        candidates.append((BASELINE_NAME, passporteye_reader()))
    for name, reader in candidates:
        if isinstance(reader, str):
            unavailable[name] = reader
        else:
            readers[name] = reader

    deadline = None
    if args.limit_time is not None:
        deadline = time.monotonic() + args.limit_time
    details: list[dict[str, Any]] = []
    specimen_details: list[dict[str, Any]] = []
    started = time.monotonic()
    load_at_start = _load_average()
    logger.info(
        "benchmark started: %d rendered images, seed %d, readers %s",
        args.count,
        args.seed,
        ", ".join(readers) or "none",
    )
    try:
        rendered = run_set(
            rendered_samples(args.seed, args.count),
            readers,
            deadline=deadline,
            details=details,
        )
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sections = [
        (
            f"Rendered documents (seed {args.seed})",
            format_table(rendered, unavailable),
        ),
        ("Exact MRZ per format, rendered set", format_groups(rendered, "format")),
        ("Exact MRZ per damage level, rendered set", format_groups(rendered, "damage")),
        (
            "Exact MRZ per orientation, rendered set",
            format_groups(rendered, "orientation"),
        ),
    ]

    specimen_dir = args.shared_dir / "specimens"
    if (specimen_dir / "truth.json").is_file():
        specimens = run_set(
            specimen_samples(specimen_dir), readers, details=specimen_details
        )
        sections.append(("Specimen photos", format_table(specimens, unavailable)))
    else:
        note = f"Skipped: {specimen_dir}/truth.json not found."
        sections.append(("Specimen photos", note))
    logger.info("benchmark done in %.0f s", time.monotonic() - started)
    if KIOSK_NAME in readers:
        parts = [
            format_misreads(details, args.seed),
            format_misreads(specimen_details, None),
        ]
        misreads = "\n\n".join(part for part in parts if part) or "None."
        sections.append((f"Silent misreads of the {KIOSK_NAME}", misreads))

    for title, body in sections:
        print(f"\n## {title}\n\n{body}")
    command = "python -m tools.bench_read " + shlex.join(args_list)
    machine = machine_description(load_at_start)
    if str(args.output) != "-":
        write_report(args.output, command.strip(), sections, machine)
        print(f"\nwrote {args.output}")
    if args.details is not None:
        everything = details + specimen_details
        args.details.write_text(
            json.dumps(everything, indent=1) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
