"""Tesseract as the second recogniser, for lines the glyph network misreads.

Each MRZ line is cut from the flattened band, binarised and sent to the
`tesseract` binary through pytesseract, one line per call (page segmentation
mode 7) and restricted to the MRZ alphabet. Starting the process costs about
0.1 s per line, so the reader calls this only when the check digits reject
every glyph-network reading.

NOTE: with the stock English model this fallback turned none of the rendered
failures into a correct reading, because it reads `<` as C, K or 6. An
OCR-B-trained traineddata would make it useful.
"""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import numpy.typing as npt

from kiosk.errors import ReaderError
from kiosk.reader.glyphs import ALPHABET, LineGeometry

log = logging.getLogger(__name__)

TESSERACT_CONFIG = f"--psm 7 -c tessedit_char_whitelist={ALPHABET}"
TIMEOUT_S = 5.0


def available() -> bool:
    """True when the tesseract binary is on PATH."""
    return shutil.which("tesseract") is not None


def read_lines(
    gray: npt.NDArray[np.uint8], geometries: list[LineGeometry]
) -> list[str | None]:
    """Read each line of a flattened band; None where Tesseract read nothing.

    Raises ReaderError when the tesseract binary fails or times out.
    """
    import pytesseract

    out: list[str | None] = []
    for geometry in geometries:
        strip = _line_image(gray, geometry)
        try:
            text = pytesseract.image_to_string(
                strip, config=TESSERACT_CONFIG, timeout=TIMEOUT_S
            )
        except (RuntimeError, pytesseract.TesseractError, OSError) as exc:
            raise ReaderError(f"tesseract failed on an MRZ line: {exc}") from exc
        cleaned = "".join(c for c in text.upper() if c in ALPHABET)
        out.append(cleaned or None)
    return out


def _line_image(
    gray: npt.NDArray[np.uint8], geometry: LineGeometry
) -> npt.NDArray[np.uint8]:
    """Cut one line with a margin and binarise it, dark text on white."""
    h, w = gray.shape
    x_first = geometry.centre(0)[0]
    x_last = geometry.centre(geometry.count - 1)[0]
    y = geometry.centre(geometry.count // 2)[1]
    x_lo = max(int(x_first - geometry.pitch * 1.5), 0)
    x_hi = min(int(x_last + geometry.pitch * 1.5), w)
    y_lo = max(int(y - geometry.cap * 1.1), 0)
    y_hi = min(int(y + geometry.cap * 1.1), h)
    strip = gray[y_lo:y_hi, x_lo:x_hi]
    # Tesseract misreads small print. 32 px capitals is an estimate of a
    # comfortable size, not a measured optimum.
    scale = 32.0 / max(geometry.cap, 1.0)
    strip = np.asarray(
        cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC),
        np.uint8,
    )
    _, binary = cv2.threshold(strip, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    padded = cv2.copyMakeBorder(binary, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=255)
    return np.asarray(padded, np.uint8)
