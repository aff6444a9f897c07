"""Repair OCR readings of an MRZ with the field grammar and the check digits.

The recogniser gives, for every position, a few candidate characters with
probabilities. Repair keeps each position inside its field's alphabet,
tries the plausible alternatives at uncertain positions, and keeps only
readings whose check digits pass. When two different readings pass and
the second is not much less likely than the first, the result is AMBIGUOUS:
the kiosk requests a rescan instead of guessing.

Some confusions leave every check digit intact, because the 7-3-1 weights
times the difference of the two characters' values is a multiple of 10:
`<`/`0` (0 and 0), `<`/`K` (0 and 20), `A`/`K` (10 and 20), `I`/`S` (18 and
28), `B`/`L` (11 and 21) and any other pair 10 apart. Only the image can
tell them apart, so they surface here as AMBIGUOUS when the recogniser gives
both characters a real probability.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from kiosk.errors import MRZError
from kiosk.mrz.checkdigit import char_value, is_check_digit_valid
from kiosk.mrz.formats import ALLOWED, LAYOUTS, CharClass, Layout, detect_format
from kiosk.mrz.model import MrzReport
from kiosk.mrz.parser import parse
from kiosk.mrz.states import is_known_code

Candidate = tuple[str, float]
Alternatives = Sequence[Sequence[Sequence[Candidate]]]

# An alternative below this probability is noise, not a reading.
MIN_ALTERNATIVE_P = 0.02
# A second passing reading at least this likely, relative to the best one,
# makes the result ambiguous.
AMBIGUITY_RATIO = 0.1
# A rival that differs only by characters of equal check-digit value (such
# as `<` for `0`) is one no check could ever catch, so even a faint one
# makes the result ambiguous.
SAME_VALUE_RATIO = 0.02
# OCR-B's O and 0 differ by width alone, which blur and printers do not
# keep, so a recogniser's preference between them means little. A rival that
# differs only by O/0 swaps (and equal-value swaps) is ambiguous down to this
# ratio: two swaps at weights 7 and 3 cancel out in a check digit
# (24 x 7 + 24 x 3 = 240), as a blurred visa's number N06865093 read as
# NO6865O93 showed, with O at 0.96 and 0.94.
TWIN_RATIO = 0.001
_TWINS = frozenset({("O", "0"), ("0", "O")})
# Outside the check digits, a character outside its field's alphabet is kept
# as printed when the recogniser gives it at least this probability.
AS_PRINTED_P = 0.9
# At most this many uncertain positions are tried, and at most this many
# changed together, which bounds the search to a few thousand readings.
MAX_UNCERTAIN = 14
MAX_CHANGES = 3
MAX_CANDIDATES_PER_POSITION = 4

# OCR-B look-alikes, used when the best character is outside a field's
# alphabet (a letter in a date, a digit in a name).
_TO_DIGIT = {
    "O": "0",
    "Q": "0",
    "D": "0",
    "U": "0",
    "I": "1",
    "L": "1",
    "T": "1",
    "Z": "2",
    "S": "5",
    "B": "8",
    "G": "6",
    "A": "4",
    "E": "3",
}
_TO_LETTER = {
    "0": "O",
    "1": "I",
    "2": "Z",
    "5": "S",
    "8": "B",
    "6": "G",
    "4": "A",
    "3": "E",
    "7": "T",
}
_TO_SEX = {"H": "M", "N": "M", "P": "F", "E": "F", "K": "X", "Y": "X"}


class RepairStatus(enum.StrEnum):
    EXACT = "exact"  # the best reading passed every check as read
    REPAIRED = "repaired"  # passing after corrections the checks confirm
    AMBIGUOUS = "ambiguous"  # more than one plausible reading passes
    FAILED = "failed"  # no plausible reading passes


@dataclass(frozen=True, slots=True)
class Correction:
    line: int
    position: int
    read: str
    corrected: str


@dataclass(frozen=True, slots=True)
class RepairOutcome:
    status: RepairStatus
    lines: tuple[str, ...] | None
    report: MrzReport | None
    confidence: float
    corrections: tuple[Correction, ...] = ()
    # Positions (line, position) where another plausible reading differs.
    uncertain: tuple[tuple[int, int], ...] = ()
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the reading can be trusted for a lookup."""
        return self.status in (RepairStatus.EXACT, RepairStatus.REPAIRED)


