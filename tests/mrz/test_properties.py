"""Property tests: generated MRZs round-trip, and OCR damage is never turned
into another valid document."""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kiosk.mrz import (
    LAYOUTS,
    MRZ_ALPHABET,
    MrzFormat,
    RepairStatus,
    compose,
    parse,
    random_fields,
    repair,
)
from kiosk.mrz.checkdigit import char_value
from kiosk.mrz.formats import ALLOWED

TODAY = dt.date(2026, 12, 4)
ALPHABET = sorted(MRZ_ALPHABET)

formats = st.sampled_from(list(MrzFormat))
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _document(fmt: MrzFormat, seed: int) -> list[str]:
    return compose(random_fields(random.Random(seed), fmt, today=TODAY))


@given(fmt=formats, seed=seeds)
def test_generated_documents_round_trip(fmt: MrzFormat, seed: int) -> None:
    fields = random_fields(random.Random(seed), fmt, today=TODAY)
    lines = compose(fields)
    report = parse(lines, today=TODAY)
    assert report.valid, report.checks
    assert report.document_number == fields.document_number
    assert report.issuing_state == fields.issuing_state
    assert report.birth_date is not None
    assert report.birth_date.isoformat()[2:].replace("-", "") == fields.birth_date
    assert report.lines == tuple(lines)
    if fmt is not MrzFormat.TD2:
        assert report.format is fmt


def _protected(fmt: MrzFormat) -> list[tuple[int, int]]:
    layout = LAYOUTS[fmt]
    positions: set[tuple[int, int]] = set()
    for check in layout.checks:
        for line, start, end in check.spans:
            positions.update((line, p) for p in range(start, end))
        positions.add(check.digit)
    return sorted(positions)


def _alternatives(lines: list[str]) -> list[list[list[tuple[str, float]]]]:
    return [[[(c, 0.97)] for c in line] for line in lines]


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    fmt=formats,
    seed=seeds,
    where=st.integers(min_value=0),
    wrong=st.sampled_from(ALPHABET),
    true_p=st.floats(min_value=0.05, max_value=0.45),
)
def test_damage_with_true_alternative_is_repaired_or_flagged(
    fmt: MrzFormat, seed: int, where: int, wrong: str, true_p: float
) -> None:
    lines = _document(fmt, seed)
    positions = _protected(fmt)
    line, pos = positions[where % len(positions)]
    truth = lines[line][pos]
    assume(wrong != truth)
    alternatives = _alternatives(lines)
    alternatives[line][pos] = [(wrong, 1.0 - true_p), (truth, true_p)]

    outcome = repair(alternatives, today=TODAY)

    if outcome.ok:
        assert outcome.lines == tuple(lines)
    else:
        assert outcome.status in (RepairStatus.AMBIGUOUS, RepairStatus.FAILED)
        assert outcome.reason


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    fmt=formats,
    seed=seeds,
    where=st.integers(min_value=0),
    wrong=st.sampled_from(ALPHABET),
)
def test_visible_damage_without_alternative_is_never_accepted(
    fmt: MrzFormat, seed: int, where: int, wrong: str
) -> None:
    lines = _document(fmt, seed)
    positions = _protected(fmt)
    line, pos = positions[where % len(positions)]
    truth = lines[line][pos]
    assume(wrong != truth)
    classes = LAYOUTS[fmt].char_classes()
    assume(wrong in ALLOWED[classes[line][pos]])
    # Differences of a multiple of 10 leave every check digit intact; only
    # the image can tell those apart.
    assume((char_value(wrong) - char_value(truth)) % 10 != 0)
    alternatives = _alternatives(lines)
    alternatives[line][pos] = [(wrong, 0.97)]

    outcome = repair(alternatives, today=TODAY)

    assert not (outcome.ok and outcome.lines != tuple(lines))


@given(fmt=formats, seed=seeds, junk=st.text(max_size=120))
def test_parser_rejects_junk_cleanly(fmt: MrzFormat, seed: int, junk: str) -> None:
    from kiosk.errors import MRZError

    lines = _document(fmt, seed)
    try:
        report = parse([lines[0], junk], today=TODAY)
    except MRZError as exc:
        assert "expected" in str(exc) or "allowed" in str(exc)
    else:
        # Only junk that happens to be MRZ-shaped may parse.
        assert report.lines[1] == junk.strip().upper()
