"""CSV import of reported documents, full or delta, into a store.

Full file header:
    issuing_state,document_type,document_number,status,reported_on,
    reporting_country,reference,issue_date,expiry_date
A delta file puts an `op` column (`add` or `delete`) first. Dates are ISO
8601 (YYYY-MM-DD); issue and expiry dates may be empty, and a delete only
needs the state, type and number.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import ImportFailed, InvalidRecord
from backend.records import (
    Status,
    fold_number,
    normalize_number,
    normalize_state,
    normalize_type,
)
from backend.store.base import Change, ImportResult, Row, Store

logger = logging.getLogger(__name__)

FULL_HEADER = (
    "issuing_state",
    "document_type",
    "document_number",
    "status",
    "reported_on",
    "reporting_country",
    "reference",
    "issue_date",
    "expiry_date",
)
DELTA_HEADER = ("op", *FULL_HEADER)

_STATUSES = frozenset(status.value for status in Status)
_MAX_REFERENCE = 64
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# A line already in normalised form: upper-case codes, a number without
# fillers, a lower-case status, ISO dates and a trimmed reference without
# control characters. For such a line `parse_record_fields` returns the fields
# unchanged (plus the folded number), so one regex match over the joined
# fields replaces nine checks. The unit separator cannot occur inside a field
# that matches, because control characters fail every group. Any other line
# takes the full path, which normalises it or names what is wrong.
_FAST_SEP = "\x1f"
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
# `\s` is str.isspace, the set str.strip removes.
_REF_END = r"[^\s\x00-\x1f\x7f]"
_REF_INNER = r"[^\x00-\x1f\x7f]"
_FAST_ROW_RE = re.compile(
    _FAST_SEP.join(
        (
            r"([A-Z]{3}|D<<)",
            r"([A-Z]{1,2})",
            r"([A-Z0-9]{1,30})",
            "(" + "|".join(sorted(_STATUSES)) + ")",
            f"({_ISO_DATE})",
            r"([A-Z]{3}|D<<)",
            rf"({_REF_END}(?:{_REF_INNER}{{0,{_MAX_REFERENCE - 2}}}{_REF_END})?)",
            f"({_ISO_DATE})?",
            f"({_ISO_DATE})?",
        )
    )
)
# Dates seen valid so far: a list of millions of records repeats a few
# thousand dates, and a set lookup is cheaper than parsing each one again.
_VALID_DATES: set[str] = set()
_VALID_DATES_MAX = 100_000

# Called with (rows read, bytes read, file size in bytes).
ReadProgress = Callable[[int, int, int], None]

# A full import replaces the whole list, so a file that is mostly invalid
# (another separator, shifted columns) or cut short would delete every
# record it failed to carry. By default a full import aborts when more than
# 1% of its lines are invalid. The CLI also aborts one that would remove
# more than 10% of the stored records (--allow-shrink) and caps invalid
# lines at 100 (--max-rejected).
DEFAULT_MAX_REJECTED_SHARE = 0.01
DEFAULT_MAX_SHRINK = 0.10


@dataclass
class ImportReport:
    """Outcome of one CSV import: the store's result plus every rejected line."""

    result: ImportResult
    rows_read: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # Records in the store before a full import; None for a delta.
    previous_count: int | None = None

    @property
    def net_removed(self) -> int:
        """Return how many fewer records the store holds after a full import.

        NOTE: this is the net drop, not the number of records gone: a full
        import that swaps one record for another reports 0.
        """
        if self.previous_count is None:
            return self.result.deleted
        return max(0, self.previous_count - self.result.record_count)


def _date(value: str, column: str, *, required: bool) -> str | None:
    value = value.strip()
    if not value:
        if required:
            raise InvalidRecord(f"missing {column}: expected a date YYYY-MM-DD")
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidRecord(
            f"invalid {column} {value[:20]!r}: expected a date YYYY-MM-DD"
        ) from None


def parse_record_fields(fields: list[str]) -> Row:
    """Validate the nine columns of a full-file line and return the store row."""
    if len(fields) != len(FULL_HEADER):
        raise InvalidRecord(f"expected {len(FULL_HEADER)} columns, found {len(fields)}")
    number = normalize_number(fields[2])
    status = fields[3].strip().lower()
    if status not in _STATUSES:
        raise InvalidRecord(
            f"invalid status {status[:20]!r}: expected one of "
            + ", ".join(sorted(_STATUSES))
        )
    reference = fields[6].strip()
    if not reference or len(reference) > _MAX_REFERENCE:
        raise InvalidRecord(
            f"invalid reference ({len(reference)} characters): expected 1 to "
            f"{_MAX_REFERENCE} characters"
        )
    if _CONTROL_RE.search(reference):
        raise InvalidRecord("invalid reference: it contains control characters")
    return (
        normalize_state(fields[0]),
        normalize_type(fields[1]),
        number,
        fold_number(number),
        status,
        _date(fields[4], "reported_on", required=True) or "",
        normalize_state(fields[5]),
        reference,
        _date(fields[7], "issue_date", required=False),
        _date(fields[8], "expiry_date", required=False),
    )


