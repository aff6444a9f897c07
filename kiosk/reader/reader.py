"""Read the MRZ of a travel document from a camera frame or an image file.

Stages: locate candidate bands, resample each band upright both ways round,
cut its lines into fixed-pitch cells, classify every cell with the OCR-B
glyph network, keep the most confident reading, then let `kiosk.mrz.repair`
apply the field grammar and check digits. Tesseract is a second recogniser
for readings that the glyph network cannot make pass their check digits.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from kiosk.errors import ImageError, MRZError, ReaderError
from kiosk.mrz import (
    LAYOUTS,
    MrzReport,
    RepairOutcome,
    RepairStatus,
    detect_format,
    repair,
)
from kiosk.mrz.formats import ALLOWED, CharClass, Layout
from kiosk.reader import tesseract
from kiosk.reader.glyphs import (
    ALPHABET,
    FloatArray,
    LineGeometry,
    cut_cells,
    default_model,
)
from kiosk.reader.locate import Band, find_bands
from kiosk.reader.segment import (
    TARGET_CAP,
    BandImage,
    LineSpan,
    extract_band,
    find_lines,
    grid_for,
    plausible_counts,
    rectify,
    refine_skew,
)

log = logging.getLogger(__name__)

Candidate = tuple[str, float]
Alternatives = list[list[list[Candidate]]]

# Frames larger than this are scaled down before anything else. A 12000 x
# 12000 colour photo takes 432 MB, and every later stage would copy it.
MAX_PIXELS = 24_000_000
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_DECODE_PIXELS = 400_000_000
# At most this many alternatives per position, each at least this likely.
TOP_K = 4
MIN_P = 0.005
# A character outside the check digits' reach below this probability makes
# the whole reading doubtful, because nothing else would catch its misreading.
DOUBT_P = 0.5
# OCR-B's O and 0 differ only in width, which printers do not keep. Where a
# field allows just one of them, the other's probability counts for it.
_TWINS = {"O": "0", "0": "O"}
TWIN_P = 0.9
# NOTE: 0.85 is tuned on about 300 rendered images: it caught the one
# cancelling misread seen there and flags about 0.5 % of correct readings.
WEAK_P = 0.85
# Readings whose mean top probability is below this are not an MRZ at all.
MIN_MEAN_P = 0.45
MAX_BANDS = 3
# Mean log probability of a reading confident enough to end the search.
CONFIDENT = math.log(0.9)
# Readings, best first, that are repaired before giving up.
MAX_TRIES = 4
# Share of Tesseract's character in a blended alternative list (times its
# confidence): first as the second opinion, then as the lead.
TESSERACT_WEIGHT = 0.4
TESSERACT_LEAD_WEIGHT = 0.8
# A glyph at least this likely may not be contradicted by Tesseract.
SURE_P = 0.9

# How much more confidently (mean log probability) a line must read with
# its grid moved one pitch before _realign moves it.
REALIGN_MARGIN = 0.01
# Below BLURRED_SHARPNESS (see _sharpness) a failed reading is put down to
# blur. Below SOFT_SHARPNESS the width that sets OCR-B's O apart from 0 is gone:
# a visa blurred to 1.04 read its number's two zeros as O, each at 0.99.
# Of 60 rendered benchmark images, one heavily damaged one was that soft.
BLURRED_SHARPNESS = 0.9
# A cell whose paper (90th percentile of grey) is below COVERED times the
# median paper level of the COVER_WINDOW cells around it is covered.
# Fingers in a break test left 0.36 to 0.48 of the line's level. Uneven
# light in a rendered visa fell to 0.54 of it along the line, but by
# about 0.05 a cell.
COVERED = 0.6
COVER_WINDOW = 15
SOFT_SHARPNESS = 1.5
TWIN_FLOOR = 0.05
REJECT_NOT_FOUND = "MRZ not found"
REJECT_BLURRED = "MRZ too blurred"
REJECT_CUT_OFF = "MRZ cut off at the edge"
REJECT_CHECKS = "MRZ check digits do not match: rescan or inspect the document"
LINE_NAMES = {2: ("top", "bottom"), 3: ("top", "middle", "bottom")}


@dataclass
class ReadResult:
    """Everything the reader found in one image.

    `lines` are the raw best characters of the recogniser, `alternatives`
    their per-position candidates (char, probability) sorted best first, and
    `repaired_lines`/`report` what the check-digit repair made of them.
    `box` is the MRZ quadrilateral in frame pixels, clockwise from the
    top-left of the upright MRZ; `rotation` is how far the document is turned
    clockwise in the frame, in degrees. `rejection` is an officer-readable
    reason when nothing trustworthy was read.
    """

    lines: tuple[str, ...] = ()
    alternatives: Alternatives = field(default_factory=list)
    repaired_lines: tuple[str, ...] | None = None
    report: MrzReport | None = None
    repair: RepairOutcome | None = None
    box: tuple[tuple[float, float], ...] = ()
    rotation: float = 0.0
    confidence: float = 0.0
    recogniser: str = "glyphs"
    timings: dict[str, float] = field(default_factory=dict)
    rejection: str | None = None
    # (line, position) pairs outside every check digit's reach whose final
    # character the recogniser gave less than DOUBT_P.
    doubtful: tuple[tuple[int, int], ...] = ()

    @property
    def ok(self) -> bool:
        """True when the repaired reading passed every check and can be looked up."""
        return (
            self.rejection is None
            and not self.doubtful
            and self.repair is not None
            and self.repair.ok
        )

    @property
    def text(self) -> tuple[str, ...]:
        """The best text: repaired lines when there are any, else the raw lines."""
        return self.repaired_lines if self.repaired_lines else self.lines


@dataclass
class _Reading:
    band: Band
    turn: float
    image: BandImage
    spans: list[LineSpan]
    geometries: list[LineGeometry]
    probs: list[FloatArray]
    score: float

    def alternatives(self) -> Alternatives:
        out: Alternatives = []
        for p in self.probs:
            line = []
            for row in p:
                order = np.argsort(-row)[:TOP_K]
                cands = [(ALPHABET[k], float(row[k])) for k in order if row[k] >= MIN_P]
                line.append(cands or [(ALPHABET[int(order[0])], float(row[order[0]]))])
            out.append(line)
        return out

    def best_lines(self) -> tuple[str, ...]:
        return tuple("".join(ALPHABET[k] for k in p.argmax(axis=1)) for p in self.probs)


def read_file(path: str | Path) -> ReadResult:
    """Read the MRZ in an image file (JPEG, PNG, TIFF, BMP, WebP...).

    NOTE: PDF files are not rendered; they raise ImageError like any other
    file that is not an image.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot open image {path.name}: {exc.strerror}") from exc
    if size == 0:
        raise ImageError(f"image file {path.name} is empty: scan the document again")
    if size > MAX_FILE_BYTES:
        raise ImageError(
            f"image file {path.name} is {size // 2**20} MB, over the "
            f"{MAX_FILE_BYTES // 2**20} MB limit: send a smaller image"
        )
    data = np.fromfile(path, dtype=np.uint8)
    image = _decode(data, path.name)
    return read_image(image)


