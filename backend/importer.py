"""CSV import of reported documents, full or delta, into a store.

Full file header:
    issuing_state,document_type,document_number,status,reported_on,
    reporting_country,reference,issue_date,expiry_date
A delta file puts an `op` column (`add` or `delete`) first. Dates are ISO
8601 (YYYY-MM-DD); issue and expiry dates may be empty, and a delete only
needs the state, type and number.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import fcntl
import io
import itertools
import json
import logging
import marshal
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from backend.errors import ImportFailed, InvalidRecord
from backend.records import (
    Status,
    fold_number,
    normalize_number,
    normalize_state,
    normalize_type,
)
from backend.store.base import Change, ImportResult, Row, Store
from backend.store.bulk import LineRow, RowBatches, encode_copy_row

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
# The same form as one raw CSV line with its line break. Here the reference
# also excludes the comma and the double quote, so csv.reader would split a
# matching line at its commas exactly. Any other line, quoted ones included,
# goes through csv.reader and `parse_record_fields_fast`.
_RAW_REF_END = r'[^\s\x00-\x1f\x7f,"]'
_RAW_REF_INNER = r'[^\x00-\x1f\x7f,"]'
_FAST_LINE_RE = re.compile(
    ",".join(
        (
            r"([A-Z]{3}|D<<)",
            r"([A-Z]{1,2})",
            r"([A-Z0-9]{1,30})",
            "(" + "|".join(sorted(_STATUSES)) + ")",
            f"({_ISO_DATE})",
            r"([A-Z]{3}|D<<)",
            rf"({_RAW_REF_END}(?:{_RAW_REF_INNER}{{0,{_MAX_REFERENCE - 2}}}"
            rf"{_RAW_REF_END})?)",
            f"({_ISO_DATE})?",
            f"({_ISO_DATE})?",
        )
    )
    + r"\r?\n"
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
# Invalid lines quoted, with their reasons, in the message of a rejected import.
REJECTED_SHOWN = 5
DEFAULT_MAX_SHRINK = 0.10

# A full import of a file at least this large is parsed in a child process
# while the store loads the rows parsed so far, if a CPU is idle (see
# `_parse_in_child_by_default`). Starting the child (a new interpreter)
# takes about 0.2 s, roughly the time one core needs to parse 4 MiB.
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
# The child is used when at least this much of a CPU was idle over a sample
# of IDLE_SAMPLE_S seconds.
IDLE_CPU_NEEDED = 0.75
IDLE_SAMPLE_S = 0.2
# Files of at least this size are sampled for LONG_IDLE_SAMPLE_S instead:
# one busy moment in a 0.2 s sample turned the child off for a whole
# 30-million-line import, which then took 357 s against 231 s. A second is
# little against such an import.
LONG_SAMPLE_MIN_BYTES = 256 * 1024 * 1024
LONG_IDLE_SAMPLE_S = 1.0
# Rows per message from the parser process: about 300 KB of COPY text or
# 600 KB of row tuples, so a message fits in the widened pipe (below) and
# the child rarely waits for the parent to be scheduled.
_BATCH_ROWS = 5_000
# Pipe buffer to request, in bytes. Linux caps it at fs.pipe-max-size
# (1 MiB by default) for unprivileged processes; the default is 64 KiB,
# which made every message a dozen context switches.
_PIPE_BYTES = 1 << 20


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
    row = _row_from_groups(match)
    if row is None:
        return parse_record_fields(fields)
    return row


def _row_from_line_match(match: re.Match[str]) -> Row:
    """Return the row of a line that `_FAST_LINE_RE` matched."""
    row = _row_from_groups(match)
    if row is None:
        # Raises InvalidRecord naming the date. The line has no quotes.
        return parse_record_fields(match.string.rstrip("\r\n").split(","))
    return row


def _row_from_groups(match: re.Match[str]) -> Row | None:
    """Return the row of a fast-path match, or None when a date is invalid."""
    state, doc_type, number, status, reported, country, ref, issued, expires = (
        match.groups()
    )
    if not (_date_ok(reported) and _date_ok(issued) and _date_ok(expires)):
        return None
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
        if header is None:
            raise ImportFailed(
                f"{self.path} is empty; nothing was imported. A list starts with "
                "the header line " + ",".join(expected) + " and one line per record"
            )
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
        self._check_max_rejected()

    def _check_max_rejected(self) -> None:
        if self.max_rejected is not None and len(self.rejected) > self.max_rejected:
            # Raising inside the store's transaction rolls the import back.
            raise ImportFailed(
                f"more than {self.max_rejected} invalid lines in {self.path}; "
                "nothing was imported. Fix the file or raise --max-rejected. "
                + self._first_rejected()
            )

    def _first_rejected(self) -> str:
        """Describe the first rejected lines for the message of a rejected
        import, because the report with every line is not printed then."""
        quoted = "; ".join(
            f"line {line}: {reason}" for line, reason in self.rejected[:REJECTED_SHOWN]
        )
        more = len(self.rejected) - REJECTED_SHOWN
        return f"First invalid lines: {quoted}" + (f"; {more} more" if more > 0 else "")

    def _lines(
        self, fast_re: re.Pattern[str] | None = None
    ) -> Iterator[tuple[int, list[str] | re.Match[str]]]:
        """Yield (line number, fields) per record, or the match of `fast_re`.

        A physical line that `fast_re` matches whole is yielded as the match,
        without the csv module. Any other line starts a csv.reader record,
        which may take more lines when a quoted field spans them.
        """
        raw, handle = self._open()
        # Each line is held back until the next one is read, because a last
        # line without a newline may be cut short and still parse as valid.
        pending: tuple[int, list[str] | re.Match[str]] | None = None
        line_num = 0
        reader = None
        with handle:
            lines = iter(handle)
            try:
                reader = csv.reader(lines)
                self._check_header(next(reader, None))
                line_num = reader.line_num
                reader = None
                fullmatch = fast_re.fullmatch if fast_re is not None else None
                for text in lines:
                    line_num += 1
                    item: list[str] | re.Match[str] | None = None
                    if fullmatch is not None:
                        item = fullmatch(text)
                    if item is None:
                        # The csv module reads only the lines of this record.
                        reader = csv.reader(itertools.chain((text,), lines))
                        fields = next(reader, None)
                        line_num += reader.line_num - 1
                        reader = None
                        if not fields:
                            continue
                        item = fields
                    self.rows_read += 1
                    if self.progress is not None and self.rows_read % 50_000 == 0:
                        self.progress(self.rows_read, raw.tell(), self.size)
                    if pending is not None:
                        yield pending
                    pending = (line_num, item)
            except UnicodeDecodeError as exc:
                # The text layer decodes ahead of the line being parsed, so
                # the file is scanned again for the line with the bad byte.
                bad_line = _first_invalid_utf8_line(self.path)
                if bad_line is not None:
                    where = f"at line {bad_line}"
                else:
                    where = f"after line {line_num}" if line_num else "near its start"
                raise ImportFailed(
                    f"{self.path} is not valid UTF-8 {where}; nothing was "
                    "imported. Save the list as UTF-8 CSV (a spreadsheet's "
                    "'CSV UTF-8' format), or check that it is the right file"
                ) from exc
            except csv.Error as exc:
                if reader is not None:
                    line_num += reader.line_num - 1
                if "field larger than field limit" in str(exc):
                    raise ImportFailed(
                        f"{self.path} has a field of more than "
                        f"{csv.field_size_limit()} characters ending at line "
                        f"{line_num}, often a quote that is never closed; nothing "
                        "was imported. Close the quote or shorten the field"
                    ) from exc
                raise ImportFailed(
                    f"{self.path} is not valid CSV at line {line_num}: {exc}"
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
        for line, item in self._lines(_FAST_LINE_RE):
            try:
                if isinstance(item, list):
                    row = parse(item)
                else:
                    row = _row_from_line_match(item)
            except InvalidRecord as exc:
                self._reject(line, str(exc))
                continue
            self.accepted += 1
            yield line, row
        if self.accepted == 0:
            # An empty list would answer NO_HIT for every document.
            raise ImportFailed(
                f"{self.path} has no valid records; the current data is kept"
                + (f". {self._first_rejected()}" if self.rejected else "")
            )
        # Raised before the generator ends, so inside the store's transaction,
        # which rolls back.
        self._check_full_limits()

    def count_duplicates(self, duplicates: Sequence[tuple[int, str]]) -> None:
        """Count a full import's duplicate lines, which the store finds only
        after parsing, as rejected, and raise ImportFailed if that puts the
        import over a limit."""
        if not duplicates:
            return
        self.accepted -= len(duplicates)
        # Sorted first, so that a message quotes the first invalid lines
        # of the file, duplicates among them.
        self.rejected = sorted([*self.rejected, *duplicates])
        self._check_max_rejected()
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
                "raise --max-rejected-percent. " + self._first_rejected()
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
            assert isinstance(fields, list)
            try:
                change = parse_change_fields(fields)
            except InvalidRecord as exc:
                self._reject(line, str(exc))
                continue
            self.accepted += 1
            yield line, change
        if self.accepted == 0:
            # Raised inside the store's transaction, so no empty version is
            # recorded for a delta without a valid line.
            raise ImportFailed(
                f"{self.path} has no valid changes; nothing was imported"
                + (f". {self._first_rejected()}" if self.rejected else "")
            )


# Frames on the pipe from the parser process: an 8-byte big-endian length,
# then a marshal-encoded tuple.
_FRAME_HEADER = struct.Struct(">Q")


def _first_invalid_utf8_line(path: Path) -> int | None:
    """Return the line number of the first byte sequence in `path` that is
    not UTF-8, or None if there is none or the file cannot be read."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    # exc.object is the bytes the decoder held back, which
                    # contain no newline, followed by this chunk.
                    return lines_before + exc.object[: exc.start].count(b"\n") + 1
                lines_before += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        # A multi-byte sequence cut off at the end of the file.
        return lines_before + 1
    except OSError:
        return None
    return None