def _constrain(
    cands: Sequence[Candidate], char_class: CharClass, *, protected: bool
) -> list[Candidate]:
    """Keep the candidates a position's alphabet allows, mapping look-alikes
    in when none of them fits.

    Outside the check digits' reach, a character the recogniser is sure of
    stays as printed even when the field's grammar forbids it, such as a
    nationality printed as `132`. Mapping it to a letter would invent a value
    that no check can confirm, so the parser reports the printed one instead.
    """
    allowed = ALLOWED[char_class]
    sure_outsider = (
        bool(cands) and cands[0][0] not in allowed and cands[0][1] >= AS_PRINTED_P
    )
    if sure_outsider and not protected:
        return [cands[0]]
    kept: dict[str, float] = {}
    for char, p in cands:
        if char in allowed:
            kept[char] = max(kept.get(char, 0.0), p)
    if not kept or max(kept.values()) < MIN_ALTERNATIVE_P:
        table = (
            _TO_SEX
            if char_class is CharClass.SEX
            else (_TO_LETTER if char_class is CharClass.LETTER else _TO_DIGIT)
        )
        for char, p in cands:
            mapped = table.get(char)
            if mapped is not None and mapped in allowed:
                kept[mapped] = max(kept.get(mapped, 0.0), p * 0.8)
    ranked = sorted(kept.items(), key=lambda item: -item[1])
    return ranked[:MAX_CANDIDATES_PER_POSITION]


@dataclass
class _Position:
    line: int
    pos: int
    candidates: list[Candidate]

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


def _protected_positions(layout: Layout) -> set[tuple[int, int]]:
    protected: set[tuple[int, int]] = set()
    for check in layout.checks:
        for line, start, end in check.spans:
            protected.update((line, p) for p in range(start, end))
        protected.add(check.digit)
    return protected


def _state_positions(layout: Layout) -> list[list[tuple[int, int]]]:
    groups = []
    for name in ("issuing_state", "nationality"):
        for f in layout.fields:
            if f.name == name:
                groups.append([(f.line, p) for p in range(f.start, f.end)])
    return groups


def repair(
    alternatives: Alternatives, *, today: dt.date | None = None
) -> RepairOutcome:
    """Choose the reading of an MRZ that the grammar and check digits support."""
    read = ["".join(c[0][0] if c else "<" for c in line) for line in alternatives]
    try:
        fmt = detect_format(read)
    except MRZError as exc:
        return RepairOutcome(RepairStatus.FAILED, None, None, 0.0, reason=str(exc))
    layout = LAYOUTS[fmt]
    classes = layout.char_classes()
    protected = _protected_positions(layout)

    grid: list[list[_Position]] = []
    for ln, line in enumerate(alternatives):
        row = []
        for pos, cands in enumerate(line):
            constrained = _constrain(
                cands, classes[ln][pos], protected=(ln, pos) in protected
            )
            if not constrained:
                constrained = [("<", 1e-6)]
            row.append(_Position(ln, pos, constrained))
        grid.append(row)

    _choose_states(grid, layout)
    _fill_filler_runs(grid, layout)
    return _search(grid, layout, read, today)


