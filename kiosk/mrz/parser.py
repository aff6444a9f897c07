"""Parse and validate MRZ text of every ICAO 9303 format.

The parser never guesses: it reports what is printed, which check digits
pass, and what is wrong. Repairing OCR mistakes is `kiosk.mrz.repair`'s job.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence

from kiosk.errors import MRZError
from kiosk.mrz.checkdigit import MRZ_ALPHABET, is_check_digit_valid
from kiosk.mrz.formats import LAYOUTS, Layout, MrzFormat, detect_format
from kiosk.mrz.model import (
    FieldError,
    MrzReport,
    MrzWarning,
    PartialDate,
    WarningCode,
)
from kiosk.mrz.states import SPECIMEN_CODE, is_known_code

# Expiry dates are read in the century that puts them at most this many years
# ahead of today; ICAO allows documents valid for up to 10 years, and the
# margin keeps old expired documents in the past.
_EXPIRY_YEARS_AHEAD = 50

_EXPECTED_CODE_LETTERS: dict[MrzFormat, str] = {
    MrzFormat.TD3: "P",
    MrzFormat.MRVA: "V",
    MrzFormat.MRVB: "V",
    MrzFormat.TD1: "IAC",
    MrzFormat.TD2: "IAC",
    MrzFormat.FRA_ID: "I",
}


def split_text(text: str) -> list[str]:
    """Split pasted or scanned MRZ text into lines, dropping blank ones."""
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


# Text longer than this is refused before any parsing: an MRZ has at most
# 132 characters, and the margin leaves room for white space and line ends.
MAX_TEXT_CHARS = 4096


def normalize_lines(lines: Sequence[str]) -> list[str]:
    """Upper-case the lines, strip surrounding white space and check the
    characters; raise MRZError naming the first bad position."""
    size = len(lines) if isinstance(lines, str) else sum(len(str(x)) for x in lines)
    if size > MAX_TEXT_CHARS:
        # A 30 MB line took 29 s and 4.9 GB in the repair search before.
        raise MRZError(
            f"MRZ text of {size} characters is far longer than an MRZ (at most "
            "3 lines of 44 characters); check that the right file or input "
            "was sent"
        )
    if isinstance(lines, str):
        lines = split_text(lines)
    cleaned = [str(line).strip().upper() for line in lines]
    cleaned = [line for line in cleaned if line]
    if not cleaned:
        raise MRZError("no MRZ text: expected 2 or 3 lines of A-Z, 0-9 and '<'")
    for line_no, line in enumerate(cleaned, start=1):
        for pos, char in enumerate(line, start=1):
            if char in MRZ_ALPHABET:
                continue
            if char == "_":
                reason = "a character the scanner could not read"
            elif char.isspace():
                reason = "a space (MRZ uses '<' as filler)"
            else:
                reason = f"the character {char!r}"
            raise MRZError(
                f"invalid MRZ: line {line_no} position {pos} contains {reason}; "
                "only A-Z, 0-9 and '<' are allowed. Rescan the document or "
                "correct the line."
            )
    return cleaned


def parse(lines: Sequence[str] | str, *, today: dt.date | None = None) -> MrzReport:
    """Parse MRZ lines into a report of fields, checks, warnings and errors.

    Raise MRZError when the text is not MRZ-shaped (line count, length,
    characters). Field-level problems, such as an impossible date or a failed
    check digit, do not raise: they are listed in the report.
    """
    today = today or dt.date.today()
    cleaned = normalize_lines(lines)
    fmt = detect_format(cleaned)
    report = _Parser(LAYOUTS[fmt], cleaned, today).run()
    if fmt is MrzFormat.FRA_ID and not report.valid:
        # France also issues standard TD2 documents coded "ID"; keep the
        # reading whose check digits agree with the text.
        as_td2 = _Parser(LAYOUTS[MrzFormat.TD2], cleaned, today).run()
        if sum(as_td2.checks.values()) > sum(report.checks.values()):
            return as_td2
    return report


class _Parser:
    def __init__(self, layout: Layout, lines: list[str], today: dt.date) -> None:
        self.layout = layout
        self.lines = lines
        self.today = today
        self.checks: dict[str, bool] = {}
        self.warnings: list[MrzWarning] = []
        self.errors: list[FieldError] = []
        self.invalid: set[str] = set()

    def take(self, name: str) -> str:
        return self.layout.field(name).take(self.lines)

    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.layout.fields)

    def run(self) -> MrzReport:
        for check in self.layout.checks:
            text = check.text(self.lines)
            self.checks[check.name] = is_check_digit_valid(
                text, check.check_char(self.lines)
            )
        number = self._document_number()
        for name, ok in self.checks.items():
            if not ok:
                self.warnings.append(
                    MrzWarning(
                        WarningCode.CHECK_DIGIT_FAILED,
                        name,
                        f"check digit failed for {name.replace('_', ' ')}",
                    )
                )

        code = self.take("document_code")
        self._check_document_code(code)
        state = self.take("issuing_state")
        nationality = self.take("nationality") if self.has("nationality") else None
        specimen = self._check_states(state, nationality)

        surname, given = self._names()
        birth = self._date("birth_date", self._birth_century)
        expiry = (
            self._date("expiry_date", self._expiry_century)
            if self.has("expiry_date")
            else None
        )
        if expiry is not None and expiry.latest_date() < self.today:
            self.warnings.append(
                MrzWarning(WarningCode.EXPIRED, "expiry_date", "document has expired")
            )
        sex_char = self.take("sex")
        optional = self.take("optional_data") if self.has("optional_data") else ""
        optional2 = self.take("optional_data_2") if self.has("optional_data_2") else ""

        return MrzReport(
            format=self.layout.format,
            lines=tuple(self.lines),
            document_code=code,
            document_type=code.rstrip("<") or code[:1],
            issuing_state=state,
            document_number=number,
            nationality=nationality,
            birth_date=birth,
            expiry_date=expiry,
            sex=None if sex_char == "<" else sex_char,
            surname=surname,
            given_names=given,
            optional_data=optional.strip("<"),
            optional_data_2=optional2.strip("<"),
            checks=self.checks,
            warnings=tuple(self.warnings),
            errors=tuple(self.errors),
            specimen=specimen,
            invalid_fields=frozenset(self.invalid),
        )

    def _document_number(self) -> str:
        """Return the full document number, following a TD1 or TD2 overflow.

        When a number is longer than 9 characters, ICAO 9303 puts `<` in the
        check-digit position and continues the number in the optional data,
        whose last character before the first filler is then the check digit
        over the whole number.
        """
        field = self.layout.field("document_number")
        number = field.take(self.lines)
        check = next(c for c in self.layout.checks if c.name == "document_number")
        check_char = check.check_char(self.lines)
        overflow_capable = self.layout.format in (MrzFormat.TD1, MrzFormat.TD2)
        if overflow_capable and check_char == "<" and number[-1] != "<":
            optional = self.take("optional_data")
            end = optional.find("<")
            end = len(optional) if end < 0 else end
            if end >= 2:
                extra, overflow_check = optional[: end - 1], optional[end - 1]
                full = number + extra
                self.checks["document_number"] = is_check_digit_valid(
                    full, overflow_check
                )
                return full
            self.checks["document_number"] = False
        return number.replace("<", "")

    def _check_document_code(self, code: str) -> None:
        expected = _EXPECTED_CODE_LETTERS[self.layout.format]
        if code[0] not in expected:
            self.warnings.append(
                MrzWarning(
                    WarningCode.UNEXPECTED_DOCUMENT_CODE,
                    "document_code",
                    f"document code {code!r} is unusual for "
                    f"{self.layout.format.value}; "
                    f"expected it to start with one of {', '.join(expected)}",
                )
            )

    def _check_states(self, state: str, nationality: str | None) -> bool:
        specimen = False
        for name, code in (("issuing_state", state), ("nationality", nationality)):
            if code is None:
                continue
            if code == SPECIMEN_CODE:
                specimen = True
            elif not is_known_code(code):
                self.warnings.append(
                    MrzWarning(
                        WarningCode.UNKNOWN_STATE,
                        name,
                        f"{name.replace('_', ' ')} code {code!r} is not an ICAO code",
                    )
                )
        if specimen:
            self.warnings.append(
                MrzWarning(
                    WarningCode.SPECIMEN,
                    "issuing_state",
                    "specimen document of the fictional state Utopia (UTO)",
                )
            )
        return specimen

    def _names(self) -> tuple[str, str]:
        if self.layout.format is MrzFormat.FRA_ID:
            return _clean_name(self.take("surname")), _clean_name(
                self.take("given_names").replace("<<", "<")
            )
        return split_name(self.take("name"))

    def _birth_century(self, yy: int) -> int:
        # The most recent past century: nobody is born in the future.
        year = 2000 + yy
        return year if year <= self.today.year else year - 100

    def _expiry_century(self, yy: int) -> int:
        year = 2000 + yy
        return year if year <= self.today.year + _EXPIRY_YEARS_AHEAD else year - 100

    def _date(self, name: str, century: Callable[[int], int]) -> PartialDate | None:
        raw = self.take(name)
        if raw == "<<<<<<":
            return None
        try:
            return _parse_date(raw, century)
        except ValueError as exc:
            self.invalid.add(name)
            self.errors.append(FieldError(name, f"{name.replace('_', ' ')}: {exc}"))
            return None


def _parse_date(raw: str, century: Callable[[int], int]) -> PartialDate:
    """Parse YYMMDD where MM and DD may be `<<` (unknown)."""
    yy, mm, dd = raw[0:2], raw[2:4], raw[4:6]
    if not yy.isdigit():
        raise ValueError("year is not two digits")
    year = century(int(yy))
    if mm == "<<":
        if dd != "<<":
            raise ValueError("day given without a month")
        return PartialDate(year, None, None)
    if not mm.isdigit() or not 1 <= int(mm) <= 12:
        raise ValueError("month is not 01 to 12")
    if dd == "<<":
        return PartialDate(year, int(mm), None)
    if not dd.isdigit():
        raise ValueError("day is not two digits")
    try:
        dt.date(year, int(mm), int(dd))
    except ValueError as exc:
        raise ValueError("no such day in the calendar") from exc
    return PartialDate(year, int(mm), int(dd))


def _clean_name(raw: str) -> str:
    return " ".join(part for part in raw.split("<") if part)


def split_name(raw: str) -> tuple[str, str]:
    """Split an MRZ name field into primary and secondary identifiers.

    The first `<<` separates them; a single `<` inside an identifier is a
    space. A field with no `<<` is a single primary identifier, and a field
    that starts with `<<` has an empty primary identifier.

    >>> split_name("ERIKSSON<<ANNA<MARIA<<<<<")
    ('ERIKSSON', 'ANNA MARIA')
    """
    stripped = raw.rstrip("<")
    primary, sep, secondary = stripped.partition("<<")
    if not sep:
        return _clean_name(primary), ""
    return _clean_name(primary), _clean_name(secondary)