def _write_frame(pipe: BinaryIO, message: tuple[Any, ...]) -> None:
    data = marshal.dumps(message)
    pipe.write(_FRAME_HEADER.pack(len(data)))
    pipe.write(data)


def _read_exact(pipe: BinaryIO, size: int) -> bytes | None:
    data = pipe.read(size)
    if len(data) < size:
        return None
    return data


def _send_batch(
    pipe: BinaryIO,
    form: str,
    batch: list[tuple[int, Row]],
    rows_read: int,
    bytes_read: int,
) -> None:
    payload: Any
    if form == "copy":
        text = "".join([encode_copy_row(line, row) + "\n" for line, row in batch])
        payload = text.encode("utf-8")
    else:
        payload = [(line, *row) for line, row in batch]
    _write_frame(pipe, ("rows", payload, len(batch), rows_read, bytes_read))
    pipe.flush()


def _parse_to_pipe(
    pipe: BinaryIO, path: str, form: str, options: dict[str, Any]
) -> None:
    """Parse a full-import file and write its rows to `pipe` in frames.

    `form` is "rows" (lists of (line, *row) tuples) or "copy" (COPY text
    bytes). The frames are any number of ("rows", payload, row count, rows
    read, bytes read), then one ("done", rejected lines, rows read) or
    ("failed", ImportFailed message).
    """
    bytes_read = 0

    def track(rows: int, done: int, size: int) -> None:
        nonlocal bytes_read
        bytes_read = done

    result: tuple[Any, ...]
    try:
        source = _CsvSource(Path(path), delta=False, progress=track, **options)
        batch: list[tuple[int, Row]] = []
        for item in source.records():
            batch.append(item)
            if len(batch) >= _BATCH_ROWS:
                _send_batch(pipe, form, batch, source.rows_read, bytes_read)
                batch = []
        if batch:
            _send_batch(pipe, form, batch, source.rows_read, bytes_read)
        result = ("done", source.rejected, source.rows_read)
    except ImportFailed as exc:
        result = ("failed", str(exc))
    _write_frame(pipe, result)
    pipe.flush()


