"""The pipeline's trust rules: NO_HIT only on a certain key, look-alike
readings searched, and reader doubts carried into the verdict."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.records import Result, unknown
from kiosk.lookup.embedded import EmbeddedLookup
from kiosk.mrz import compose, parse
from kiosk.mrz.compose import DocumentFields
from kiosk.mrz.formats import MrzFormat
from kiosk.mrz.repair import repair_text
from kiosk.pipeline import _finish, check_text, lookalike_keys

TODAY = dt.date(2026, 12, 4)
HEADER = (
    "issuing_state,document_type,document_number,status,reported_on,"
    "reporting_country,reference,issue_date,expiry_date\n"
)


def _passport(state: str, number: str) -> list[str]:
    fields = DocumentFields(
        MrzFormat.TD3,
        "P<",
        state,
        number,
        "HOLLOWAY",
        "ADA",
        "NLD",
        "800101",
        "F",
        "300101",
    )
    return compose(fields)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[EmbeddedLookup]:
    csv = tmp_path / "list.csv"
    csv.write_text(
        HEADER
        + "UTO,P,W3180689,stolen,2024-01-01,NLD,REF-1,,\n"
        + "NLD,P,AB1234567,lost,2023-05-01,NLD,REF-2,,\n"
    )
    lookup = EmbeddedLookup(tmp_path / "store.sqlite3", seed_csv=csv)
    yield lookup
    lookup.close()


def test_listed_document_is_hit(client: EmbeddedLookup) -> None:
    outcome = check_text(_passport("UTO", "W3180689"), client, today=TODAY)
    assert outcome.lookup.result is Result.HIT


def test_unlisted_document_is_no_hit(client: EmbeddedLookup) -> None:
    outcome = check_text(_passport("NLD", "XY9876543"), client, today=TODAY)
    assert outcome.lookup.result is Result.NO_HIT
    assert outcome.lookup.data_version


def test_filler_read_as_zero_is_possible(client: EmbeddedLookup) -> None:
    # `<` and `0` have the same check-digit value, so W31806890 passes every
    # check where the document prints W3180689<.
    outcome = check_text(_passport("UTO", "W31806890"), client, today=TODAY)
    assert outcome.report is not None
    assert outcome.report.valid
    assert outcome.lookup.result is Result.POSSIBLE
    assert outcome.lookup.records[0].document_number == "W3180689"


@pytest.mark.parametrize(
    ("listed", "read"), [("AB1234567", "AL1234567"), ("AB1234567", "KB1234567")]
)
def test_lookalike_digit_is_possible(
    client: EmbeddedLookup, listed: str, read: str
) -> None:
    outcome = check_text(_passport("NLD", read), client, today=TODAY)
    assert outcome.report is not None
    assert outcome.report.valid
    assert outcome.lookup.result is Result.POSSIBLE


def test_unknown_state_is_not_checked(client: EmbeddedLookup) -> None:
    # UTP is no ICAO code: a misread UTO must not give NO RECORD.
    outcome = check_text(_passport("UTP", "W3180689"), client, today=TODAY)
    assert outcome.lookup.result is Result.UNKNOWN
    assert "not an ICAO code" in str(outcome.lookup.reason)


def test_reader_doubt_turns_no_hit_unknown(client: EmbeddedLookup) -> None:
    lines = _passport("NLD", "XY9876543")
    outcome = _finish(
        "t1",
        "test",
        repair_text(lines, today=TODAY),
        client,
        0.0,
        reader=None,
        reader_doubt="MRZ unclear on the top line",
    )
    assert outcome.lookup.result is Result.UNKNOWN
    assert "unclear" in str(outcome.lookup.reason)


def test_reader_doubt_keeps_hit(client: EmbeddedLookup) -> None:
    lines = _passport("UTO", "W3180689")
    outcome = _finish(
        "t2",
        "test",
        repair_text(lines, today=TODAY),
        client,
        0.0,
        reader=None,
        reader_doubt="MRZ unclear on the top line",
    )
    assert outcome.lookup.result is Result.HIT


def test_state_candidates_are_looked_up(client: EmbeddedLookup) -> None:
    # The recogniser preferred UTA but found UTO plausible.
    lines = _passport("NLD", "W3180689")
    outcome = _finish(
        "t3",
        "test",
        repair_text(lines, today=TODAY),
        client,
        0.0,
        reader=None,
        state_candidates=["UTO"],
    )
    assert outcome.lookup.result is Result.POSSIBLE


def test_lookalike_keys_cover_fillers() -> None:
    report = parse(_passport("UTO", "W3180689"), today=TODAY)
    numbers = {key.document_number for key in lookalike_keys(report)}
    assert "W31806890" in numbers
    assert "W3180689K" in numbers
    assert "W31806S9" in numbers
    assert "W3180689" not in numbers


def test_lookup_failure_of_variants_is_unknown(tmp_path: Path) -> None:
    class HalfBroken(EmbeddedLookup):
        def lookup_many(self, keys):  # type: ignore[no-untyped-def]
            if len(keys) > 1:
                return [unknown("store went away", source="test") for _ in keys]
            return super().lookup_many(keys)

    csv = tmp_path / "list.csv"
    csv.write_text(HEADER + "NLD,P,AB1234567,lost,2023-05-01,NLD,REF-2,,\n")
    broken = HalfBroken(tmp_path / "store.sqlite3", seed_csv=csv)
    try:
        outcome = check_text(_passport("NLD", "XY9876543"), broken, today=TODAY)
    finally:
        broken.close()
    assert outcome.lookup.result is Result.UNKNOWN
    assert "look-alike" in str(outcome.lookup.reason)


def test_bad_state_failed_reading_message(
    client: EmbeddedLookup,
) -> None:
    # A noise image read as an MRZ: the state is garbage and the checks fail.
    lines = _passport("UTO", "W3180689")
    garbage = [lines[0][:2] + "<<Y" + lines[0][5:], lines[1][:9] + "7" + lines[1][10:]]
    outcome = check_text(garbage, client, today=TODAY)
    assert outcome.lookup.result is Result.UNKNOWN
    assert "rescan" in str(outcome.error)
    assert "issuing state" not in str(outcome.error)
    assert outcome.lookup.reason == outcome.error
