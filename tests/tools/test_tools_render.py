"""Tests of the synthetic document renderer in tools/render.py."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from kiosk import mrz
from tools import render
from tools.render import (
    BASE_PX_PER_MM,
    FORMATS,
    LAYOUTS,
    Damage,
    RenderError,
    draw_document,
    format_of_lines,
    plan_case,
    render_document,
    render_set,
)

UTO_TD3 = [
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
]
CLEAN = Damage(glyph_px=30.0, clutter=False)


def _fields(fmt: str, seed: int = 3) -> mrz.DocumentFields:
    return mrz.random_fields(random.Random(f"test:{fmt}:{seed}"), fmt)


def _glyph_boxes(
    gray: npt.NDArray[np.uint8], min_area: int
) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x, y, w, h) of dark connected components."""
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    return [
        (int(x), int(y), int(w), int(h))
        for x, y, w, h, area in stats[1:count]
        if area >= min_area
    ]


def _mrz_crop(
    image: npt.NDArray[np.uint8], quad: list[list[float]], margin: int = 4
) -> npt.NDArray[np.uint8]:
    xs = [point[0] for point in quad]
    ys = [point[1] for point in quad]
    top, bottom = int(min(ys)) - margin, int(max(ys)) + margin
    left, right = int(min(xs)) - margin, int(max(xs)) + margin
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.asarray(gray[top:bottom, left:right], dtype=np.uint8)


def test_render_document_is_deterministic() -> None:
    damage = Damage.sample(random.Random(5), "heavy", quarter_turns=1)
    first, first_truth = render_document(_fields("TD3"), random.Random(9), damage)
    second, second_truth = render_document(_fields("TD3"), random.Random(9), damage)
    assert np.array_equal(first, second)
    assert first_truth == second_truth


def test_render_document_depends_on_seed() -> None:
    damage = Damage.sample(random.Random(5), "moderate")
    first, _ = render_document(_fields("TD1"), random.Random(1), damage)
    second, _ = render_document(_fields("TD1"), random.Random(2), damage)
    assert first.shape != second.shape or not np.array_equal(first, second)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truth_lines_match_compose(fmt: str) -> None:
    fields = _fields(fmt)
    _, truth = render_document(fields, random.Random(0), CLEAN)
    layout = LAYOUTS[fmt]
    assert truth["format"] == fmt
    assert truth["lines"] == mrz.compose(fields)
    assert len(truth["lines"]) == layout.lines
    assert all(len(line) == layout.chars for line in truth["lines"])
    assert truth["document_number"] == fields.document_number
    assert truth["fields"]["surname"] == fields.surname
    assert mrz.parse(truth["lines"]).valid


@pytest.mark.parametrize("fmt", FORMATS)
def test_flat_document_prints_every_mrz_character(fmt: str) -> None:
    """Each MRZ character is one OCR-B glyph in its own cell at the layout pitch."""
    fields = _fields(fmt)
    lines = mrz.compose(fields)
    layout = LAYOUTS[fmt]
    document, box = draw_document(fmt, lines, random.Random(1), fields)
    left, top, right, bottom = (round(value) for value in box)
    gray = cv2.cvtColor(document[top:bottom, left - 6 : right + 6], cv2.COLOR_BGR2GRAY)
    glyphs = _glyph_boxes(np.asarray(gray, dtype=np.uint8), min_area=20)

    assert len(glyphs) == layout.lines * layout.chars
    rows = Counter(
        round(y / (layout.line_pitch_mm * BASE_PX_PER_MM)) for _, y, _, _ in glyphs
    )
    assert sorted(rows.values()) == [layout.chars] * layout.lines
    first_row = sorted(
        x + w / 2
        for x, y, w, h in glyphs
        if y < layout.line_pitch_mm * BASE_PX_PER_MM / 2
    )
    pitch = (first_row[-1] - first_row[0]) / (layout.chars - 1)
    assert pitch == pytest.approx(layout.pitch_mm * BASE_PX_PER_MM, rel=0.03)
    cap_heights = [
        h for _, _, _, h in glyphs if h > layout.cap_mm * BASE_PX_PER_MM * 0.9
    ]
    assert cap_heights, "no full-height glyph found"
    assert max(cap_heights) == pytest.approx(layout.cap_mm * BASE_PX_PER_MM, rel=0.1)


def test_small_glyphs_reach_requested_height() -> None:
    damage = Damage(glyph_px=15.0, fill=0.7, clutter=False)
    image, truth = render_document(UTO_TD3, random.Random(4), damage)
    assert truth["glyph_px"] == pytest.approx(15.0, abs=0.01)
    crop = _mrz_crop(image, truth["mrz_quad"])
    glyphs = _glyph_boxes(crop, min_area=6)
    heights = sorted(h for _, _, _, h in glyphs if h >= 10)
    assert len(heights) >= 44
    assert np.median(heights) == pytest.approx(15.0, abs=1.5)