def parse_worker_main(argv: Sequence[str]) -> int:
    """Run the parser process: argv is the pipe fd, path, form and options JSON."""
    fd, path, form, options = int(argv[0]), argv[1], argv[2], json.loads(argv[3])
    try:
        with os.fdopen(fd, "wb") as pipe:
            _parse_to_pipe(pipe, path, form, options)
    except BrokenPipeError:
        # The parent is gone (killed, or it stopped reading after an error),
        # so the rest of the file is not needed.
        return 1
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; the parent rolls back.
        return 130
    return 0


def _widen_pipe(fd: int) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if set_size is None:
        return
    try:
        fcntl.fcntl(fd, set_size, _PIPE_BYTES)
    except OSError:
        # Above fs.pipe-max-size or not allowed: keep the default size, which
        # is slower under load but correct.
        logger.debug("cannot widen the parser pipe to %d bytes", _PIPE_BYTES)


def _worker_command(
    write_fd: int, path: Path, form: str, options: dict[str, Any]
) -> list[str]:
    code = (
        "import sys; from backend.importer import parse_worker_main; "
        "sys.exit(parse_worker_main(sys.argv[1:]))"
    )
    return [
        sys.executable,
        "-c",
        code,
        str(write_fd),
        str(path),
        form,
        json.dumps(options),
    ]


