"""Tesseract with the project's MRZ model: both engines, fallbacks and errors."""

from __future__ import annotations

import ctypes.util
import random
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from kiosk import mrz
from kiosk.errors import ReaderError
from kiosk.reader import tesseract
from kiosk.reader.glyphs import LineGeometry
from kiosk.reader.reader import line_images
from tools.render import Damage, render_document

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="Tesseract is not installed: run make system-deps",
)


@pytest.fixture(autouse=True)
def _fresh_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no cached engine and no remembered failure."""
    monkeypatch.setattr(tesseract, "_local", threading.local())
    monkeypatch.setattr(tesseract, "_failed", set())


def _lines(seed: int, fmt: str) -> tuple[list[np.ndarray], list[str]]:
    rng = random.Random(seed)
    fields = mrz.random_fields(rng, fmt)
    damage = Damage(glyph_px=22.0, noise_sigma=3.0, jpeg_quality=80, defocus_px=0.8)
    image, truth = render_document(fields, rng, damage)
    readings = line_images(image)
    assert readings, "the reader found no MRZ in a clean rendering"
    return readings[0], list(truth["lines"])


def test_model_ships_with_package() -> None:
    path = tesseract.model_path()
    assert path.is_file(), f"{path} missing: run python -m tools.train_tesseract"
    assert path.stat().st_size > 10_000


def _edits(read: str, truth: str) -> int:
    """Characters to insert, delete or change to turn `read` into `truth`."""
    row = list(range(len(truth) + 1))
    for i, a in enumerate(read, 1):
        prev, row[0] = row[0], i
        for j, b in enumerate(truth, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a != b))
    return row[-1]


# The Tesseract model is the weaker recogniser: on the training run's
# evaluation lines, cut from damaged photos, it has about 3 % character error.
# On these lightly damaged renders a line may differ in a character or two.
MAX_EDITS = 2


@pytest.mark.parametrize("fmt", ["TD1", "TD3", "MRVB"])
def test_library_engine_reads_lines(fmt: str) -> None:
    images, truth = _lines(41, fmt)
    engine = tesseract.engine()
    assert engine.name == "libtesseract"
    for image, line in zip(images, truth, strict=True):
        reading = engine.read(image)
        assert _edits(reading.text, line) <= MAX_EDITS, (reading.text, line)
        assert len(reading.chars) == len(reading.text)
        assert all(0.0 <= conf <= 1.0 for _, conf in reading.chars)


def test_command_engine_matches_library() -> None:
    images, truth = _lines(42, "TD2")
    command = tesseract.CommandEngine(tesseract.MODEL_DIR, tesseract.MODEL_NAME)
    library = tesseract.engine()
    for image, line in zip(images, truth, strict=True):
        by_command = command.read(image)
        by_library = library.read(image)
        assert by_command.text == by_library.text
        assert _edits(by_library.text, line) <= MAX_EDITS
        # The program gives no confidences in raw-line mode: a fixed share.
        assert 0.5 < by_library.confidence <= 1.0
        assert by_command.confidence == pytest.approx(tesseract.COMMAND_CONFIDENCE)


def test_blank_line_reads_only_fillers() -> None:
    # The model has seen only MRZ lines: on a blank strip it may see fillers,
    # which the reader then ignores because the length is wrong.
    blank = np.full((80, 900), 230, np.uint8)
    assert set(tesseract.engine().read(blank).text) <= {"<"}


def test_missing_library_uses_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tesseract, "_LIBRARY_NAMES", ("libno-such-tesseract.so",))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    images, truth = _lines(43, "TD3")
    engine = tesseract.engine()
    assert engine.name == "tesseract-command"
    assert _edits(engine.read(images[1]).text, truth[1]) <= MAX_EDITS


def test_missing_model_names_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tesseract, "MODEL_DIR", tmp_path)
    assert not tesseract.available()
    with pytest.raises(ReaderError, match=r"mrz\.traineddata.*train_tesseract"):
        tesseract.engine()


def test_unloadable_model_raises(tmp_path: Path) -> None:
    (tmp_path / "mrz.traineddata").write_bytes(b"not a model")
    with pytest.raises(ReaderError, match="could not load"):
        tesseract.LibraryEngine(tesseract._load_library(), tmp_path, "mrz")


def test_engines_are_per_thread() -> None:
    main_engine = tesseract.engine()
    worker_engines: list[tesseract.Engine] = []
    worker = threading.Thread(target=lambda: worker_engines.append(tesseract.engine()))
    worker.start()
    worker.join()
    assert len(worker_engines) == 1
    assert worker_engines[0] is not main_engine
    assert tesseract.engine() is main_engine


def test_line_image_capital_height() -> None:
    gray = np.full((200, 900), 220, np.uint8)
    geometry = LineGeometry(x0=40, pitch=20, y0=100, slope=0, cap=16, count=40)
    gray[92:108, 30:850] = 30
    image = tesseract.line_image(gray, geometry)
    scale = tesseract.LINE_CAP_PX / 16
    assert image.dtype == np.uint8
    assert abs(image.shape[0] - (2 * 17 * scale + 16)) <= 3
    assert image.min() == 0
    assert image.max() == 255


def test_line_outside_image_raises() -> None:
    gray = np.full((50, 50), 220, np.uint8)
    geometry = LineGeometry(x0=400, pitch=20, y0=300, slope=0, cap=16, count=30)
    with pytest.raises(ReaderError, match="outside"):
        tesseract.line_image(gray, geometry)


def test_closed_engine_read_raises() -> None:
    engine = tesseract.LibraryEngine(
        tesseract._load_library(), tesseract.MODEL_DIR, tesseract.MODEL_NAME
    )
    engine.close()
    engine.close()
    with pytest.raises(ReaderError, match="closed"):
        engine.read(np.full((60, 400), 220, np.uint8))


def test_corrupt_model_disables_tesseract(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "mrz.traineddata").write_bytes(b"not a model")
    monkeypatch.setattr(tesseract, "MODEL_DIR", tmp_path)
    assert tesseract.available()
    with pytest.raises(tesseract.ModelError, match=r"could not load"):
        tesseract.engine()
    assert not tesseract.available()
    with pytest.raises(tesseract.ModelError, match="missing or unreadable"):
        tesseract.engine()


def test_closed_engine_is_replaced() -> None:
    first = tesseract.engine()
    assert isinstance(first, tesseract.LibraryEngine)
    first.close()
    second = tesseract.engine()
    assert second is not first
    assert not getattr(second, "closed", False)