def _date_ok(value: str | None) -> bool:
    if value is None or value in _VALID_DATES:
        return True
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    if len(_VALID_DATES) < _VALID_DATES_MAX:
        _VALID_DATES.add(value)
    return True


def parse_record_fields_fast(fields: list[str]) -> Row:
    """Same result as `parse_record_fields`, faster for normalised lines."""
    match = _FAST_ROW_RE.fullmatch(_FAST_SEP.join(fields))
    if match is None:
        return parse_record_fields(fields)
    state, doc_type, number, status, reported, country, ref, issued, expires = (
        match.groups()
    )
    if not (_date_ok(reported) and _date_ok(issued) and _date_ok(expires)):
        return parse_record_fields(fields)
    return (
        state,
        doc_type,
        number,
        fold_number(number),
        status,
        reported,
        country,
        ref,
        issued,
        expires,
    )


def parse_change_fields(fields: list[str]) -> Change:
    """Validate a delta line (op first) and return the change."""
    if len(fields) != len(DELTA_HEADER):
        raise InvalidRecord(
            f"expected {len(DELTA_HEADER)} columns, found {len(fields)}"
        )
    op = fields[0].strip().lower()
    if op == "add":
        return Change("add", parse_record_fields(fields[1:]))
    if op == "delete":
        number = normalize_number(fields[3])
        row: Row = (
            normalize_state(fields[1]),
            normalize_type(fields[2]),
            number,
            fold_number(number),
            "",
            "",
            "",
            "",
            None,
            None,
        )
        return Change("delete", row)
    raise InvalidRecord(f"invalid op {op[:20]!r}: expected add or delete")


class _CsvSource:
    """Reads a CSV file line by line, collecting rejected lines on the way."""

    def __init__(
        self,
        path: Path,
        *,
        delta: bool,
        progress: ReadProgress | None,
        max_rejected: int | None,
        max_rejected_share: float | None = None,
        previous_count: int = 0,
        max_shrink: float | None = None,
    ) -> None:
        self.path = path
        self.delta = delta
        self.progress = progress
        self.max_rejected = max_rejected
        self.max_rejected_share = max_rejected_share
        self.previous_count = previous_count
        self.max_shrink = max_shrink
        self.rejected: list[tuple[int, str]] = []
        self.rows_read = 0
        self.accepted = 0
        try:
            self.size = path.stat().st_size
        except OSError as exc:
            raise ImportFailed(f"cannot read {path}: {exc.strerror}") from exc
        self.ends_with_newline = self._ends_with_newline()

    def _ends_with_newline(self) -> bool:
        if self.size == 0:
            return True
        try:
            with self.path.open("rb") as handle:
                handle.seek(-1, io.SEEK_END)
                return handle.read(1) == b"\n"
        except OSError as exc:
            raise ImportFailed(f"cannot read {self.path}: {exc.strerror}") from exc

    def _open(self) -> tuple[io.BufferedReader, io.TextIOWrapper]:
        try:
            raw = self.path.open("rb")
        except OSError as exc:
            raise ImportFailed(f"cannot read {self.path}: {exc.strerror}") from exc
        return raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")

    def _check_header(self, header: list[str] | None) -> None:
        found = tuple(name.strip().lower() for name in header or [])
        expected = DELTA_HEADER if self.delta else FULL_HEADER
        if found == expected:
            return
        if not self.delta and found == DELTA_HEADER:
            raise ImportFailed(
                f"{self.path} is a delta file (first column 'op'); import it "
                "with --delta"
            )
        if self.delta and found == FULL_HEADER:
            raise ImportFailed(
                f"{self.path} is a full file (no 'op' column); import it without "
                "--delta"
            )
        raise ImportFailed(
            f"{self.path} has an unexpected header; the first line must be: "
            + ",".join(expected)
        )

    def _reject(self, line: int, reason: str) -> None:
        self.rejected.append((line, reason))
        if self.max_rejected is not None and len(self.rejected) > self.max_rejected:
            # Raising inside the store's transaction rolls the import back.
            raise ImportFailed(
                f"more than {self.max_rejected} invalid lines in {self.path}; "
                "nothing was imported. Fix the file or raise --max-rejected"
            )

    def _lines(self) -> Iterator[tuple[int, list[str]]]:
        raw, handle = self._open()
        # Each line is held back until the next one is read, because a last
        # line without a newline may be cut short and still parse as valid.
        pending: tuple[int, list[str]] | None = None
        with handle:
            reader = csv.reader(handle)
            try:
                self._check_header(next(reader, None))
                for fields in reader:
                    if not fields:
                        continue
                    self.rows_read += 1
                    if self.progress is not None and self.rows_read % 50_000 == 0:
                        self.progress(self.rows_read, raw.tell(), self.size)
                    if pending is not None:
                        yield pending
                    pending = (reader.line_num, fields)
            except UnicodeDecodeError as exc:
                raise ImportFailed(
                    f"{self.path} is not valid UTF-8 after line {reader.line_num}"
                ) from exc
            except csv.Error as exc:
                raise ImportFailed(
                    f"{self.path} is not valid CSV at line {reader.line_num}: {exc}"
                ) from exc
        if pending is not None:
            if self.ends_with_newline:
                yield pending
            else:
                self._reject(
                    pending[0],
                    "the last line has no newline at its end, so the file may be "
                    "truncated; if the line is complete, end the file with a newline",
                )
        if self.progress is not None:
            self.progress(self.rows_read, self.size, self.size)

    def records(self) -> Iterator[tuple[int, Row]]:
        parse = parse_record_fields_fast
        for line, fields in self._lines():
            try:
                row = parse(fields)
            except InvalidRecord as exc:
                self._reject(line, str(exc))
                continue
            self.accepted += 1
            yield line, row
        if self.accepted == 0:
            # An empty list would answer NO_HIT for every document.
            raise ImportFailed(
                f"{self.path} has no valid records; the current data is kept"
            )
        # Raised before the generator ends, so inside the store's transaction,
        # which rolls back.
        self._check_full_limits()

    def _check_full_limits(self) -> None:
        share = self.max_rejected_share
        invalid = len(self.rejected)
        if share is not None and invalid > share * self.rows_read:
            raise ImportFailed(
                f"{invalid} of {self.rows_read} lines in {self.path} are invalid "
                f"({invalid / self.rows_read:.1%}), over the limit of {share:.1%} "
                "for a full import; nothing was imported. Check that the file is "
                "comma-separated with the expected columns and not truncated, or "
                "raise --max-rejected-percent"
            )
        shrink = self.max_shrink
        removed = self.previous_count - self.accepted
        if shrink is not None and removed > shrink * self.previous_count:
            raise ImportFailed(
                f"{self.path} has {self.accepted} valid records but the store holds "
                f"{self.previous_count}: the full import would remove {removed} "
                f"records ({removed / self.previous_count:.1%}), over the limit of "
                f"{shrink:.0%}; nothing was imported. If the list really shrank, "
                "import it again with --allow-shrink"
            )

    def changes(self) -> Iterator[tuple[int, Change]]:
        for line, fields in self._lines():
            try:
                change = parse_change_fields(fields)
            except InvalidRecord as exc:
                self._reject(line, str(exc))
                continue
            self.accepted += 1
            yield line, change