def _decode(data: npt.NDArray[np.uint8], name: str) -> npt.NDArray[np.uint8]:
    """Decode file bytes to grey, reading only the header first so that a small
    file claiming a huge image cannot exhaust memory."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.tobytes())) as header:
                width, height = header.size
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image file {name} is too large to decode safely: send a smaller image"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(
            f"image file {name} is not a readable image (corrupt, truncated or "
            "another file type): scan the document again"
        ) from exc
    if width * height == 0:
        raise ImageError(f"image file {name} has no pixels ({width} x {height})")
    if width * height > MAX_DECODE_PIXELS:
        raise ImageError(
            f"image file {name} is {width} x {height} pixels, over the limit of "
            f"{MAX_DECODE_PIXELS // 10**6} megapixels: send a smaller image"
        )
    flags = cv2.IMREAD_GRAYSCALE
    # JPEG decodes at a reduced size directly, which saves time and memory.
    for factor, reduced in (
        (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
        (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
        (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    ):
        if width * height / factor**2 >= MAX_PIXELS:
            flags = reduced
            break
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:
        raise ImageError(f"image file {name} cannot be decoded: {exc.err}") from exc
    if image is None or image.size == 0:
        raise ImageError(
            f"image file {name} is not a readable image (corrupt, truncated or "
            "another file type): scan the document again"
        )
    return np.asarray(image, dtype=np.uint8)


def to_gray(image: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """Validate a frame and return it as 8-bit grey, scaled down if enormous."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy image array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageError(
            f"image has shape {image.shape}: expected H x W grey or H x W x 3/4 colour"
        )
    h, w = image.shape[:2]
    if h < 16 or w < 16:
        raise ImageError(f"image is {w} x {h} pixels, too small to hold an MRZ")
    pixels: npt.NDArray[np.uint8]
    if image.dtype == np.uint16:
        pixels = (image.astype(np.uint16) >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        values = image.astype(np.float64)
        values *= 255.0 if values.max() <= 1.0 else 1.0
        pixels = np.clip(values, 0, 255).astype(np.uint8)
    elif image.dtype == np.uint8:
        pixels = image.astype(np.uint8, copy=False)
    else:
        raise ImageError(f"image has pixel type {image.dtype}: expected uint8")
    if h * w > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / (h * w))
        size = (max(int(w * scale), 1), max(int(h * scale), 1))
        log.info("scaling a %d x %d frame down by %.2f", w, h, scale)
        pixels = np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
    if pixels.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        pixels = np.asarray(cv2.cvtColor(pixels, code))
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def read_image(image: npt.NDArray[np.generic]) -> ReadResult:
    """Find and read the MRZ in a BGR or grey frame."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    gray = to_gray(image)
    timings["prepare"] = time.perf_counter() - started

    # A band read confidently upright is not read upside down as well, which
    # cut the median reading time by a quarter on 60 rendered documents. When
    # the check digits then reject every reading, both turns are searched.
    readings, notes, skipped = _search(gray, timings, thorough=False)
    result = _read_from(readings, notes, timings, started, last_try=not skipped)
    if skipped and not result.ok:
        readings, notes, _ = _search(gray, timings, thorough=True)
        result = _read_from(readings, notes, timings, started, last_try=True)
    log.debug(
        "read done: status %s, %.3f s",
        result.repair.status if result.repair else None,
        timings["total"],
    )
    return result


def _read_from(
    readings: list[_Reading],
    notes: set[str],
    timings: dict[str, float],
    started: float,
    *,
    last_try: bool,
) -> ReadResult:
    """Repair the readings, best first, until one can be trusted. On the
    `last_try`, Tesseract gets its turn when the check digits reject them all."""
    plausible = [r for r in readings if r.score >= math.log(MIN_MEAN_P)]

    if not plausible:
        rejection = REJECT_CUT_OFF if REJECT_CUT_OFF in notes else REJECT_NOT_FOUND
        result = ReadResult(timings=timings, rejection=rejection)
        if readings:
            _fill_reading(result, readings[0])
            result.rejection = _diagnose(readings[0]) or rejection
        timings["total"] = time.perf_counter() - started
        return result

    # The most confident reading is usually right, but an upside-down band or
    # a neighbouring print line can score close to it. So the next candidates
    # get their chance when the check digits reject the first.
    mark = time.perf_counter()
    results: list[tuple[ReadResult, _Reading]] = []
    for candidate in plausible[:MAX_TRIES]:
        flat = _reread_flat(candidate)
        result = _finish(flat, flat.alternatives(), timings)
        if result.ok:
            break
        realigned = _realign(flat)
        if realigned is not None:
            again = _finish(realigned, realigned.alternatives(), timings)
            if again.ok:
                result = again
                break
        results.append((result, flat))
    else:
        result, first = results[0]
        timings["repair"] = time.perf_counter() - mark
        if last_try:
            mark = time.perf_counter()
            result = _with_tesseract(first, timings) or result
            timings["tesseract"] = time.perf_counter() - mark
    timings.setdefault("repair", time.perf_counter() - mark)
    timings["total"] = time.perf_counter() - started
    return result


def line_images(
    image: npt.NDArray[np.generic],
) -> list[list[npt.NDArray[np.uint8]]]:
    """Return the line images Tesseract would get from each plausible reading
    of a frame, most confident first, as one list of line images per reading.

    tools/train_tesseract.py trains on these, so the model learns from the
    crops this reader makes.
    """
    readings, _, _ = _search(to_gray(image), {})
    out = []
    for candidate in readings[:MAX_TRIES]:
        if candidate.score < math.log(MIN_MEAN_P):
            break
        flat = _reread_flat(candidate)
        out.append([tesseract.line_image(flat.image.gray, g) for g in flat.geometries])
    return out


def _search(
    gray: npt.NDArray[np.uint8], timings: dict[str, float], *, thorough: bool = True
) -> tuple[list[_Reading], set[str], bool]:
    """Read the candidate bands and return the readings, most confident
    first, with the notes (REJECT_CUT_OFF) gathered on the way.

    Unless `thorough`, a band read confidently one way round is not read the
    other way round. The third value is True when that happened, so a caller
    whose readings all fail can search again thoroughly.
    """
    readings: list[_Reading] = []
    notes: set[str] = set()
    skipped = False
    timings.setdefault("locate", 0.0)
    timings.setdefault("recognise", 0.0)
    # Most documents lie roughly upright or upside down, so the search for
    # sideways lines runs only when no confident reading turned up.
    for sideways in (False, True):
        mark = time.perf_counter()
        bands = find_bands(gray, limit=MAX_BANDS, sideways=sideways)
        timings["locate"] += time.perf_counter() - mark
        mark = time.perf_counter()
        for band in bands:
            for turn in (0.0, 180.0):
                found = _read_band(gray, band, turn, notes)[:2]
                readings += found
                if not thorough and any(r.score > CONFIDENT for r in found):
                    skipped = turn == 0.0
                    break
            if any(r.score > CONFIDENT for r in readings):
                break
        timings["recognise"] += time.perf_counter() - mark
        if any(r.score > CONFIDENT for r in readings):
            break
    readings.sort(key=lambda r: -r.score)
    return readings, notes, skipped


def _with_tesseract(reading: _Reading, timings: dict[str, float]) -> ReadResult | None:
    """Blend Tesseract's reading of each line into the alternatives, repair
    again and return the result only when that makes the reading trustworthy.

    The glyph network leads the first blend. When its grid sits one pitch
    off, every one of its characters is its neighbour's, so a second blend
    lets Tesseract, which places characters itself, lead.
    """
    if not tesseract.available():
        return None
    try:
        lines = tesseract.read_lines(reading.image.gray, reading.geometries)
    except ReaderError as exc:
        log.warning("tesseract failed, keeping the glyph reading: %s", exc)
        return None
    base = reading.alternatives()
    usable = [
        line if line is not None and len(line.chars) == len(base[ln]) else None
        for ln, line in enumerate(lines)
    ]
    if all(line is None for line in usable):
        return None
    for weight in (TESSERACT_WEIGHT, TESSERACT_LEAD_WEIGHT):
        blended = _blend(base, usable, weight)
        result = _finish(reading, blended, timings)
        if result.ok and not _overrules(result.text, base):
            result.recogniser = "glyphs+tesseract"
            return result
    return None


def _overrules(lines: tuple[str, ...], base: Alternatives) -> bool:
    """Return True when a line contradicts a character the glyph network was
    sure of, however the glyph grid is shifted (by up to one pitch either way).

    Tesseract may decide where the glyph network hesitated, or where its grid
    sat one pitch off, but two recognisers that disagree on a clear glyph
    mean a rescan, not a guess.
    """
    for text, glyphs in zip(lines, base, strict=True):
        certain = [cands[0][0] if cands[0][1] >= SURE_P else None for cands in glyphs]
        if all(_contradicts(text, certain, shift) for shift in (0, -1, 1)):
            return True
    return False


def _contradicts(text: str, certain: list[str | None], shift: int) -> bool:
    """Return True when `text` differs from a certain glyph `shift` places on."""
    for i, char in enumerate(text):
        j = i + shift
        if 0 <= j < len(certain) and certain[j] is not None and certain[j] != char:
            return True
    return False


def _blend(
    base: Alternatives, lines: list[tesseract.LineReading | None], weight: float
) -> Alternatives:
    """Give each of Tesseract's characters up to `weight` of its position's
    probability, in proportion to its confidence."""
    out: Alternatives = []
    for ln, line in enumerate(lines):
        if line is None:
            out.append([list(cands) for cands in base[ln]])
            continue
        row = []
        for pos, (char, conf) in enumerate(line.chars):
            share = weight * conf
            mixed = {c: p * (1 - share) for c, p in base[ln][pos]}
            mixed[char] = mixed.get(char, 0.0) + share
            row.append(sorted(mixed.items(), key=lambda item: -item[1])[:TOP_K])
        out.append(row)
    return out


def _merge_twins(alternatives: Alternatives) -> Alternatives:
    """Give O's probability to 0 in digit fields and 0's to O in letter fields.

    The network distinguishes OCR-B's O from 0 by width alone, which printers do not
    keep, so the field's alphabet decides wherever it allows only one.
    """
    read = ["".join(c[0][0] for c in line) for line in alternatives]
    try:
        classes = LAYOUTS[detect_format(read)].char_classes()
    except MRZError:
        return alternatives
    merged: Alternatives = []
    for ln, line in enumerate(alternatives):
        row = []
        for pos, cands in enumerate(line):
            allowed = ALLOWED[classes[ln][pos]] if pos < len(classes[ln]) else set()
            probs: dict[str, float] = {}
            for char, p in cands:
                twin = _TWINS.get(char)
                if char not in allowed and twin is not None and twin in allowed:
                    char = twin
                probs[char] = probs.get(char, 0.0) + p
            row.append(sorted(probs.items(), key=lambda item: -item[1]))
        merged.append(row)
    return merged


def _doubt_twins(alternatives: Alternatives, soft: Callable[[], bool]) -> Alternatives:
    """Give O and 0 at least TWIN_FLOOR of each other's probability where
    a field allows both and the band is `soft`, so that repair finds every
    reading the check digits cannot tell apart and reports it as ambiguous.

    `soft` is called only when such a position exists.
    """
    read = ["".join(c[0][0] for c in line) for line in alternatives]
    try:
        classes = LAYOUTS[detect_format(read)].char_classes()
    except MRZError:
        return alternatives
    places = []
    for ln, line in enumerate(alternatives):
        for pos, cands in enumerate(line):
            twin = _TWINS.get(cands[0][0])
            if twin is None or pos >= len(classes[ln]):
                continue
            if (
                twin in ALLOWED[classes[ln][pos]]
                and dict(cands).get(twin, 0.0) < TWIN_FLOOR
            ):
                places.append((ln, pos))
    if not places or not soft():
        return alternatives
    out: Alternatives = [[list(cands) for cands in line] for line in alternatives]
    for ln, pos in places:
        char = out[ln][pos][0][0]
        probs = dict(out[ln][pos])
        probs[char] -= TWIN_FLOOR
        probs[_TWINS[char]] = probs.get(_TWINS[char], 0.0) + TWIN_FLOOR
        out[ln][pos] = sorted(probs.items(), key=lambda item: -item[1])
    return out


def _covered(reading: _Reading) -> list[tuple[int, int]]:
    """Return the cells whose paper is far darker than the rest of their line.

    A finger or a dark object over a few glyphs leaves cells that the glyph
    networks still read, at up to 0.99, as some character. A break test
    found 17 such misreads in 100 images with a finger over the MRZ, most
    in fields no check digit covers.
    """
    gray = reading.image.gray.astype(np.float32) / 255.0
    covered = []
    for ln, geometry in enumerate(reading.geometries):
        cells = cut_cells(gray, geometry).reshape(geometry.count, -1)
        paper = np.percentile(cells, 90, axis=1)
        # Uneven light darkens a line gradually, so each cell is compared
        # with the median of the COVER_WINDOW cells around it, not with the
        # whole line. A finger spans fewer than half of them.
        count = len(paper)
        window = min(COVER_WINDOW, count)
        for pos in range(count):
            start = min(max(pos - window // 2, 0), count - window)
            level = float(np.median(paper[start : start + window]))
            if paper[pos] < COVERED * level:
                covered.append((ln, pos))
    return covered


def _sharpness(reading: _Reading) -> float:
    """Measure the band's sharpness: the 99th percentile of its horizontal
    ink gradient."""
    gx = cv2.Sobel(reading.image.ink, cv2.CV_32F, 1, 0, ksize=3)
    return float(np.percentile(np.abs(gx), 99))


def _finish(
    best: _Reading, alternatives: Alternatives, timings: dict[str, float]
) -> ReadResult:
    """Repair a reading and decide whether it can be trusted."""
    result = ReadResult(timings=timings)
    _fill_reading(result, best)
    result.lines = tuple("".join(c[0][0] for c in line) for line in alternatives)
    alternatives = _merge_twins(alternatives)
    alternatives = _doubt_twins(alternatives, lambda: _sharpness(best) < SOFT_SHARPNESS)
    result.alternatives = alternatives
    outcome = repair(result.alternatives)
    result.repair = outcome
    result.report = outcome.report
    # A failed repair only forced characters into their fields' alphabets,
    # which the check digits did not confirm, so the raw reading is kept.
    if outcome.status is not RepairStatus.FAILED:
        result.repaired_lines = outcome.lines
    result.confidence = outcome.confidence
    if outcome.ok and outcome.lines is not None:
        covered = _covered(best)
        doubtful = set(_doubtful(outcome.lines, result.alternatives)) | set(covered)
        result.doubtful = tuple(sorted(doubtful))
        if result.doubtful:
            line = (covered or result.doubtful)[0][0]
            names = LINE_NAMES.get(len(outcome.lines), ())
            where = f"the {names[line]} line" if line < len(names) else "a line"
            if covered:
                result.rejection = f"MRZ covered on {where}: uncover it and scan again"
            else:
                result.rejection = _diagnose(best) or f"MRZ unclear on {where}"
            result.confidence = min(result.confidence, 0.3)
    elif outcome.status is RepairStatus.FAILED:
        result.rejection = _diagnose(best) or REJECT_CHECKS
    elif outcome.status is RepairStatus.AMBIGUOUS:
        reason = outcome.reason or "more than one reading passes the check digits"
        result.rejection = _diagnose(best) or f"MRZ unclear: {reason}"
    return result


def _doubtful(
    lines: tuple[str, ...], alternatives: Alternatives
) -> tuple[tuple[int, int], ...]:
    try:
        layout = LAYOUTS[detect_format(lines)]
    except MRZError:
        return ()
    covered: set[tuple[int, int]] = set()
    own_check: set[tuple[int, int]] = set()
    for check in layout.checks:
        for ln, start, end in check.spans:
            span = {(ln, p) for p in range(start, end)}
            covered |= span
            if check.name != "composite":
                own_check |= span
        covered.add(check.digit)
    classes = layout.char_classes()
    doubtful = []
    for ln, line in enumerate(lines):
        for pos, char in enumerate(line):
            if ln >= len(alternatives) or pos >= len(alternatives[ln]):
                continue
            cands = dict(alternatives[ln][pos])
            p_char = cands.get(char, 0.0)
            twin = _TWINS.get(char)
            allowed = ALLOWED[classes[ln][pos]]
            if twin is not None and twin in allowed and (ln, pos) not in own_check:
                # Two O/0 swaps can cancel out in a composite check digit
                # (24 x 7 + 24 x 3 = 240), so only a clear reading counts.
                if p_char < TWIN_P:
                    doubtful.append((ln, pos))
                continue
            if (ln, pos) in covered:
                continue
            # The field's alphabet settles O against 0, but nothing settles a
            # weak character, whatever its rivals are.
            if twin is not None and twin not in allowed:
                p_char += cands.get(twin, 0.0)
            if p_char < DOUBT_P:
                doubtful.append((ln, pos))
    doubtful += _weak_under_checks(lines, alternatives, layout)
    return tuple(sorted(set(doubtful)))


def _weak_under_checks(
    lines: tuple[str, ...], alternatives: Alternatives, layout: Layout
) -> list[tuple[int, int]]:
    """Return the weak letters and digits of check spans holding two or more.

    One check digit catches any single misread, but several can cancel out:
    7 read as T three times passed every check of a TD2 in a rendered test.
    So a span with two or more weak readings of letter-or-digit positions is
    doubtful however its check digit turns out.
    """
    classes = layout.char_classes()
    weak: list[tuple[int, int]] = []
    for check in layout.checks:
        in_span = []
        for ln, start, end in check.spans:
            for pos in range(start, end):
                if classes[ln][pos] is not CharClass.ALNUM:
                    continue
                p_char = dict(alternatives[ln][pos]).get(lines[ln][pos], 0.0)
                if p_char < WEAK_P:
                    in_span.append((ln, pos))
        if len(in_span) >= 2:
            weak += in_span
    return weak


def _fill_reading(result: ReadResult, reading: _Reading) -> None:
    result.lines = reading.best_lines()
    result.alternatives = reading.alternatives()
    result.rotation = round(reading.band.angle + reading.turn, 1) % 360.0
    result.box = _box(reading)
    result.confidence = float(math.exp(reading.score))


def _box(reading: _Reading) -> tuple[tuple[float, float], ...]:
    first, last = reading.geometries[0], reading.geometries[-1]
    half_cap = first.cap * 0.6
    x_left = first.x0 - first.pitch / 2
    x_right = first.centre(first.count - 1)[0] + first.pitch / 2
    y_top = first.centre(0)[1] - half_cap
    y_bottom = last.centre(0)[1] + half_cap
    pts = np.array(
        [
            [x_left, y_top, 1],
            [x_right, y_top, 1],
            [x_right, y_bottom, 1],
            [x_left, y_bottom, 1],
        ]
    )
    frame = pts @ reading.image.to_frame.T
    frame = frame[:, :2] / frame[:, 2:3]
    return tuple((round(float(x), 1), round(float(y), 1)) for x, y in frame)


def _read_band(
    gray: npt.NDArray[np.uint8], band: Band, turn: float, notes: set[str]
) -> list[_Reading]:
    """Read one band one way round; return the readings of each plausible line
    group and count, best first. Adds REJECT_CUT_OFF to `notes` when MRZ-like
    lines run out of the frame."""
    image = refine_skew(extract_band(gray, band, turn))
    spans = find_lines(image.ink)
    if spans:
        # Lines merged into one blob make the band's cap estimate too large
        # (and glyphs too small to read), so resample at the measured size.
        ratio = float(np.median([span.cap for span in spans])) / TARGET_CAP
        if not 0.7 < ratio < 1.5:
            band = dataclasses.replace(band, cap=band.cap * ratio)
            image = refine_skew(extract_band(gray, band, turn))
            spans = find_lines(image.ink)
    if len(spans) < 2:
        return []

    # Print above the MRZ or the document's edge below it may be in the band
    # too, so every run of consecutive lines is a candidate.
    options: list[tuple[list[LineSpan], int]] = []
    for size, counts in ((3, (30,)), (2, (36, 44))):
        for i in range(len(spans) - size + 1):
            window = spans[i : i + size]
            if _alike(window):
                merged = _join_ends(window)
                if _runs_off_frame(image, merged):
                    notes.add(REJECT_CUT_OFF)
                for count in plausible_counts(merged[0], counts):
                    options.append((merged, count))

    readings = [_classify(band, turn, image, chosen, n) for chosen, n in options]
    readings.sort(key=lambda r: -r.score)
    return readings


def _reread_flat(best: _Reading) -> _Reading:
    """Read again with perspective removed, using the first pass's glyph
    grid; keep whichever reading is more confident."""
    flat = rectify(best.image, best.geometries)
    flat_spans = find_lines(flat.ink)
    lines, count = len(best.geometries), best.geometries[0].count
    for i in range(len(flat_spans) - lines + 1):
        window = _join_ends(flat_spans[i : i + lines])
        again = _classify(best.band, best.turn, flat, window, count)
        if again.score > best.score:
            best = again
    return best


def _realign(reading: _Reading) -> _Reading | None:
    """Move each line's glyph grid one pitch either way where that reads the
    line more confidently; return None when no line moves.

    Damage can leave one line's grid a whole pitch off, so that the line
    reads a filler from the paper before it and loses its last character,
    as the name line of a heavily damaged rendered card did. Used only when
    a reading is rejected, and the moved reading must then be accepted.
    """
    geometries = list(reading.geometries)
    probs = list(reading.probs)
    model = default_model()
    moved = False
    for ln, geometry in enumerate(reading.geometries):
        best = _line_score(probs[ln]) + REALIGN_MARGIN
        for step in (-1, 1):
            grid = _step_grid(geometry, step)
            line_probs = model.probabilities(cut_cells(reading.image.ink, grid))
            score = _line_score(line_probs)
            if score > best:
                best, geometries[ln], probs[ln] = score, grid, line_probs
                moved = True
    if not moved:
        return None
    score = float(np.log(np.concatenate(probs).max(axis=1) + 1e-6).mean())
    score -= _misalignment(geometries)
    return dataclasses.replace(reading, geometries=geometries, probs=probs, score=score)


def _line_score(probs: FloatArray) -> float:
    return float(np.log(probs.max(axis=1) + 1e-6).mean())


def _step_grid(geometry: LineGeometry, step: int) -> LineGeometry:
    """Shift a grid so that its glyph i sits where glyph i + step was."""
    x0, _ = geometry.centre(step)
    return dataclasses.replace(
        geometry,
        x0=x0,
        pitch=geometry.pitch + 2 * geometry.curve * step,
        y0=geometry.y0 + geometry.slope * (x0 - geometry.x0),
    )


def _alike(window: list[LineSpan]) -> bool:
    """True when lines could be one MRZ: similar height, overlapping, evenly spaced."""
    caps = [span.cap for span in window]
    if max(caps) > 1.7 * min(caps):
        return False
    cap = float(np.median(caps))
    if max(s.left for s in window) - min(s.left for s in window) > 12 * cap:
        return False
    gaps = np.diff([span.cy for span in window])
    return bool(gaps.min() > 1.0 * cap and gaps.max() < 1.4 * gaps.min() + cap)


def _join_ends(window: list[LineSpan]) -> list[LineSpan]:
    """Give every line the outer ends of the group: MRZ lines share their ends,
    so one line's occluded or smudged end is taken from the others."""
    left = min(span.left for span in window)
    right = max(span.right for span in window)
    return [dataclasses.replace(span, left=left, right=right) for span in window]


