"""Tests of the committed sample images, their truth and the sample list."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import cv2
import pytest

from backend.importer import FULL_HEADER, parse_record_fields
from backend.records import fold_number, normalize_number
from kiosk import mrz
from tools import make_fixtures

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = REPO_ROOT / "fixtures" / "images"
SAMPLE_CSV = REPO_ROOT / "fixtures" / "sltd_sample.csv"
REGENERATE = "run `python -m tools.make_fixtures` and commit the result"


def _truth() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((IMAGES / "truth.json").read_text("utf-8"))
    return data


def _rows() -> list[list[str]]:
    with SAMPLE_CSV.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _documents() -> dict[str, dict[str, Any]]:
    return {name: entry for name, entry in _truth().items() if entry["lines"]}


def _state(entry: dict[str, Any]) -> str:
    return str(entry["lines"][0][2:5])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh build of every fixture, shared by the tests of this module."""
    out_dir = tmp_path_factory.mktemp("fixtures")
    make_fixtures.build_fixtures(out_dir)
    return out_dir


def test_fixture_build_is_deterministic(built: Path, tmp_path: Path) -> None:
    names = ["td1-card-light.jpg", "td2-card-light.png", "broken-truncated.jpg"]
    make_fixtures.build_fixtures(tmp_path, names)
    for relative in [
        *(f"fixtures/images/{name}" for name in names),
        "fixtures/images/truth.json",
        "fixtures/sltd_sample.csv",
    ]:
        first = (built / relative).read_bytes()
        second = (tmp_path / relative).read_bytes()
        assert first == second, f"{relative} differs between two runs"


def test_committed_fixtures_are_current(built: Path) -> None:
    fresh_truth = (built / "fixtures" / "images" / "truth.json").read_text("utf-8")
    fresh_csv = (built / "fixtures" / "sltd_sample.csv").read_text("utf-8")
    assert fresh_truth == (IMAGES / "truth.json").read_text("utf-8"), REGENERATE
    assert fresh_csv == SAMPLE_CSV.read_text("utf-8"), REGENERATE


def test_fixture_set_is_small_and_complete() -> None:
    truth = _truth()
    files = {path.name for path in IMAGES.iterdir() if path.name != "truth.json"}
    assert files == set(truth)
    assert 12 <= len(files) <= 16
    total = sum(path.stat().st_size for path in IMAGES.iterdir())
    assert total < 3_000_000
    formats = {entry["format"] for entry in truth.values() if entry["format"]}
    assert formats == {"TD1", "TD2", "TD3", "MRVA", "MRVB", "FRA_ID"}


def test_fixture_images_decode_at_truth_size() -> None:
    for name, entry in _truth().items():
        if entry.get("error") == "truncated":
            continue
        image = cv2.imread(str(IMAGES / name), cv2.IMREAD_COLOR)
        assert image is not None, name
        height, width = image.shape[:2]
        assert [width, height] == entry["size"], name


def test_broken_fixture_is_truncated_jpeg() -> None:
    data = (IMAGES / make_fixtures.BROKEN_NAME).read_bytes()
    assert data[:2] == b"\xff\xd8"
    assert not data.endswith(b"\xff\xd9")
    assert _truth()[make_fixtures.BROKEN_NAME]["lines"] is None


def test_no_mrz_fixture_has_no_lines() -> None:
    entry = _truth()[make_fixtures.NO_MRZ_NAME]
    assert entry["lines"] is None
    assert entry["error"] == "no_mrz"


def test_fixture_truth_matches_compose() -> None:
    for name, entry in _documents().items():
        report = mrz.parse(entry["lines"])
        assert report.valid, name
        assert report.document_number == entry["document_number"], name
        if entry["fields"] is None:
            continue
        values = dict(entry["fields"])
        values["format"] = mrz.MrzFormat(values["format"])
        fields = mrz.DocumentFields(**values)
        assert mrz.compose(fields) == entry["lines"], name


def test_sample_csv_is_well_formed() -> None:
    rows = _rows()
    assert tuple(rows[0]) == FULL_HEADER
    records = rows[1:]
    assert 200 <= len(records) <= 500
    keys = set()
    for line, fields in enumerate(records, start=2):
        row = parse_record_fields(fields)
        assert fields[3] in make_fixtures.STATUSES, f"line {line}"
        dt.date.fromisoformat(fields[4])
        for column in (7, 8):
            if fields[column]:
                assert (
                    dt.date.fromisoformat(fields[column]).isoformat() == fields[column]
                )
        if fields[3] == "stolen_blank":
            assert fields[7] == "", f"line {line}"
            assert fields[8] == "", f"line {line}"
        keys.add((row[0], row[2]))
    assert len(keys) == len(records), "duplicate state and number"
    assert {fields[3] for fields in records} == set(make_fixtures.STATUSES)


@pytest.mark.parametrize("expected", ["HIT", "POSSIBLE", "NO_HIT"])
def test_sample_csv_gives_intended_lookups(expected: str) -> None:
    records = [parse_record_fields(fields) for fields in _rows()[1:]]
    documents = {
        name: entry
        for name, entry in _documents().items()
        if entry["lookup"]["result"] == expected
    }
    assert documents, f"no fixture expects {expected}"
    for name, entry in documents.items():
        state = _state(entry)
        number = normalize_number(entry["document_number"])
        exact = [r for r in records if r[0] == state and r[2] == number]
        folded = [r for r in records if r[0] == state and r[3] == fold_number(number)]
        if expected == "HIT":
            assert len(exact) == 1, name
            assert exact[0][4] == entry["lookup"]["status"], name
            document_type = entry["fields"]["document_code"].rstrip("<")
            assert exact[0][1] == document_type, name
        elif expected == "POSSIBLE":
            assert exact == [], name
            assert len(folded) == 1, name
            differences = [
                (a, b) for a, b in zip(folded[0][2], number, strict=True) if a != b
            ]
            assert differences in ([("O", "0")], [("I", "1")]), name
        else:
            assert exact == [], name
            assert folded == [], name


def test_most_fixtures_are_not_listed() -> None:
    results = [entry["lookup"]["result"] for entry in _documents().values()]
    assert results.count("NO_HIT") > len(results) / 2
