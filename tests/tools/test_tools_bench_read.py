"""Tests of the reading benchmark's scoring and report (not of its speed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import bench_read
from tools.bench_read import (
    Outcome,
    Score,
    format_groups,
    format_misreads,
    format_table,
)

TRUTH = ("I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6")
TD1 = {"format": "TD1", "damage": "light"}
WRONG = ("I<UTOD231458901<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6")


def test_score_counts_silent_misread() -> None:
    score = Score()
    score.add(Outcome(WRONG, True, "D23145890", 0.1), TRUTH, "D23145890", TD1)
    assert score.images == 1
    assert score.exact == 0
    assert score.silent == 1
    assert score.accepted == 1
    assert score.rejected == 0
    assert score.number_ok == 1


def test_score_counts_exact_and_rejection() -> None:
    score = Score()
    assert score.add(Outcome(TRUTH, True, "D23145890", 0.2), TRUTH, "D23145890", TD1)
    assert not score.add(Outcome(None, False, None, 0.4, "ValueError"), TRUTH, "X", TD1)
    assert score.exact == 1
    assert score.silent == 0
    assert score.rejected == 1
    assert score.errors == 1
    assert score.exact_by_group == {
        "format": {"TD1": [1, 2]},
        "damage": {"light": [1, 2]},
    }
    assert score.median() == pytest.approx(0.3)


def test_score_counts_readings_accepted_with_tesseract() -> None:
    score = Score()
    score.add(Outcome(TRUTH, True, None, 0.1, recogniser="glyphs"), TRUTH, None, TD1)
    helped = Outcome(TRUTH, True, None, 0.1, recogniser="glyphs+tesseract")
    score.add(helped, TRUTH, None, TD1)
    refused = Outcome(None, False, None, 0.1, recogniser="glyphs+tesseract")
    score.add(refused, TRUTH, None, TD1)
    assert score.tesseract == 1
    row = format_table({"kiosk reader": score}, {}).splitlines()[2]
    assert row.startswith("| kiosk reader | 3 | 66.7 % | 0.0 % | 66.7 % | 1 | 0 |")


def test_table_shows_speed_ratio_and_missing_reader() -> None:
    fast, slow = Score(), Score()
    fast.add(Outcome(TRUTH, True, None, 0.1), TRUTH, None, TD1)
    slow.add(Outcome(None, False, None, 1.0), TRUTH, None, TD1)
    table = format_table(
        {"kiosk reader": fast, "PassportEye": slow}, {"other": "not available"}
    )
    assert "| kiosk reader | 1 | 100.0 % |" in table
    assert "10.0x faster" in table
    assert "| other | not available |" in table
    assert "| TD1 | 1/1 | 0/1 |" in format_groups(
        {"kiosk reader": fast, "PassportEye": slow}, "format"
    )


def test_bench_writes_report(tmp_path: Path) -> None:
    output = tmp_path / "bench.md"
    status = bench_read.main(
        [
            "--count",
            "2",
            "--no-passporteye",
            "--shared-dir",
            str(tmp_path / "absent"),
            "--output",
            str(output),
        ]
    )
    assert status == 0
    text = output.read_text("utf-8")
    assert "| kiosk reader | 2 |" in text
    assert "Skipped:" in text
    assert "## Silent misreads of the kiosk reader" in text
    assert "python -m tools.bench_read --count 2" in text


def test_bench_rejects_zero_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_read.main(["--count", "0", "--output", "-"]) == 2
    assert "--count must be at least 1" in capsys.readouterr().err


def test_misreads_list_differing_lines() -> None:
    rows = [
        {
            "image": "1-0043-td1-heavy",
            "truth": list(TRUTH),
            "kiosk reader": {"accepted": True, "exact": False, "lines": list(WRONG)},
        },
        {
            "image": "1-0044-td2-light",
            "truth": list(TRUTH),
            "kiosk reader": {"accepted": False, "exact": False, "lines": None},
        },
    ]
    text = format_misreads(rows, 1)
    assert "1-0043-td1-heavy" in text
    assert f"truth {TRUTH[0]}" in text
    assert f"read  {WRONG[0]}" in text
    assert TRUTH[1] not in text
    assert "--seed 1 --start 43 --count 1" in text
    assert "1-0044" not in text
