"""Field layouts of the ICAO 9303 MRZ formats, and the French national ID card
issued before 2021.

Positions are zero-based half-open slices of one line. The layouts follow
ICAO Doc 9303 (8th edition, 2021): part 4 for TD3 passports, part 5 for TD1,
part 6 for TD2, part 7 for MRV-A and MRV-B visas.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from kiosk.errors import MRZError


class MrzFormat(enum.StrEnum):
    TD1 = "TD1"
    TD2 = "TD2"
    TD3 = "TD3"
    MRVA = "MRVA"
    MRVB = "MRVB"
    FRA_ID = "FRA_ID"


class CharClass(enum.StrEnum):
    """Which characters a position may hold."""

    LETTER = "letter"  # A-Z and <
    DIGIT = "digit"  # 0-9, and < for an unknown day or month
    ALNUM = "alnum"  # A-Z, 0-9 and <
    CHECK = "check"  # 0-9, or < over an all-filler field
    SEX = "sex"  # M, F, X or <


ALLOWED: dict[CharClass, frozenset[str]] = {
    CharClass.LETTER: frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ<"),
    CharClass.DIGIT: frozenset("0123456789<"),
    CharClass.ALNUM: frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"),
    CharClass.CHECK: frozenset("0123456789<"),
    CharClass.SEX: frozenset("MFX<"),
}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    line: int
    start: int
    end: int
    char_class: CharClass

    def take(self, lines: Sequence[str]) -> str:
        return lines[self.line][self.start : self.end]


@dataclass(frozen=True, slots=True)
class Check:
    """A check digit at `digit` computed over the concatenated `spans`."""

    name: str
    spans: tuple[tuple[int, int, int], ...]  # (line, start, end)
    digit: tuple[int, int]  # (line, position)

    def text(self, lines: Sequence[str]) -> str:
        return "".join(lines[ln][a:b] for ln, a, b in self.spans)

    def check_char(self, lines: Sequence[str]) -> str:
        return lines[self.digit[0]][self.digit[1]]


@dataclass(frozen=True, slots=True)
class Layout:
    format: MrzFormat
    line_count: int
    line_length: int
    fields: tuple[Field, ...]
    checks: tuple[Check, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def char_classes(self) -> list[list[CharClass]]:
        """Return the character class of every position, line by line."""
        classes = [[CharClass.ALNUM] * self.line_length for _ in range(self.line_count)]
        for f in self.fields:
            for pos in range(f.start, f.end):
                classes[f.line][pos] = f.char_class
        for c in self.checks:
            classes[c.digit[0]][c.digit[1]] = CharClass.CHECK
        return classes


L, D, A, S = CharClass.LETTER, CharClass.DIGIT, CharClass.ALNUM, CharClass.SEX


def _two_line(fmt: MrzFormat, length: int, composite: bool) -> Layout:
    """TD2, TD3, MRV-A and MRV-B share one scheme: line 2 differs only in the
    width of the optional data and in whether a composite check closes it."""
    opt_end = length - 1 if composite else length
    fields = [
        Field("document_code", 0, 0, 2, L),
        Field("issuing_state", 0, 2, 5, L),
        Field("name", 0, 5, length, L),
        Field("document_number", 1, 0, 9, A),
        Field("nationality", 1, 10, 13, L),
        Field("birth_date", 1, 13, 19, D),
        Field("sex", 1, 20, 21, S),
        Field("expiry_date", 1, 21, 27, D),
    ]
    checks = [
        Check("document_number", ((1, 0, 9),), (1, 9)),
        Check("birth_date", ((1, 13, 19),), (1, 19)),
        Check("expiry_date", ((1, 21, 27),), (1, 27)),
    ]
    if fmt is MrzFormat.TD3:
        # TD3 line 2 carries the personal number with its own check digit.
        fields.append(Field("optional_data", 1, 28, 42, A))
        checks.append(Check("optional_data", ((1, 28, 42),), (1, 42)))
        checks.append(
            Check("composite", ((1, 0, 10), (1, 13, 20), (1, 21, 43)), (1, 43))
        )
    else:
        fields.append(Field("optional_data", 1, 28, opt_end, A))
        if composite:
            checks.append(
                Check("composite", ((1, 0, 10), (1, 13, 20), (1, 21, 35)), (1, 35))
            )
    return Layout(fmt, 2, length, tuple(fields), tuple(checks))


LAYOUTS: dict[MrzFormat, Layout] = {
    MrzFormat.TD3: _two_line(MrzFormat.TD3, 44, composite=True),
    MrzFormat.TD2: _two_line(MrzFormat.TD2, 36, composite=True),
    MrzFormat.MRVA: _two_line(MrzFormat.MRVA, 44, composite=False),
    MrzFormat.MRVB: _two_line(MrzFormat.MRVB, 36, composite=False),
    MrzFormat.TD1: Layout(
        MrzFormat.TD1,
        3,
        30,
        (
            Field("document_code", 0, 0, 2, L),
            Field("issuing_state", 0, 2, 5, L),
            Field("document_number", 0, 5, 14, A),
            Field("optional_data", 0, 15, 30, A),
            Field("birth_date", 1, 0, 6, D),
            Field("sex", 1, 7, 8, S),
            Field("expiry_date", 1, 8, 14, D),
            Field("nationality", 1, 15, 18, L),
            Field("optional_data_2", 1, 18, 29, A),
            Field("name", 2, 0, 30, L),
        ),
        (
            Check("document_number", ((0, 5, 14),), (0, 14)),
            Check("birth_date", ((1, 0, 6),), (1, 6)),
            Check("expiry_date", ((1, 8, 14),), (1, 14)),
            Check(
                "composite", ((0, 5, 30), (1, 0, 7), (1, 8, 15), (1, 18, 29)), (1, 29)
            ),
        ),
    ),
    # French national ID card issued before 2021: line 1 holds the surname and
    # an office code, line 2 the 12-character number (issue year and month,
    # department, sequence), given names, birth date and sex. It has no expiry.
    MrzFormat.FRA_ID: Layout(
        MrzFormat.FRA_ID,
        2,
        36,
        (
            Field("document_code", 0, 0, 2, L),
            Field("issuing_state", 0, 2, 5, L),
            Field("surname", 0, 5, 30, L),
            Field("optional_data", 0, 30, 36, A),
            Field("document_number", 1, 0, 12, A),
            Field("given_names", 1, 13, 27, L),
            Field("birth_date", 1, 27, 33, D),
            Field("sex", 1, 34, 35, S),
        ),
        (
            Check("document_number", ((1, 0, 12),), (1, 12)),
            Check("birth_date", ((1, 27, 33),), (1, 33)),
            Check("composite", ((0, 0, 36), (1, 0, 35)), (1, 35)),
        ),
    ),
}


def detect_format(lines: Sequence[str]) -> MrzFormat:
    """Tell the format from the line count, line length and document code."""
    count = len(lines)
    lengths = {len(line) for line in lines}
    if len(lengths) != 1:
        raise MRZError(
            "MRZ lines have different lengths "
            f"({', '.join(str(len(line)) for line in lines)}): "
            "expected 3 lines of 30, or 2 lines of 36 or 44 characters"
        )
    length = lengths.pop()
    first = lines[0][:1]
    if count == 3 and length == 30:
        return MrzFormat.TD1
    if count == 2 and length == 44:
        return MrzFormat.MRVA if first == "V" else MrzFormat.TD3
    if count == 2 and length == 36:
        if first == "V":
            return MrzFormat.MRVB
        if lines[0].startswith("IDFRA"):
            return MrzFormat.FRA_ID
        return MrzFormat.TD2
    raise MRZError(
        f"unrecognised MRZ shape: {count} line(s) of {length} characters; "
        "expected 3 lines of 30 (TD1), 2 of 36 (TD2, MRV-B, French ID) "
        "or 2 of 44 (TD3, MRV-A)"
    )
