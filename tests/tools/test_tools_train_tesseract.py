"""The Tesseract training script's stages, on a handful of documents."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools import train_tesseract as tt

needs_training_tools = pytest.mark.skipif(
    any(shutil.which(p) is None for p in tt.PROGRAMS),
    reason="Tesseract's training programs are not installed: run make system-deps",
)


def test_variants_four_copies() -> None:
    image = np.full((70, 900), 230, np.uint8)
    image[20:50, 30:870:20] = 20
    variants = tt._variants(image, random.Random(3))
    assert len(variants) == 4
    assert variants[0] is image
    for copy in variants[1:]:
        assert copy.dtype == np.uint8
        assert 40 < copy.shape[0] < 90
        assert not np.array_equal(copy[:, : image.shape[1]], image[: copy.shape[0]])


def test_document_lines_saved_with_text(tmp_path: Path) -> None:
    saved = tt._document_lines(tt.TRAIN_SEED, 2, str(tmp_path))
    pngs = sorted(tmp_path.glob("*.png"))
    assert saved == len(pngs) > 0
    texts = {p.stem: (p.with_name(p.stem + ".gt.txt")).read_text() for p in pngs}
    lengths = {len(t.strip()) for t in texts.values()}
    assert lengths <= {30, 36, 44}
    assert len(lengths) == 1
    first = cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE)
    assert first is not None and first.shape[1] > 10 * first.shape[0]


def test_box_uses_line_box(tmp_path: Path) -> None:
    png = tmp_path / "line.png"
    cv2.imwrite(str(png), np.full((60, 500), 200, np.uint8))
    (tmp_path / "line.gt.txt").write_text("P<UTO<<AB12\n")
    rows = tt.write_box(png).read_text().splitlines()
    assert rows[0] == "P 0 0 500 60 0"
    assert [r.split(" ")[0] for r in rows[:-1]] == list("P<UTO<<AB12")
    assert rows[-1] == "\t 0 0 500 60 0"


def test_unreadable_image_names_file(tmp_path: Path) -> None:
    png = tmp_path / "bad.png"
    png.write_bytes(b"not a png")
    (tmp_path / "bad.gt.txt").write_text("ABC\n")
    with pytest.raises(tt.TrainingError, match=r"bad\.png"):
        tt.write_box(png)


@needs_training_tools
def test_starter_built_from_boxes(tmp_path: Path) -> None:
    lines = tmp_path / "lines"
    lines.mkdir()
    tt._document_lines(tt.TRAIN_SEED, 0, str(lines))
    for png in lines.glob("*.png"):
        tt.write_box(png)
    starter = tt.make_starter(tmp_path)
    assert starter.is_file()
    assert starter.stat().st_size > 1000
    size = tt._unicharset_size(tmp_path)
    # The three special entries plus the characters of one document.
    assert 10 < size <= 3 + 37


def test_missing_programs_stop_early(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert tt.main(["--work", str(tmp_path / "w")]) == 2
    assert "lstmtraining" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_chunks_cut_between_characters(tmp_path: Path) -> None:
    tt._document_lines(tt.TRAIN_SEED, 1, str(tmp_path))
    base = sorted(tmp_path.glob("*-0.png"))[0]
    line = base.with_name(base.stem + ".gt.txt").read_text().strip()
    saved = tt._line_chunks(str(base))
    pieces = sorted(tmp_path.glob(f"c{base.stem}-*-0.png"))
    assert saved == 2 * len(pieces) > 0
    ordered = sorted(pieces, key=lambda p: int(p.stem.split("-")[-2]))
    texts = [p.with_name(p.stem + ".gt.txt").read_text().strip() for p in ordered]
    assert "".join(texts) == line
    assert all(5 <= len(t) <= 14 for t in texts[:-1])
    widths = [_width(p) for p in ordered]
    assert sum(widths) == _width(base)


def _width(png: Path) -> int:
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert image is not None, png
    return int(image.shape[1])
