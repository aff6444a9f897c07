"""Records of reported documents, lookup keys and how they are matched.

The kiosk and the backend share these types, so the embedded store, the HTTP
service and the offline copy all return the same answer for the same key.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field

from backend.errors import InvalidRecord

# ICAO 9303 (Part 3) state codes are three letters, with one exception:
# Germany is issued as "D", written "D<<" in the MRZ. So "D" and "D<<" are
# accepted, and any other code shorter than three letters is invalid.
_STATE_RE = re.compile(r"^[A-Z<]{1,3}$")
_PADDED_STATE_RE = re.compile(r"^(?:[A-Z]{3}|D<<)$")
_NUMBER_STRIP_RE = re.compile(r"[<\s\-]")
_NUMBER_RE = re.compile(r"^[A-Z0-9]{1,30}$")
_TYPE_RE = re.compile(r"^[A-Z<]{1,2}$")
# A key already in normalised form, its parts joined by the unit separator
# (a control character, so it cannot match inside a part). Such a key is
# taken as it is; any other goes through the three normalisers.
_NORMAL_KEY_RE = re.compile(r"(?:[A-Z]{3}|D<<)\x1f[A-Z]{1,2}\x1f[A-Z0-9]{1,30}")


class Status(enum.StrEnum):
    """Why a document is on the list."""

    STOLEN = "stolen"
    LOST = "lost"
    REVOKED = "revoked"
    INVALIDATED = "invalidated"
    STOLEN_BLANK = "stolen_blank"


class Result(enum.StrEnum):
    """Outcome of one lookup.

    UNKNOWN means the check did not happen or cannot be trusted; it is never
    shown to an officer as NO_HIT.
    """

    HIT = "HIT"
    POSSIBLE = "POSSIBLE"
    NO_HIT = "NO_HIT"
    UNKNOWN = "UNKNOWN"


def normalize_state(state: str) -> str:
    """Return the issuing state as issued, padded with fillers to 3 characters.

    >>> normalize_state("D")
    'D<<'
    """
    cleaned = state.strip().upper()
    padded = cleaned.ljust(3, "<")
    if not _STATE_RE.match(cleaned) or not _PADDED_STATE_RE.match(padded):
        raise InvalidRecord(
            f"invalid issuing state {cleaned!r}: expected a three-letter ICAO "
            "code such as UTO, or D (or D<<) for Germany"
        )
    return padded


def normalize_number(number: str) -> str:
    """Return a document number without fillers, spaces and hyphens.

    Leading zeros are kept: "012345" and "12345" are different documents (the
    folded key in `fold_number` is what brings them together, as a POSSIBLE).
    """
    cleaned = _NUMBER_STRIP_RE.sub("", number.upper())
    if not _NUMBER_RE.match(cleaned):
        # The value itself is personal data, so only its length is quoted.
        raise InvalidRecord(
            f"invalid document number ({len(number)} characters): "
            "expected 1 to 30 letters A-Z or digits after removing '<', spaces "
            "and hyphens"
        )
    return cleaned


def normalize_type(document_type: str) -> str:
    """Return the document type code (P, PK, I, ID, A, C, V...) without fillers."""
    cleaned = document_type.strip().upper()
    if not _TYPE_RE.match(cleaned) or cleaned.strip("<") == "":
        raise InvalidRecord(
            f"invalid document type {cleaned!r}: expected 1 or 2 letters, "
            "such as P, PK, I, ID, A, C or V"
        )
    return cleaned.rstrip("<")


# Characters OCR and clerks confuse; folding maps each group to one character
# so that a number mistyped at the reporting end still surfaces as POSSIBLE.
_FOLD = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1"})


def fold_number(normalized: str) -> str:
    """Return the folded form of a normalized number: O/Q/D to 0, I/L to 1,
    leading zeros removed.

    >>> fold_number("0A1O2I")
    'A1021'
    """
    folded = normalized.translate(_FOLD).lstrip("0")
    return folded or "0"


@dataclass(frozen=True, slots=True)
class DocumentKey:
    """What the kiosk sends: issuing state, document type and number."""

    issuing_state: str
    document_type: str
    document_number: str

    @classmethod
    def create(cls, issuing_state: str, document_type: str, number: str) -> DocumentKey:
        """Validate and normalize the three parts; raise InvalidRecord if bad."""
        if _NORMAL_KEY_RE.fullmatch(f"{issuing_state}\x1f{document_type}\x1f{number}"):
            return cls(issuing_state, document_type, number)
        return cls(
            normalize_state(issuing_state),
            normalize_type(document_type),
            normalize_number(number),
        )

    @property
    def folded_number(self) -> str:
        return fold_number(self.document_number)


@dataclass(frozen=True, slots=True)
class Record:
    """One reported document."""

    issuing_state: str
    document_type: str
    document_number: str
    status: Status
    reported_on: dt.date
    reporting_country: str
    reference: str
    issue_date: dt.date | None = None
    expiry_date: dt.date | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "issuing_state": self.issuing_state,
            "document_type": self.document_type,
            "document_number": self.document_number,
            "status": self.status.value,
            "reported_on": self.reported_on.isoformat(),
            "reporting_country": self.reporting_country,
            "reference": self.reference,
            "issue_date": self.issue_date.isoformat() if self.issue_date else None,
            "expiry_date": self.expiry_date.isoformat() if self.expiry_date else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Record:
        def date_or_none(value: object) -> dt.date | None:
            return dt.date.fromisoformat(str(value)) if value else None

        try:
            return cls(
                issuing_state=normalize_state(str(data["issuing_state"])),
                document_type=normalize_type(str(data["document_type"])),
                document_number=normalize_number(str(data["document_number"])),
                status=Status(str(data["status"])),
                reported_on=dt.date.fromisoformat(str(data["reported_on"])),
                reporting_country=str(data["reporting_country"]),
                reference=str(data["reference"]),
                issue_date=date_or_none(data.get("issue_date")),
                expiry_date=date_or_none(data.get("expiry_date")),
            )
        except (KeyError, ValueError) as exc:
            raise InvalidRecord(f"invalid record: {exc}") from exc


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """Answer to one key.

    `records` holds the matching records for HIT and POSSIBLE. `type_mismatch`
    is set on a HIT whose record has another document type than the key:
    still a HIT, shown with the difference. `data_version` names the data the
    answer came from; `reason` says why a result is UNKNOWN.
    """

    result: Result
    records: tuple[Record, ...] = ()
    data_version: str | None = None
    type_mismatch: bool = False
    reason: str | None = None
    source: str = "embedded"
    request_id: str | None = None
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_json(self) -> dict[str, object]:
        return {
            "result": self.result.value,
            "records": [record.to_json() for record in self.records],
            "data_version": self.data_version,
            "type_mismatch": self.type_mismatch,
            "reason": self.reason,
            "source": self.source,
            "request_id": self.request_id,
            "checked_at": self.checked_at.isoformat(),
        }


def unknown(reason: str, *, source: str, request_id: str | None = None) -> LookupAnswer:
    """Build an UNKNOWN answer: the check did not happen, for `reason`."""
    return LookupAnswer(
        Result.UNKNOWN, reason=reason, source=source, request_id=request_id
    )


def classify(
    key: DocumentKey, exact: list[Record], folded: list[Record]
) -> LookupAnswer:
    """Turn the records found for a key into HIT, POSSIBLE or NO_HIT.

    `exact` are records with the same state and normalized number; `folded`
    are records with the same state and folded number. The caller fills in
    `data_version` and `source`.
    """
    if exact:
        mismatch = all(r.document_type != key.document_type for r in exact)
        return LookupAnswer(Result.HIT, tuple(exact), type_mismatch=mismatch)
    if folded:
        return LookupAnswer(Result.POSSIBLE, tuple(folded))
    return LookupAnswer(Result.NO_HIT)