def _choose_states(grid: list[list[_Position]], layout: Layout) -> None:
    """Prefer, for state codes, the candidate combination that is a known code."""
    for group in _state_positions(layout):
        options = [grid[ln][p].candidates for ln, p in group]
        best: tuple[float, tuple[Candidate, ...]] | None = None
        for combo in itertools.product(*options):
            code = "".join(c for c, _ in combo)
            if not is_known_code(code):
                continue
            score = sum(math.log(max(p, 1e-9)) for _, p in combo)
            if best is None or score > best[0]:
                best = (score, combo)
        if best is None:
            continue
        for (ln, p), chosen in zip(group, best[1], strict=True):
            cands = grid[ln][p].candidates
            grid[ln][p].candidates = [chosen] + [c for c in cands if c[0] != chosen[0]]


def _fill_filler_runs(grid: list[list[_Position]], layout: Layout) -> None:
    """Inside a name field, a lone character between fillers with `<` among
    its candidates is a filler: names never hold one-letter islands after
    their end."""
    protected = _protected_positions(layout)
    for row in grid:
        for i in range(1, len(row) - 1):
            here = row[i]
            if (here.line, here.pos) in protected:
                continue
            if here.best[0] == "<" or row[i - 1].best[0] != "<":
                continue
            if row[i + 1].best[0] != "<" or (
                i + 2 < len(row) and row[i + 2].best[0] != "<"
            ):
                continue
            filler = [c for c in here.candidates if c[0] == "<"]
            if filler and filler[0][1] >= MIN_ALTERNATIVE_P:
                here.candidates = filler + [c for c in here.candidates if c[0] != "<"]


def _search(
    grid: list[list[_Position]], layout: Layout, read: list[str], today: dt.date | None
) -> RepairOutcome:
    protected = _protected_positions(layout)
    best_lines = [[p.best[0] for p in row] for row in grid]

    passing = _passing_by_check(grid, layout, best_lines)
    if passing is None:
        passing = _passing_global(grid, protected, best_lines, today)
    confidence_base = _confidence(grid, protected)
    if not passing:
        report = _safe_parse(["".join(r) for r in best_lines], today)
        failed = [n for n, ok in (report.checks.items() if report else []) if not ok]
        reason = "check digits failed" + (
            f" ({', '.join(n.replace('_', ' ') for n in failed)})" if failed else ""
        )
        return RepairOutcome(
            RepairStatus.FAILED,
            tuple("".join(r) for r in best_lines),
            report,
            confidence_base * 0.3,
            reason=reason,
        )

    passing.sort(key=lambda item: -item[0])
    # A correction that makes the checks pass but leaves a date that cannot
    # exist is no reading of the document: the checks passed by chance.
    # What the recogniser read as printed keeps its errors, for the parser
    # to report.
    as_read = ["".join(r) for r in best_lines]
    passing = [item for item in passing if not _invents_errors(item[1], as_read, today)]
    if not passing:
        return RepairOutcome(
            RepairStatus.FAILED,
            tuple(as_read),
            _safe_parse(as_read, today),
            confidence_base * 0.3,
            reason="the only readings that pass the check digits hold impossible dates",
        )
    best_delta, best_text = passing[0]
    rivals = [
        item
        for item in passing[1:]
        if item[1] != best_text
        and item[0] >= best_delta + math.log(_rival_ratio(best_text, item[1]))
    ]
    report = _safe_parse(best_text, today)
    corrections = tuple(
        Correction(ln, pos, read[ln][pos], best_text[ln][pos])
        for ln in range(len(best_text))
        for pos in range(len(best_text[ln]))
        if pos < len(read[ln]) and read[ln][pos] != best_text[ln][pos]
    )
    confidence = confidence_base * math.exp(max(best_delta, -5.0) / 2)
    if rivals:
        differing = sorted(
            {
                (ln, pos)
                for _, text in rivals
                for ln in range(len(text))
                for pos in range(len(text[ln]))
                if text[ln][pos] != best_text[ln][pos]
            }
        )
        where = ", ".join(
            f"line {ln + 1} position {pos + 1}" for ln, pos in differing[:4]
        )
        return RepairOutcome(
            RepairStatus.AMBIGUOUS,
            tuple(best_text),
            report,
            min(confidence, 0.5) * 0.5,
            corrections,
            tuple(differing),
            reason=f"more than one reading passes the check digits ({where})",
        )
    status = RepairStatus.EXACT if not corrections else RepairStatus.REPAIRED
    return RepairOutcome(status, tuple(best_text), report, confidence, corrections)


