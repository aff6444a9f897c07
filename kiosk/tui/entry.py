"""Live validation of MRZ lines while an officer types or pastes them.

Keyboard-wedge scanners type the lines followed by Enter, so the same checks
serve both. Each line gets its length against the expected length, the
first characters outside the MRZ alphabet, and the check digits that lie
wholly in finished lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kiosk.errors import MRZError
from kiosk.mrz import LAYOUTS, MRZ_ALPHABET, detect_format, is_check_digit_valid
from kiosk.mrz.formats import Layout

# Line lengths that a first line starting with this document code letter can
# have: P is a passport (TD3), V a visa (MRV-A or MRV-B), I, A and C are cards
# (TD1 of 30 or TD2 of 36).
_LENGTHS_BY_CODE = {
    "P": (44,),
    "V": (44, 36),
    "I": (30, 36),
    "A": (30, 36),
    "C": (30, 36),
}
_ALL_LENGTHS = (30, 36, 44)
_LINES_BY_LENGTH = {30: 3, 36: 2, 44: 2}


@dataclass(frozen=True, slots=True)
class LineState:
    number: int
    length: int
    expected: tuple[int, ...]
    problems: tuple[str, ...] = ()
    checks: tuple[tuple[str, bool], ...] = ()

    @property
    def complete(self) -> bool:
        return self.length in self.expected and not self.problems

    def summary(self) -> str:
        """Return one line of feedback, such as `line 2: 44/44 ✓ number ok`."""
        wanted = " or ".join(str(n) for n in self.expected)
        parts = [f"line {self.number}: {self.length}/{wanted}"]
        parts.extend(self.problems)
        parts.extend(
            f"{'✓' if ok else '✗'} {name.replace('_', ' ')} {'ok' if ok else 'FAILED'}"
            for name, ok in self.checks
        )
        return "  ".join(parts)


@dataclass(frozen=True, slots=True)
class EntryState:
    lines: tuple[str, ...]
    line_states: tuple[LineState, ...]
    format_name: str | None
    expected_lines: int | None
    errors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        """True when every expected line is present at full length."""
        return (
            self.expected_lines is not None
            and len(self.lines) == self.expected_lines
            and all(state.complete for state in self.line_states)
        )


def split_entry(text: str) -> list[str]:
    """Split the typed text into upper-cased lines, dropping blank ones."""
    rows = [row.strip().upper() for row in text.replace("\r", "\n").split("\n")]
    return [row for row in rows if row]


def validate_entry(text: str) -> EntryState:
    """Validate typed MRZ text line by line."""
    lines = split_entry(text)
    if not lines:
        return EntryState((), (), None, None)
    expected = _expected_lengths(lines)
    layout = _layout_for(lines, expected)
    states = []
    for index, line in enumerate(lines):
        checks: tuple[tuple[str, bool], ...] = ()
        if layout is not None:
            checks = _typed_checks_on_line(layout, lines, index)
        states.append(
            LineState(index + 1, len(line), expected, _problems(line, expected), checks)
        )
    expected_lines = _LINES_BY_LENGTH[expected[0]] if len(expected) == 1 else None
    errors: list[str] = []
    if expected_lines is not None and len(lines) > expected_lines:
        errors.append(
            f"{len(lines)} lines typed: this format has {expected_lines}; "
            "delete the extra lines"
        )
    return EntryState(
        tuple(lines),
        tuple(states),
        layout.format.value if layout else None,
        expected_lines,
        tuple(errors),
    )


def _expected_lengths(lines: list[str]) -> tuple[int, ...]:
    first = lines[0]
    candidates = _LENGTHS_BY_CODE.get(first[:1], _ALL_LENGTHS)
    # A finished first line (another line follows) fixes the length.
    if len(lines) > 1 and len(first) in candidates:
        return (len(first),)
    longer = tuple(n for n in candidates if n >= len(first))
    return longer or candidates


def _layout_for(lines: list[str], expected: tuple[int, ...]) -> Layout | None:
    if len(expected) != 1:
        return None
    length = expected[0]
    count = _LINES_BY_LENGTH[length]
    # Detect the format from the shape it will have once every line is typed.
    shape = [line.ljust(length, "<")[:length] for line in lines[:count]]
    shape += ["<" * length] * (count - len(shape))
    try:
        return LAYOUTS[detect_format(shape)]
    except MRZError:
        return None


def _typed_checks_on_line(
    layout: Layout, lines: list[str], index: int
) -> tuple[tuple[str, bool], ...]:
    """Return the check digits on line `index` whose digit and whole span are
    already typed, so a mistyped number shows up before the line is done."""
    results = []
    for check in layout.checks:
        digit_line, digit_position = check.digit
        if digit_line != index or len(lines[index]) <= digit_position:
            continue
        if any(ln >= len(lines) or len(lines[ln]) < end for ln, _, end in check.spans):
            continue
        text = check.text(lines)
        results.append(
            (check.name, is_check_digit_valid(text, check.check_char(lines)))
        )
    return tuple(results)


def _problems(line: str, expected: tuple[int, ...]) -> tuple[str, ...]:
    problems = []
    if len(line) > max(expected):
        problems.append(f"{len(line) - max(expected)} character(s) too many")
    for position, char in enumerate(line, start=1):
        if char in MRZ_ALPHABET:
            continue
        shown = "space" if char.isspace() else repr(char)
        if char == "_":
            shown = "'_' (unread by the scanner)"
        problems.append(f"position {position}: {shown} is not allowed")
        break
    return tuple(problems)
