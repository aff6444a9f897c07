"""Tesseract with the project's MRZ model, as the second recogniser.

`tools/train_tesseract.py` trains `tessdata/mrz.traineddata` from the OCR-B
font, on MRZ lines cut from rendered documents with camera damage by this
reader's own locating and segmenting code, so the model sees at training time
the line images it gets here. Nothing is downloaded.

Each MRZ line is cut from the flattened band, scaled to a fixed capital
height and passed to Tesseract in raw-line mode (page segmentation mode 13),
whose model knows nothing but the MRZ alphabet. Two ways to call it:

* `LibraryEngine` loads `libtesseract` through ctypes and keeps the model
  loaded, one engine per thread: a line took a median 48 ms on the 2-CPU
  development machine;
* `CommandEngine` runs the `tesseract` program through pytesseract, which
  starts a process per line (about 0.1 s). It is used where the library
  cannot be loaded.

`engine()` picks the first that works. Both return the same `LineReading`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from kiosk.errors import ReaderError
from kiosk.reader.glyphs import ALPHABET, LineGeometry

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "tessdata"
MODEL_NAME = "mrz"
# Tesseract's PSM_RAW_LINE: the image is one text line, passed to the network
# as it is, without layout analysis: the mode the model was trained in. The
# single-line mode (7) finds the line again: on the training run's evaluation
# lines it read 3.5 % exactly, where this mode read 62 %.
RAW_LINE = 13
# The program reports no confidences in raw-line mode, so each character it
# reads counts as this sure.
COMMAND_CONFIDENCE = 0.7
# Tesseract's RIL_SYMBOL: iterate over characters.
_SYMBOL = 4
TIMEOUT_S = 5.0
# Capital height of the line images, in pixels, at training and at reading.
LINE_CAP_PX = 32.0
_LIBRARY_NAMES = ("libtesseract.so.5", "libtesseract.so", "tesseract")


class ModelError(ReaderError):
    """The MRZ model file is missing or cannot be loaded."""


@dataclass(frozen=True)
class LineReading:
    """Tesseract's characters for one line, each with its confidence (0-1)."""

    chars: tuple[tuple[str, float], ...]

    @property
    def text(self) -> str:
        return "".join(char for char, _ in self.chars)

    @property
    def confidence(self) -> float:
        """Mean character confidence, 0 for an empty line."""
        if not self.chars:
            return 0.0
        return float(np.mean([conf for _, conf in self.chars]))


class Engine(Protocol):
    name: str

    def read(self, image: npt.NDArray[np.uint8]) -> LineReading: ...


def model_path() -> Path:
    return MODEL_DIR / f"{MODEL_NAME}.traineddata"


