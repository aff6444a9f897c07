"""Repair from OCR alternatives: grammar, check digits, ambiguity."""

from __future__ import annotations

import datetime as dt

from kiosk.mrz import RepairStatus, repair, repair_text
from tests.mrz.test_parser import TD1, TD3

TODAY = dt.date(2026, 12, 4)


def _sure(lines: list[str]) -> list[list[list[tuple[str, float]]]]:
    return [[[(c, 0.98)] for c in line] for line in lines]


def test_clean_reading_is_exact() -> None:
    outcome = repair(_sure(TD3), today=TODAY)
    assert outcome.status is RepairStatus.EXACT
    assert outcome.lines == tuple(TD3)
    assert outcome.confidence > 0.9


def test_letter_in_date_is_mapped_and_confirmed() -> None:
    damaged = [TD3[0], TD3[1][:13] + "74O8122" + TD3[1][20:]]
    outcome = repair_text(damaged, today=TODAY)
    assert outcome.status is RepairStatus.REPAIRED
    assert outcome.lines == tuple(TD3)
    assert [(c.line, c.position, c.read, c.corrected) for c in outcome.corrections] == [
        (1, 15, "O", "0")
    ]


def test_alternative_that_passes_is_chosen() -> None:
    alternatives = _sure(TD3)
    # The recogniser prefers 3 where the document prints 9.
    alternatives[1][2] = [("3", 0.6), ("9", 0.35)]
    outcome = repair(alternatives, today=TODAY)
    assert outcome.status is RepairStatus.REPAIRED
    assert outcome.lines == tuple(TD3)


def test_two_passing_readings_are_ambiguous() -> None:
    alternatives = _sure(TD3)
    # L and B have check-digit values 21 and 11: both pass.
    alternatives[1][0] = [("L", 0.6), ("B", 0.35)]
    outcome = repair(alternatives, today=TODAY)
    assert outcome.status is RepairStatus.AMBIGUOUS
    assert outcome.uncertain == ((1, 0),)
    assert not outcome.ok
    assert "line 2 position 1" in str(outcome.reason)


def test_faint_same_value_rival_is_ambiguous() -> None:
    alternatives = _sure(TD3)
    # `<` and `0` share the value 0; 3 % is faint, but no check can decide.
    alternatives[1][36] = [("B", 0.97)]
    alternatives[1][37] = [("<", 0.97), ("0", 0.03)]
    outcome = repair(alternatives, today=TODAY)
    assert outcome.status is RepairStatus.AMBIGUOUS


def test_no_passing_reading_fails_with_reason() -> None:
    alternatives = _sure(TD3)
    alternatives[1][2] = [("3", 0.98)]
    outcome = repair(alternatives, today=TODAY)
    assert outcome.status is RepairStatus.FAILED
    assert "document number" in str(outcome.reason)


def test_unchecked_field_keeps_confident_printed_digits() -> None:
    # A nationality printed as 132 is read as printed, not turned into IEZ.
    lines = [TD1[0], TD1[1][:15] + "132" + TD1[1][18:], TD1[2]]
    outcome = repair(_sure(lines), today=TODAY)
    assert outcome.ok
    assert outcome.report is not None
    assert outcome.report.nationality == "132"


def test_unchecked_field_maps_unsure_digit() -> None:
    alternatives = _sure(TD3)
    alternatives[0][9] = [("5", 0.6)]  # the S of ERIKSSON, read weakly as 5
    outcome = repair(alternatives, today=TODAY)
    assert outcome.lines is not None
    assert outcome.lines[0] == TD3[0]


def test_wrong_shape_fails() -> None:
    outcome = repair(_sure([TD3[0], TD3[1][:40]]), today=TODAY)
    assert outcome.status is RepairStatus.FAILED
    assert outcome.report is None


def test_correction_to_an_impossible_date_fails() -> None:
    # An MRV-B visa (no composite check) with expiry 30 08 11, check digit 1.
    lines = [
        "V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<",
        "L8988901C4XXX4009078F3008111<<<<<<<<",
    ]
    assert repair_text(lines, today=TODAY).status is RepairStatus.EXACT
    alternatives = _sure(lines)
    # The day reads 72 where 11 is printed, which fails the expiry check. Of
    # the offered characters only 4 then passes it, as day 42.
    alternatives[1][25] = [("7", 0.6), ("4", 0.3)]
    alternatives[1][26] = [("2", 0.9)]
    outcome = repair(alternatives, today=TODAY)
    assert outcome.status is RepairStatus.FAILED
    assert not outcome.ok
    assert "impossible dates" in str(outcome.reason)


# An MRV-B visa whose number N06865093 has zeros at weights 3 and 7.
VISA = ["V<NLDEKSTROM<<RUTH<<<<<<<<<<<<<<<<<<", "N068650936NLD8701141X3202241<<<<<<<<"]


def test_cancelling_o_zero_swaps_ambiguous() -> None:
    # 24 x 3 + 24 x 7 = 240: reading both zeros as O keeps the check digit.
    # The recogniser's 95 % for O means little, since OCR-B's O and 0 differ
    # by width alone.
    alternatives = _sure(VISA)
    alternatives[1][1] = [("O", 0.95), ("0", 0.05)]
    alternatives[1][6] = [("O", 0.95), ("0", 0.05)]
    outcome = repair(alternatives, today=TODAY)
    assert outcome.status is RepairStatus.AMBIGUOUS
    assert outcome.uncertain == ((1, 1), (1, 6))


def test_single_o_zero_swap_repaired() -> None:
    alternatives = _sure(VISA)
    alternatives[1][1] = [("O", 0.95), ("0", 0.05)]
    outcome = repair(alternatives, today=TODAY)
    assert outcome.status is RepairStatus.REPAIRED
    assert outcome.lines == tuple(VISA)