def _worker_env() -> dict[str, str]:
    # The child imports this package from where the parent found it.
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


class _ChildParsedRows(RowBatches):
    """Rows of a full import, parsed by a child process while the store loads.

    The child runs `_CsvSource`, so validation, rejected lines and the
    rejection limits are those of the in-process path. The ImportFailed it
    reports is raised again here, inside the store's transaction. The child
    is a fresh interpreter (not a fork), so it inherits no locks from the
    parent's threads and needs no main-module guard in the caller.
    """

    def __init__(
        self,
        path: Path,
        options: dict[str, Any],
        progress: ReadProgress | None,
        size: int,
    ) -> None:
        self.path = path
        self.options = options
        self.progress = progress
        self.size = size
        self.rejected: list[tuple[int, str]] = []
        self.rows_read = 0
        self._started = False
        self._process: subprocess.Popen[bytes] | None = None

    def row_batches(self) -> Iterator[Sequence[LineRow]]:
        for payload, _ in self._messages("rows"):
            yield payload

    def copy_chunks(self) -> Iterator[tuple[bytes, int]]:
        yield from self._messages("copy")

    def _start(self, form: str) -> tuple[subprocess.Popen[bytes], BinaryIO]:
        if self._started:
            raise RuntimeError("the rows of an import can be read only once")
        self._started = True
        read_fd, write_fd = os.pipe()
        _widen_pipe(write_fd)
        command = _worker_command(write_fd, self.path, form, self.options)
        try:
            process = subprocess.Popen(
                command,
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                env=_worker_env(),
            )
        except OSError as exc:
            os.close(read_fd)
            raise ImportFailed(
                f"cannot start the parser process for {self.path}: {exc}"
            ) from exc
        finally:
            os.close(write_fd)
        self._process = process
        return process, os.fdopen(read_fd, "rb")

    def _messages(self, form: str) -> Iterator[tuple[Any, int]]:
        """Start the parser process; yield (payload, row count) per batch."""
        process, pipe = self._start(form)
        try:
            while True:
                header = _read_exact(pipe, _FRAME_HEADER.size)
                data = None
                if header is not None:
                    data = _read_exact(pipe, _FRAME_HEADER.unpack(header)[0])
                if data is None:
                    code = process.wait()
                    raise ImportFailed(
                        f"the parser process for {self.path} ended without a "
                        f"result (exit code {code}); nothing was imported"
                    )
                message = marshal.loads(data)
                kind = message[0]
                if kind == "rows":
                    self.rows_read = message[3]
                    if self.progress is not None:
                        self.progress(self.rows_read, message[4], self.size)
                    yield message[1], message[2]
                elif kind == "done":
                    self.rejected = [(int(n), str(r)) for n, r in message[1]]
                    self.rows_read = message[2]
                    if self.progress is not None:
                        self.progress(self.rows_read, self.size, self.size)
                    return
                else:
                    raise ImportFailed(str(message[1]))
        finally:
            pipe.close()
            self.close()

    def close(self) -> None:
        """Stop the parser process if it still runs, and wait for it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
        process.wait()


def _idle_cpus(sample_s: float = IDLE_SAMPLE_S) -> float | None:
    """Return how many of the machine's CPUs sat idle over a short sample.

    Reads the total CPU times from /proc/stat twice, `sample_s` apart.
    Returns None where /proc/stat cannot be read (not Linux).
    """

    def totals() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = handle.readline().split()
        except OSError:
            return None
        if len(fields) < 5 or fields[0] != "cpu":
            return None
        # user nice system idle iowait irq softirq steal; the guest times
        # that follow are already counted in user and nice.
        ticks = [int(value) for value in fields[1:9]]
        return ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)

    before = totals()
    time.sleep(sample_s)
    after = totals()
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return share * (os.cpu_count() or 1)


def _parse_in_child_by_default(size: int) -> bool:
    """Return whether a full import of `size` bytes should parse in a child.

    Only while a CPU is idle. On the 2-vCPU benchmark VM under load 6 to 8,
    the child made imports of 1 million lines 15-35% slower than parsing in
    this process. The child adds pipe and marshal work, and the two
    processes wait for each other's time slices. At load 0.6 to 0.8 the
    child made an import of 500,000 lines into SQLite 30% faster (8.7 s
    against 12.4 s).

    Idle CPUs are sampled from /proc/stat. The 1-minute load average, used
    before, lags: after a busy minute (such as writing the file) it stays
    near 1 on an idle machine, so the child was not used when it helped.
    """
    if size < PARALLEL_MIN_BYTES:
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return False
    sample_s = LONG_IDLE_SAMPLE_S if size >= LONG_SAMPLE_MIN_BYTES else IDLE_SAMPLE_S
    idle = _idle_cpus(sample_s)
    chosen = os.getloadavg()[0] + 1 <= cpus if idle is None else idle >= IDLE_CPU_NEEDED
    logger.info(
        "parser process %s: %s of %d CPUs idle over %.1f s",
        "used" if chosen else "not used",
        "unknown" if idle is None else f"{idle:.2f}",
        cpus,
        sample_s,
    )
    return chosen


def import_csv(
    store: Store,
    path: Path,
    *,
    delta: bool = False,
    progress: ReadProgress | None = None,
    max_rejected: int | None = None,
    max_rejected_share: float | None = DEFAULT_MAX_REJECTED_SHARE,
    max_shrink: float | None = None,
    parallel: bool | None = None,
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

    With `parallel` a full import parses the file in a child process, which
    overlaps parsing with the store's load. None chooses it for files of at
    least PARALLEL_MIN_BYTES while a CPU is idle. Delta imports always parse
    in this process.
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
    if parallel is None:
        parallel = not delta and _parse_in_child_by_default(source.size)
    if delta:
        result = store.import_delta(source.changes())
    elif parallel:
        options = {
            "max_rejected": max_rejected,
            "max_rejected_share": max_rejected_share,
            "previous_count": previous or 0,
            "max_shrink": max_shrink,
        }
        rows = _ChildParsedRows(path, options, progress, source.size)

        def check_duplicates(duplicates: Sequence[tuple[int, str]]) -> None:
            # The store calls this once the parser process has finished, so
            # its counts are final.
            source.rejected = list(rows.rejected)
            source.rows_read = rows.rows_read
            source.accepted = rows.rows_read - len(rows.rejected)
            source.count_duplicates(duplicates)

        try:
            result = store.import_full(rows, check_duplicates=check_duplicates)
        finally:
            rows.close()
    else:
        result = store.import_full(
            source.records(), check_duplicates=source.count_duplicates
        )
    # A full import's duplicates are in source.rejected already.
    rejected = (
        sorted([*source.rejected, *result.rejected]) if delta else source.rejected
    )
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
