"""What the MRZ parser returns: fields, per-check results, warnings, errors."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from kiosk.mrz.formats import MrzFormat


@dataclass(frozen=True, slots=True)
class PartialDate:
    """A date whose day, or day and month, may be unknown (`<<` in the MRZ)."""

    year: int
    month: int | None
    day: int | None

    def isoformat(self) -> str:
        """Return ISO 8601 at the precision known: `1980-05-12`, `1980-05`, `1980`."""
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
            if self.day is not None:
                text += f"-{self.day:02d}"
        return text

    def latest_date(self) -> dt.date:
        """Return the last calendar day this partial date can mean."""
        month = self.month or 12
        if self.day is not None:
            return dt.date(self.year, month, self.day)
        next_month = dt.date(self.year + month // 12, month % 12 + 1, 1)
        return next_month - dt.timedelta(days=1)


class WarningCode(enum.StrEnum):
    EXPIRED = "expired"
    SPECIMEN = "specimen"
    CHECK_DIGIT_FAILED = "check_digit_failed"
    UNKNOWN_STATE = "unknown_state"
    UNEXPECTED_DOCUMENT_CODE = "unexpected_document_code"


@dataclass(frozen=True, slots=True)
class MrzWarning:
    code: WarningCode
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class FieldError:
    """A field whose content is impossible (a 31st of February, a letter in a
    date). The field is marked invalid; every other field is still parsed."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class MrzReport:
    format: MrzFormat
    lines: tuple[str, ...]
    document_code: str
    document_type: str
    issuing_state: str
    document_number: str
    nationality: str | None
    birth_date: PartialDate | None
    expiry_date: PartialDate | None
    sex: str | None
    surname: str
    given_names: str
    optional_data: str
    optional_data_2: str
    checks: dict[str, bool]
    warnings: tuple[MrzWarning, ...] = ()
    errors: tuple[FieldError, ...] = ()
    specimen: bool = False
    invalid_fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def valid(self) -> bool:
        """True when every check digit passed."""
        return all(self.checks.values())

    def warning_codes(self) -> set[WarningCode]:
        return {w.code for w in self.warnings}

    def to_json(self) -> dict[str, object]:
        return {
            "mrz": list(self.lines),
            "format": self.format.value,
            "document_code": self.document_code,
            "document_type": self.document_type,
            "issuing_state": self.issuing_state,
            "document_number": self.document_number,
            "nationality": self.nationality,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "expiry_date": self.expiry_date.isoformat() if self.expiry_date else None,
            "sex": self.sex,
            "surname": self.surname,
            "given_names": self.given_names,
            "optional_data": self.optional_data,
            "optional_data_2": self.optional_data_2,
            "valid": self.valid,
            "checks": dict(self.checks),
            "specimen": self.specimen,
            "warnings": [
                {"code": w.code.value, "field": w.field, "message": w.message}
                for w in self.warnings
            ],
            "errors": [{"field": e.field, "message": e.message} for e in self.errors],
        }
