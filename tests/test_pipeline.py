"""The pipeline's trust rules: NO_HIT only on a certain key, look-alike
readings searched, and reader doubts carried into the verdict."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from backend.records import DocumentKey, LookupAnswer, Result, unknown
from kiosk.lookup.base import BackendStatus, lookup_document_in_turn
from kiosk.lookup.deadline import shared_deadline_start
from kiosk.lookup.embedded import EmbeddedLookup
from kiosk.mrz import LAYOUTS, compose, parse
from kiosk.mrz.compose import DocumentFields
from kiosk.mrz.formats import MrzFormat
from kiosk.mrz.repair import repair_text
from kiosk.pipeline import (
    LOOKALIKE_GROUPS,
    _finish,
    check_text,
    lookalike_keys,
    plan_lookalikes,
)

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


# -- look-alike readings ----------------------------------------------------

# Check-neutral misreadings of listed numbers: each reading passes every
# check digit. XP8271G<2 swaps 0 for G and 0 for `<`; the others swap one
# character of a pair added from the glyph model probe.
LISTED_LOOKALIKES = [
    ("FIN", "XP8271602", "XP8271G<2"),
    ("FIN", "XP8271602", "XP8271GK2"),
    ("FIN", "XP8271602", "XF8271602"),
    ("FIN", "XP8271652", "XF8271652"),
    ("FIN", "XP8271602", "NP8271602"),
    ("FIN", "XP8271602", "XFS271602"),
    ("UTO", "HR123456", "RR123456"),
    ("UTO", "HR123456", "HH12345G"),
    ("UTO", "A1234567", "<1234567"),
]


@pytest.fixture
def listed_client(tmp_path: Path) -> Iterator[EmbeddedLookup]:
    csv = tmp_path / "list.csv"
    rows = {(state, number) for state, number, _ in LISTED_LOOKALIKES}
    csv.write_text(
        HEADER
        + "".join(
            f"{state},P,{number},stolen,2024-01-01,NLD,REF-{i},,\n"
            for i, (state, number) in enumerate(sorted(rows))
        )
    )
    lookup = EmbeddedLookup(tmp_path / "store.sqlite3", seed_csv=csv)
    yield lookup
    lookup.close()


def test_two_swap_reading_is_possible(listed_client: EmbeddedLookup) -> None:
    lines = [
        "P<FINVIRTANEN<<MARIA<OLIVIA<<<<<<<<<<<<<<<<<",
        "XP8271G<24FIN7112214F1108213211271<426U<<<04",
    ]
    outcome = check_text(lines, listed_client, today=TODAY)
    assert outcome.report is not None
    assert outcome.report.valid
    assert outcome.lookup.result is Result.POSSIBLE
    assert outcome.lookup.records[0].document_number == "XP8271602"


@pytest.mark.parametrize(("state", "listed", "read"), LISTED_LOOKALIKES)
def test_check_neutral_misreading_is_possible(
    listed_client: EmbeddedLookup, state: str, listed: str, read: str
) -> None:
    outcome = check_text(_passport(state, read), listed_client, today=TODAY)
    assert outcome.report is not None
    assert outcome.report.valid
    assert outcome.report.document_number != listed
    assert outcome.lookup.result is Result.POSSIBLE
    assert outcome.lookup.records[0].document_number == listed


def _differences(number: str, printed: str) -> int:
    """Count the characters of `number` that differ from `printed`, where a
    missing trailing character is a filler."""
    padded = number.ljust(len(printed), "<")
    return sum(a != b for a, b in zip(padded, printed, strict=True))


def _misread_count(keys: list[DocumentKey], printed: str) -> list[int]:
    return [_differences(key.document_number, printed) for key in keys]


# A number whose variants never swap in a filler, which the key would drop.
NO_FILLER = "XP8271652"


def _check_value(char: str) -> int:
    if char == "<":
        return 0
    if char.isdigit():
        return int(char)
    return ord(char) - ord("A") + 10


@pytest.mark.parametrize("group", LOOKALIKE_GROUPS)
def test_lookalike_group_is_check_neutral(group: str) -> None:
    values = {_check_value(char) % 10 for char in group}
    assert len(values) == 1


def test_single_swaps_come_first() -> None:
    report = parse(_passport("FIN", NO_FILLER), today=TODAY)
    misreads = _misread_count(lookalike_keys(report), NO_FILLER)
    assert misreads == sorted(misreads)
    assert set(misreads) == {1, 2}


def test_state_candidate_takes_one_swap_only() -> None:
    report = parse(_passport("FIN", NO_FILLER), today=TODAY)
    keys = lookalike_keys(report, ["SWE"])
    other_state = [k.document_number for k in keys if k.issuing_state == "SWE"]
    assert NO_FILLER in other_state
    assert "XF8271652" in other_state
    assert "XF8271G52" not in other_state
    assert all(_differences(n, NO_FILLER) <= 1 for n in other_state)


def test_recogniser_alternatives_rank_variants() -> None:
    report = parse(_passport("FIN", NO_FILLER), today=TODAY)
    alternatives = [[[(c, 1.0)] for c in line] for line in report.lines]
    field = LAYOUTS[report.format].field("document_number")
    # The recogniser found S plausible at the third character, I less so.
    alternatives[field.line][field.start + 2] = [("8", 0.7), ("S", 0.2), ("I", 0.1)]
    numbers = [k.document_number for k in lookalike_keys(report, (), alternatives)]
    assert numbers[:2] == ["XPS271652", "XPI271652"]


def test_cut_keeps_single_swaps(monkeypatch: pytest.MonkeyPatch) -> None:
    report = parse(_passport("FIN", NO_FILLER), today=TODAY)
    everything = plan_lookalikes(report)
    singles = [
        k for k in everything.keys if _differences(k.document_number, NO_FILLER) == 1
    ]
    monkeypatch.setattr("kiosk.pipeline.MAX_VARIANT_KEYS", len(singles) + 3)
    cut = plan_lookalikes(report)
    assert everything.skipped == 0
    assert cut.keys == everything.keys[: len(singles) + 3]
    assert cut.keys[: len(singles)] == singles
    assert cut.skipped == len(everything.keys) - len(cut.keys)
    assert plan_lookalikes(report) == cut


def test_cut_variants_make_unknown(
    listed_client: EmbeddedLookup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kiosk.pipeline.MAX_VARIANT_KEYS", 4)
    outcome = check_text(_passport("FIN", "XP8871603"), listed_client, today=TODAY)
    assert outcome.report is not None
    assert outcome.report.valid
    assert outcome.lookup.result is Result.UNKNOWN
    assert "were not checked" in str(outcome.lookup.reason)


def test_cut_variants_still_find_match(
    listed_client: EmbeddedLookup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Single swaps come first, so a one-character misreading survives a cut
    # of the two-character ones.
    lines = _passport("FIN", "XF8271652")
    misreads = _misread_count(lookalike_keys(parse(lines, today=TODAY)), "XF8271652")
    monkeypatch.setattr("kiosk.pipeline.MAX_VARIANT_KEYS", misreads.count(1))
    outcome = check_text(lines, listed_client, today=TODAY)
    assert outcome.lookup.result is Result.POSSIBLE
    assert outcome.lookup.records[0].document_number == "XP8271652"


def test_lookups_share_one_deadline(client: EmbeddedLookup) -> None:
    starts: list[float | None] = []

    class Recording:
        def lookup(self, key: DocumentKey) -> LookupAnswer:
            starts.append(shared_deadline_start())
            return client.lookup(key)

        def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
            starts.append(shared_deadline_start())
            return client.lookup_many(keys)

        def lookup_document(
            self, key: DocumentKey, variants: Sequence[DocumentKey]
        ) -> tuple[LookupAnswer, list[LookupAnswer]]:
            return lookup_document_in_turn(self, key, variants)

        def status(self) -> BackendStatus:
            return client.status()

        def close(self) -> None:
            client.close()

    outcome = check_text(_passport("NLD", "XY9876543"), Recording(), today=TODAY)
    assert outcome.lookup.result is Result.NO_HIT
    assert len(starts) == 2
    assert starts[0] is not None
    assert starts[1] == starts[0]
    assert shared_deadline_start() is None


def test_overlong_text_refused_before_parsing(client: EmbeddedLookup) -> None:
    # A 10 MB line from a wrong file is refused at once, not searched for
    # repairs (a 30 MB line took 29 s and 4.9 GB before).
    outcome = check_text("P" * 10_000_000, client, today=TODAY)
    assert outcome.lookup.result is Result.UNKNOWN
    assert "10000000 characters is far longer than an MRZ" in str(outcome.lookup.reason)
    assert outcome.report is None
