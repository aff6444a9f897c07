"""Issuing state codes: three letters, or D for Germany, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import InvalidRecord
from backend.importer import import_csv
from backend.records import DocumentKey, normalize_state
from backend.store import open_store
from tests.backend.helpers import record_line, write_csv


@pytest.mark.parametrize(
    ("given", "stored"),
    [("UTO", "UTO"), ("uto", "UTO"), ("D", "D<<"), ("D<<", "D<<"), ("D<", "D<<")],
)
def test_valid_state_codes(given: str, stored: str) -> None:
    assert normalize_state(given) == stored


@pytest.mark.parametrize("given", ["XX", "XX<", "DE", "U", "<<<", "<", "D<X", "U<O"])
def test_invalid_state_codes(given: str) -> None:
    with pytest.raises(InvalidRecord, match="three-letter ICAO code"):
        normalize_state(given)


def test_lookup_key_rejects_two_letters() -> None:
    with pytest.raises(InvalidRecord):
        DocumentKey.create("XX", "P", "L898902C3")


def test_import_rejects_padded_two_letters(tmp_path: Path) -> None:
    # "XX<" is already padded, so it would take the importer's fast path.
    lines = [record_line("UTO", f"N{index:04d}") for index in range(200)] + [
        record_line("XX<", "A1"),
        record_line("UTO", "A2", reporting_country="FR<"),
    ]
    with open_store(f"sqlite:///{tmp_path / 's.sqlite3'}") as store:
        report = import_csv(store, write_csv(tmp_path / "f.csv", lines))
    assert [line for line, _ in report.rejected] == [202, 203]
    assert "issuing state 'XX<'" in report.rejected[0][1]
    assert report.result.record_count == 200