def _classify(
    band: Band, turn: float, image: BandImage, chosen: list[LineSpan], count: int
) -> _Reading:
    geometries = [grid_for(span, count) for span in chosen]
    cells = np.concatenate([cut_cells(image.ink, g) for g in geometries])
    probs = default_model().probabilities(cells)
    score = float(np.log(probs.max(axis=1) + 1e-6).mean())
    score -= _misalignment(geometries)
    split = np.split(probs, len(geometries))
    return _Reading(band, turn, image, chosen, geometries, split, score)


def _misalignment(geometries: list[LineGeometry]) -> float:
    """Penalty for MRZ lines whose left or right ends do not line up."""
    pitch = float(np.mean([g.pitch for g in geometries]))
    lefts = [g.x0 for g in geometries]
    rights = [g.centre(g.count - 1)[0] for g in geometries]
    spread = max(max(lefts) - min(lefts), max(rights) - min(rights)) / pitch
    return max(spread - 1.5, 0.0) * 0.5


def _runs_off_frame(image: BandImage, spans: list[LineSpan]) -> bool:
    """True when a line's ink runs up to the edge of the frame."""
    inside = image.inside
    h, w = inside.shape
    for span in spans:
        for x in (span.left - 0.8 * span.cap, span.right + 0.8 * span.cap):
            y = span.cy + span.slope * (x - (span.left + span.right) / 2)
            px, py = round(x), round(y)
            if not (0 <= px < w and 0 <= py < h) or inside[py, px] == 0:
                return True
    return False


def _diagnose(reading: _Reading) -> str | None:
    """Name the likely cause of a bad reading: cut off, glare or blur."""
    if _runs_off_frame(reading.image, reading.spans):
        return REJECT_CUT_OFF
    names = LINE_NAMES.get(len(reading.probs), ())
    gray = reading.image.gray
    line_scores = [float(np.log(p.max(axis=1) + 1e-6).mean()) for p in reading.probs]
    worst = int(np.argmin(line_scores))
    span = reading.spans[worst]
    strip = gray[
        max(span.top - 2, 0) : span.bottom + 2, int(span.left) : int(span.right)
    ]
    if strip.size and names and line_scores[worst] < math.log(0.8):
        bright = float((strip >= 245).mean())
        contrast = float(np.percentile(strip, 95) - np.percentile(strip, 5))
        if bright > 0.25 or contrast < 50:
            return f"glare on the {names[worst]} line"
    if _sharpness(reading) < BLURRED_SHARPNESS:
        return REJECT_BLURRED
    return None