_Passing = list[tuple[float, list[str]]]
_Changes = tuple[tuple[_Position, Candidate], ...]


def _doubtful(positions: list[_Position], limit: int) -> list[_Position]:
    """Return the positions with a plausible alternative, most doubtful first."""
    doubtful = [
        p
        for p in positions
        if len(p.candidates) > 1 and p.candidates[1][1] >= MIN_ALTERNATIVE_P
    ]
    doubtful.sort(key=lambda p: p.candidates[1][1] / max(p.best[1], 1e-9), reverse=True)
    return doubtful[:limit]


def _delta(changes: _Changes) -> float:
    return sum(
        math.log(max(p, 1e-9)) - math.log(max(position.best[1], 1e-9))
        for position, (_, p) in changes
    )


def _passing_global(
    grid: list[list[_Position]],
    protected: set[tuple[int, int]],
    best_lines: list[list[str]],
    today: dt.date | None,
) -> _Passing:
    """Try change sets over all protected positions, checking each reading
    with the full parser. Slow, but right for every layout, including a TD1
    or TD2 document number that overflows into the optional data."""
    positions = [p for row in grid for p in row if (p.line, p.pos) in protected]
    passing: _Passing = []
    for changes in _change_sets(_doubtful(positions, MAX_UNCERTAIN)):
        lines = [row[:] for row in best_lines]
        for position, (char, _) in changes:
            lines[position.line][position.pos] = char
        text = ["".join(row) for row in lines]
        if _checks_pass(text, today):
            passing.append((_delta(changes), text))
    return passing


# Local readings kept per check before they are combined under the composite.
_LOCAL_KEEP = 3
_MAX_COMBINATIONS = 20_000


def _passing_by_check(
    grid: list[list[_Position]], layout: Layout, best_lines: list[list[str]]
) -> _Passing | None:
    """Search each check digit's own field first, then combine the few local
    readings that pass under the composite check. Returns None where this
    shortcut does not apply (a possible TD1/TD2 number overflow)."""
    simple = [c for c in layout.checks if c.name != "composite"]
    composite = next((c for c in layout.checks if c.name == "composite"), None)
    number_check = next(c for c in simple if c.name == "document_number")
    digit_line, digit_pos = number_check.digit
    if layout.format.value in ("TD1", "TD2") and any(
        char == "<" for char, _ in grid[digit_line][digit_pos].candidates
    ):
        return None

    covered: set[tuple[int, int]] = set()
    local: list[list[tuple[float, _Changes]]] = []
    for check in simple:
        cells = [grid[ln][p] for ln, a, b in check.spans for p in range(a, b)]
        cells.append(grid[check.digit[0]][check.digit[1]])
        covered.update((c.line, c.pos) for c in cells)
        variants = []
        for changes in _change_sets(_doubtful(cells, MAX_UNCERTAIN)):
            chars = {(c.line, c.pos): c.best[0] for c in cells}
            for position, (char, _) in changes:
                chars[(position.line, position.pos)] = char
            text = "".join(chars[(c.line, c.pos)] for c in cells[:-1])
            if is_check_digit_valid(text, chars[check.digit]):
                variants.append((_delta(changes), changes))
        if not variants:
            return []
        variants.sort(key=lambda item: -item[0])
        local.append(variants[:_LOCAL_KEEP])

    extra: list[_Position] = []
    if composite is not None:
        extra_cells = [
            grid[ln][p]
            for ln, a, b in composite.spans
            for p in range(a, b)
            if (ln, p) not in covered
        ]
        extra_cells.append(grid[composite.digit[0]][composite.digit[1]])
        extra = _doubtful(extra_cells, 8)
    extra_sets = list(_change_sets(extra, max_changes=2))
    budget = _MAX_COMBINATIONS // max(len(extra_sets), 1)
    combos = itertools.islice(itertools.product(*local), budget)

    passing: _Passing = []
    for combo in combos:
        for extra_changes in extra_sets:
            changes = tuple(ch for _, part in combo for ch in part) + extra_changes
            lines = [row[:] for row in best_lines]
            for position, (char, _) in changes:
                lines[position.line][position.pos] = char
            reading = ["".join(row) for row in lines]
            if composite is None or is_check_digit_valid(
                composite.text(reading), composite.check_char(reading)
            ):
                passing.append((_delta(changes), reading))
    return passing