def line_image(
    gray: npt.NDArray[np.uint8], geometry: LineGeometry
) -> npt.NDArray[np.uint8]:
    """Cut one line with a margin, scale it to LINE_CAP_PX capitals and
    stretch its contrast: dark text on a light ground, grey levels kept."""
    h, w = gray.shape
    x_first = geometry.centre(0)[0]
    x_last = geometry.centre(geometry.count - 1)[0]
    y = geometry.centre(geometry.count // 2)[1]
    x_lo = max(int(x_first - geometry.pitch * 1.5), 0)
    x_hi = min(int(x_last + geometry.pitch * 1.5), w)
    y_lo = max(int(y - geometry.cap * 1.1), 0)
    y_hi = min(int(y + geometry.cap * 1.1), h)
    strip = gray[y_lo:y_hi, x_lo:x_hi]
    if strip.size == 0:
        raise ReaderError("the MRZ line lies outside the image")
    scale = LINE_CAP_PX / max(geometry.cap, 1.0)
    strip = np.asarray(
        cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
        np.float32,
    )
    lo, hi = np.percentile(strip, (2, 98))
    stretched = (strip - lo) * (255.0 / max(float(hi - lo), 1.0))
    out = np.clip(stretched, 0, 255).astype(np.uint8)
    return np.asarray(
        cv2.copyMakeBorder(out, 8, 8, 8, 8, cv2.BORDER_REPLICATE), np.uint8
    )


def _clean(text: str) -> str:
    return "".join(c for c in text.upper() if c in ALPHABET)


class LibraryEngine:
    """libtesseract through its C API, with the model loaded once."""

    name = "libtesseract"

    def __init__(self, library: ctypes.CDLL, datapath: Path, language: str) -> None:
        self._lib = library
        self._api: int | None = None
        self._declare(library)
        api = library.TessBaseAPICreate()
        if not api:
            raise ReaderError("libtesseract could not create an engine")
        status = library.TessBaseAPIInit3(
            api, str(datapath).encode(), language.encode()
        )
        if status != 0:
            library.TessBaseAPIDelete(api)
            raise ModelError(
                f"libtesseract could not load the {language!r} model from "
                f"{datapath}: run tools/train_tesseract.py or reinstall the kiosk"
            )
        # The MRZ model contains only the MRZ alphabet, so no whitelist is set.
        # With one, Tesseract 5.3 reported every confidence as 0.
        self._api = api
        library.TessBaseAPISetPageSegMode(api, RAW_LINE)

    @staticmethod
    def _declare(lib: ctypes.CDLL) -> None:
        p, i, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        lib.TessBaseAPICreate.restype = p
        lib.TessBaseAPICreate.argtypes = []
        lib.TessBaseAPIInit3.restype = i
        lib.TessBaseAPIInit3.argtypes = [p, c, c]
        lib.TessBaseAPISetPageSegMode.argtypes = [p, i]
        lib.TessBaseAPISetVariable.restype = i
        lib.TessBaseAPISetVariable.argtypes = [p, c, c]
        lib.TessBaseAPISetImage.argtypes = [p, c, i, i, i, i]
        lib.TessBaseAPIRecognize.restype = i
        lib.TessBaseAPIRecognize.argtypes = [p, p]
        lib.TessBaseAPIGetIterator.restype = p
        lib.TessBaseAPIGetIterator.argtypes = [p]
        lib.TessResultIteratorGetUTF8Text.restype = ctypes.POINTER(ctypes.c_char)
        lib.TessResultIteratorGetUTF8Text.argtypes = [p, i]
        lib.TessResultIteratorConfidence.restype = ctypes.c_float
        lib.TessResultIteratorConfidence.argtypes = [p, i]
        lib.TessResultIteratorNext.restype = i
        lib.TessResultIteratorNext.argtypes = [p, i]
        lib.TessResultIteratorDelete.argtypes = [p]
        lib.TessDeleteText.argtypes = [ctypes.POINTER(ctypes.c_char)]
        lib.TessBaseAPIClear.argtypes = [p]
        lib.TessBaseAPIDelete.argtypes = [p]

    def read(self, image: npt.NDArray[np.uint8]) -> LineReading:
        lib = self._lib
        if not self._api:
            raise ReaderError("the Tesseract engine was closed")
        data = np.ascontiguousarray(image, dtype=np.uint8)
        h, w = data.shape
        lib.TessBaseAPISetImage(self._api, data.tobytes(), w, h, 1, w)
        if lib.TessBaseAPIRecognize(self._api, None) != 0:
            lib.TessBaseAPIClear(self._api)
            raise ReaderError("libtesseract failed to recognise an MRZ line")
        try:
            chars = self._symbols()
        finally:
            lib.TessBaseAPIClear(self._api)
        return LineReading(chars)

    def _symbols(self) -> tuple[tuple[str, float], ...]:
        """Return the recognised MRZ characters with their confidences."""
        lib = self._lib
        iterator = lib.TessBaseAPIGetIterator(self._api)
        if not iterator:
            return ()
        out: list[tuple[str, float]] = []
        try:
            while True:
                raw = lib.TessResultIteratorGetUTF8Text(iterator, _SYMBOL)
                if raw:
                    try:
                        text = ctypes.cast(raw, ctypes.c_char_p).value or b""
                    finally:
                        lib.TessDeleteText(raw)
                    conf = lib.TessResultIteratorConfidence(iterator, _SYMBOL)
                    for char in _clean(text.decode("utf-8", "replace")):
                        out.append((char, min(max(conf / 100.0, 0.0), 1.0)))
                if not lib.TessResultIteratorNext(iterator, _SYMBOL):
                    break
        finally:
            lib.TessResultIteratorDelete(iterator)
        return tuple(out)

    @property
    def closed(self) -> bool:
        return not self._api

    def close(self) -> None:
        if self._api:
            self._lib.TessBaseAPIDelete(self._api)
            self._api = None

    def __del__(self) -> None:
        self.close()


class CommandEngine:
    """The `tesseract` program through pytesseract: one process per line."""

    name = "tesseract-command"

    def __init__(self, datapath: Path, language: str) -> None:
        if shutil.which("tesseract") is None:
            raise ReaderError(
                "the tesseract program is not installed: install the "
                "tesseract-ocr package (make system-deps)"
            )
        self._config = f'--tessdata-dir "{datapath}" --psm {RAW_LINE}'

        self._language = language

    def read(self, image: npt.NDArray[np.uint8]) -> LineReading:
        import pytesseract

        try:
            text = pytesseract.image_to_string(
                image, lang=self._language, config=self._config, timeout=TIMEOUT_S
            )
        except (RuntimeError, pytesseract.TesseractError, OSError) as exc:
            raise ReaderError(f"tesseract failed on an MRZ line: {exc}") from exc
        chars = [(char, COMMAND_CONFIDENCE) for char in _clean(text)]
        return LineReading(tuple(chars))


_local = threading.local()
_failed: set[str] = set()


def _load_library() -> ctypes.CDLL:
    # Tesseract's OpenMP threads compete with the kiosk's own threads on a
    # 2-core terminal, and one line is too small to split. OpenMP reads this
    # once, when the library loads.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    errors = []
    names = list(_LIBRARY_NAMES)
    found = ctypes.util.find_library("tesseract")
    if found:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise ReaderError("libtesseract not found: " + "; ".join(errors))


def engine(prefer_library: bool = True) -> Engine:
    """Return this thread's Tesseract engine with the MRZ model.

    Raises ModelError when the model file is missing or unloadable, and
    ReaderError when no engine starts. A model that failed to load is not
    tried again in this process.
    """
    cached: Engine | None = getattr(_local, "engine", None)
    if cached is not None and not getattr(cached, "closed", False):
        return cached
    if "model" in _failed or not model_path().is_file():
        raise ModelError(
            f"the Tesseract MRZ model {model_path()} is missing or unreadable: "
            "run `python -m tools.train_tesseract` or reinstall the kiosk"
        )
    started: Engine | None = None
    if prefer_library and "library" not in _failed:
        try:
            library = _load_library()
        except ReaderError:
            _failed.add("library")
            log.warning("libtesseract not found; using the tesseract program")
        else:
            try:
                started = LibraryEngine(library, MODEL_DIR, MODEL_NAME)
            except ModelError:
                # The program would fail on the same file.
                _failed.add("model")
                log.warning("the Tesseract MRZ model does not load; Tesseract is off")
                raise
    if started is None:
        started = CommandEngine(MODEL_DIR, MODEL_NAME)
    log.info("tesseract engine started: %s", started.name)
    _local.engine = started
    return started


def available() -> bool:
    """True when the MRZ model is present, has not failed to load, and some
    engine can run it."""
    if "model" in _failed or not model_path().is_file():
        return False
    return "library" not in _failed or shutil.which("tesseract") is not None


def read_lines(
    gray: npt.NDArray[np.uint8], geometries: list[LineGeometry]
) -> list[LineReading | None]:
    """Read each line of a flattened band; None where Tesseract read nothing.

    Raises ReaderError when no engine runs or one fails.
    """
    reader = engine()
    out: list[LineReading | None] = []
    for geometry in geometries:
        reading = reader.read(line_image(gray, geometry))
        out.append(reading if reading.text else None)
    return out