@pytest.mark.parametrize(
    ("turns", "axis", "sign"),
    [(0, 1, 1), (2, 1, -1), (1, 0, -1), (3, 0, 1)],
)
def test_quarter_turns_move_mrz_side(turns: int, axis: int, sign: int) -> None:
    """The MRZ is at the document's bottom edge, wherever that edge is turned to."""
    damage = Damage(glyph_px=20.0, quarter_turns=turns, clutter=False)
    _, truth = render_document(UTO_TD3, random.Random(2), damage)
    mrz_centre = np.mean(truth["mrz_quad"], axis=0)
    document_centre = np.mean(truth["document_quad"], axis=0)
    assert sign * (mrz_centre[axis] - document_centre[axis]) > 0
    assert truth["rotation_deg"] == pytest.approx(turns * 90.0)


def test_camera_frame_contains_document() -> None:
    for level in ("light", "moderate", "heavy"):
        rng = random.Random(f"frame:{level}")
        damage = Damage.sample(rng, level, quarter_turns=1)
        image, truth = render_document(_fields("MRVA"), rng, damage)
        height, width = image.shape[:2]
        assert [width, height] == truth["size"]
        assert max(width, height) <= damage.max_frame_px
        quad = np.array(truth["document_quad"])
        assert quad[:, 0].min() >= -1
        assert quad[:, 0].max() <= width + 1
        assert quad[:, 1].min() >= -1
        assert quad[:, 1].max() <= height + 1


def test_bare_lines_render_with_detected_format() -> None:
    image, truth = render_document(UTO_TD3, random.Random(0), CLEAN)
    assert image.dtype == np.uint8
    assert image.ndim == 3
    assert truth["format"] == "TD3"
    assert truth["fields"] is None
    assert truth["lines"] == UTO_TD3


def test_format_of_lines_shapes() -> None:
    assert format_of_lines(["I<UTO" + "<" * 25] * 3) == "TD1"
    assert format_of_lines(["I<UTO" + "<" * 31] * 2) == "TD2"
    assert format_of_lines(["V<UTO" + "<" * 31] * 2) == "MRVB"
    assert format_of_lines(["IDFRA" + "<" * 31] * 2) == "FRA_ID"
    assert format_of_lines(UTO_TD3) == "TD3"
    assert format_of_lines(["V<UTO" + "<" * 39] * 2) == "MRVA"


def test_format_of_lines_rejects_bad_shape() -> None:
    with pytest.raises(RenderError, match="no MRZ format has 2 lines of 40"):
        format_of_lines(["<" * 40] * 2)
    with pytest.raises(RenderError, match="different lengths"):
        format_of_lines(["<" * 44, "<" * 36])


def test_wrong_format_for_lines_is_rejected() -> None:
    with pytest.raises(RenderError, match="format TD1 needs 3 lines of 30"):
        render_document(UTO_TD3, random.Random(0), CLEAN, fmt="TD1")


def test_missing_font_names_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(render, "OCRB_FONT_PATH", tmp_path / "missing.otf")
    monkeypatch.setattr(render, "_font_cache", {})
    with pytest.raises(RenderError, match="fonts-ocr-b"):
        render.ocrb_font(40)


def test_set_plan_covers_formats_and_turns() -> None:
    plans = [plan_case(11, index) for index in range(60)]
    pairs = {(plan.fmt, plan.damage.quarter_turns) for plan in plans}
    assert pairs == {(fmt, turns) for fmt in FORMATS for turns in range(4)}
    levels = Counter(plan.level for plan in plans)
    assert set(levels) == {"light", "moderate", "heavy"}
    assert all(plan.fields.format == plan.fmt for plan in plans)


def test_render_set_prefix_is_stable() -> None:
    short = list(render_set(3, 2))
    longer = list(render_set(3, 3))
    assert [case.name for case in short] == [case.name for case in longer[:2]]
    for first, second in zip(short, longer, strict=False):
        assert np.array_equal(first.image, second.image)
        assert first.truth == second.truth


def test_write_set_folder_with_truth(tmp_path: Path) -> None:
    assert render.main([str(tmp_path), "--count", "2", "--seed", "4"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text("utf-8"))
    images = sorted(path.name for path in tmp_path.glob("*.jpg"))
    assert images == sorted(truth)
    assert len(images) == 2
    for name, entry in truth.items():
        image = cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR)
        assert image is not None, name
        assert [image.shape[1], image.shape[0]] == entry["size"]
        assert mrz.parse(entry["lines"]).valid, name


def test_render_set_start_renders_one_case() -> None:
    whole = list(render_set(6, 2))
    alone = list(render_set(6, 1, start=1))
    assert [case.name for case in alone] == [whole[1].name]
    assert np.array_equal(alone[0].image, whole[1].image)
    assert alone[0].truth == whole[1].truth