def _rival_ratio(best: list[str], rival: list[str]) -> float:
    pairs = [
        (a, b)
        for line_a, line_b in zip(best, rival, strict=True)
        for a, b in zip(line_a, line_b, strict=True)
        if a != b
    ]
    if any(pair in _TWINS for pair in pairs) and all(
        pair in _TWINS or (char_value(pair[0]) - char_value(pair[1])) % 10 == 0
        for pair in pairs
    ):
        return TWIN_RATIO
    if all((char_value(a) - char_value(b)) % 10 == 0 for a, b in pairs):
        return SAME_VALUE_RATIO
    return AMBIGUITY_RATIO


def _change_sets(
    uncertain: list[_Position], max_changes: int = MAX_CHANGES
) -> itertools.chain[tuple[tuple[_Position, Candidate], ...]]:
    """Yield the reading as is, then every way of replacing 1 to max_changes
    uncertain positions by one of their alternatives."""

    def sets(k: int) -> itertools.chain[tuple[tuple[_Position, Candidate], ...]]:
        per_combo = (
            itertools.product(*[[(p, c) for c in p.candidates[1:]] for p in combo])
            for combo in itertools.combinations(uncertain, k)
        )
        return itertools.chain.from_iterable(per_combo)

    return itertools.chain([()], *(sets(k) for k in range(1, max_changes + 1)))


def _invents_errors(lines: list[str], read: list[str], today: dt.date | None) -> bool:
    """True when corrected `lines` parse with a field error (an impossible
    date). Any error counts, even one the lines as read have too: a reading
    that needed corrections and still contains an impossible date is more likely
    a chance pass of the check digits than the document."""
    if lines == read:
        return False
    report = _safe_parse(lines, today)
    return report is None or bool(report.errors)


def _checks_pass(lines: list[str], today: dt.date | None) -> bool:
    report = _safe_parse(lines, today)
    return report is not None and report.valid


def _safe_parse(lines: list[str], today: dt.date | None) -> MrzReport | None:
    try:
        return parse(lines, today=today)
    except MRZError:
        return None


def _confidence(grid: list[list[_Position]], protected: set[tuple[int, int]]) -> float:
    """Blend the mean log-probability of the whole reading with its weakest
    protected position, so one doubtful digit cannot hide in a long line."""
    probs = [max(p.best[1], 1e-9) for row in grid for p in row]
    geo_mean = math.exp(sum(math.log(p) for p in probs) / len(probs))
    weakest = min(
        (
            max(p.best[1], 1e-9)
            for row in grid
            for p in row
            if (p.line, p.pos) in protected
        ),
        default=1.0,
    )
    return max(0.0, min(1.0, 0.5 * geo_mean + 0.5 * weakest))


def repair_text(lines: Sequence[str], *, today: dt.date | None = None) -> RepairOutcome:
    """Repair typed or device-sent text, trusting every character as given
    unless it breaks its field's alphabet."""
    alternatives = [[[(char, 1.0)] for char in line] for line in lines]
    return repair(alternatives, today=today)