# NOTE: parsing and validating each line in Python bounds the import at
# roughly 250,000-380,000 rows/s on one core for normalised lines (fast path),
# and the store's insert and index builds come on top (tools/bench_lookup.py).
# Parsing in a second process, overlapped with the insert, is the next step.
def import_csv(
    store: Store,
    path: Path,
    *,
    delta: bool = False,
    progress: ReadProgress | None = None,
    max_rejected: int | None = None,
    max_rejected_share: float | None = DEFAULT_MAX_REJECTED_SHARE,
    max_shrink: float | None = None,
) -> ImportReport:
    """Import a CSV file into `store` in one transaction.

    Invalid lines are skipped and listed in the report with their line
    numbers; a last line without a newline counts as invalid. Raises
    ImportFailed (previous data kept) when the file cannot be read, has the
    wrong header or more than `max_rejected` invalid lines. A full import
    also fails when it has no valid record, when more than
    `max_rejected_share` of its lines are invalid, or when it would hold
    fewer records than the store by more than `max_shrink` of them (None
    turns a limit off). The shrink limit is off by default here because
    tests and tools replace lists on purpose; the CLI turns it on.
    """
    previous = None if delta else store.count()
    source = _CsvSource(
        path,
        delta=delta,
        progress=progress,
        max_rejected=max_rejected,
        max_rejected_share=max_rejected_share,
        previous_count=previous or 0,
        max_shrink=max_shrink,
    )
    logger.info(
        "importing %s (%s, %d bytes)", path, "delta" if delta else "full", source.size
    )
    if delta:
        result = store.import_delta(source.changes())
    else:
        result = store.import_full(source.records())
    rejected = sorted([*source.rejected, *result.rejected])
    logger.info(
        "imported %s: version %s, %d lines read, %d rejected",
        path,
        result.version,
        source.rows_read,
        len(rejected),
    )
    return ImportReport(
        result=result,
        rows_read=source.rows_read,
        rejected=rejected,
        previous_count=previous,
    )
