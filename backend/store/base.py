"""The interface both stores implement, and the row format they share.

A store holds the reported documents, the history of imports (each import
creates a new data version), a change log for offline copies and the hashed
API keys of the terminals.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from backend.errors import StoreUnavailable
from backend.records import (
    DocumentKey,
    LookupAnswer,
    Record,
    Result,
    Status,
    classify,
)

# Column order of the records table and of every row tuple in this package:
# issuing_state, document_type, document_number, folded_number, status,
# reported_on, reporting_country, reference, issue_date, expiry_date. Dates
# are ISO strings so that both stores and the CSV share one text form.
Row = tuple[str, str, str, str, str, str, str, str, str | None, str | None]

RECORD_COLUMNS = (
    "issuing_state",
    "document_type",
    "document_number",
    "folded_number",
    "status",
    "reported_on",
    "reporting_country",
    "reference",
    "issue_date",
    "expiry_date",
)

# Called with the number of rows handled so far during an import.
ProgressCallback = Callable[[int], None]


# A dict lookup costs a fraction of the Status(...) enum call, once per
# record of every HIT and POSSIBLE answer.
_STATUSES = {status.value: status for status in Status}


def row_to_record(row: Sequence[object]) -> Record:
    """Build a Record from a row in RECORD_COLUMNS order (folded_number is skipped)."""
    issue = row[8]
    expiry = row[9]
    status = str(row[4])
    return Record(
        issuing_state=str(row[0]),
        document_type=str(row[1]),
        document_number=str(row[2]),
        status=_STATUSES.get(status) or Status(status),
        reported_on=_to_date(row[5]),
        reporting_country=str(row[6]),
        reference=str(row[7]),
        issue_date=_to_date(issue) if issue else None,
        expiry_date=_to_date(expiry) if expiry else None,
    )


def _to_date(value: object) -> dt.date:
    # PostgreSQL returns date objects, SQLite returns the ISO text.
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def record_to_row(record: Record) -> Row:
    from backend.records import fold_number

    return (
        record.issuing_state,
        record.document_type,
        record.document_number,
        fold_number(record.document_number),
        record.status.value,
        record.reported_on.isoformat(),
        record.reporting_country,
        record.reference,
        record.issue_date.isoformat() if record.issue_date else None,
        record.expiry_date.isoformat() if record.expiry_date else None,
    )


@dataclass(frozen=True, slots=True)
class Change:
    """One line of a delta import: add (insert or replace) or delete a record.

    A delete names the record by issuing state, document type and number, so
    `row` only needs those three fields filled in for it.
    """

    op: str  # "add" or "delete"
    row: Row


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What a store did in one import transaction."""

    version: str
    kind: str  # "full" or "delta"
    added: int
    deleted: int
    # Source line numbers with the reason they were not loaded, found by the
    # store itself (duplicates, deletes of records that do not exist).
    rejected: tuple[tuple[int, str], ...] = ()
    record_count: int = 0


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of the change feed.

    With `reset` set, the reader's copy is older than the last full import (or
    it has none), so it must drop its copy and load `added` as a snapshot.
    `next_cursor` is None on the last page; otherwise pass it back as
    `cursor` with the same `since` to get the next page.
    """

    version: str
    reset: bool
    added: tuple[Record, ...]
    deleted: tuple[DocumentKey, ...]
    next_cursor: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "reset": self.reset,
            "added": [record.to_json() for record in self.added],
            "deleted": [dataclasses.asdict(key) for key in self.deleted],
            "next_cursor": self.next_cursor,
        }


def new_version_name(seq: int, now: dt.datetime | None = None) -> str:
    """Return a data version name: the import sequence number, the UTC time
    and a random tag.

    The tag keeps the names of two stores apart when both imported with the
    same sequence number in the same second. An offline copy requests the
    changes since its version, so a service that took over the URL with
    another list must not find that version among its own.
    """
    moment = now or dt.datetime.now(dt.UTC)
    return f"{seq}-{moment.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


class AsyncReader(Protocol):
    """Lookups of a store that wait for the database on the event loop."""

    async def find_candidates(
        self, keys: Sequence[DocumentKey]
    ) -> tuple[str, list[list[Row]]]:
        """Return what `Store.find_candidates` returns, with the same errors."""

    async def close(self) -> None:
        """Release the reader's connections, on the loop that opened it."""


# Called with the (line, reason) of the rejected duplicates of a full import
# before it commits; raising rolls the import back.
DuplicatesCheck = Callable[[Sequence[tuple[int, str]]], None]


class Store(abc.ABC):
    """A list of reported documents that answers lookups.

    Implementations must be safe to call from several threads at once.
    Every method raises StoreUnavailable when the database cannot be reached
    and StoreError for other database failures.
    """

    kind: str = "store"

    @abc.abstractmethod
    def find_candidates(
        self, keys: Sequence[DocumentKey]
    ) -> tuple[str, list[list[Row]]]:
        """Return the data version and, per key, the rows with the key's issuing
        state and folded number, read in one consistent snapshot.

        Raises StoreUnavailable when no data has been imported yet, because
        an empty list would turn every lookup into a false NO_HIT.
        """

    @abc.abstractmethod
    def data_version(self) -> str | None:
        """Return the current data version, or None before the first import."""

    @abc.abstractmethod
    def count(self) -> int:
        """Return the number of records in the current data version."""

    @abc.abstractmethod
    def import_full(
        self,
        rows: Iterable[tuple[int, Row]],
        *,
        progress: ProgressCallback | None = None,
        check_duplicates: DuplicatesCheck | None = None,
    ) -> ImportResult:
        """Replace all records by `rows` (source line, row) in one transaction.

        On any failure, including the process being killed, the previous
        records and version stay as they were. Later duplicates of a
        (state, number, type) key are rejected with their line numbers, and
        passed to `check_duplicates` before the commit; an exception it
        raises rolls the import back.
        """

    @abc.abstractmethod
    def import_delta(
        self,
        changes: Iterable[tuple[int, Change]],
        *,
        progress: ProgressCallback | None = None,
    ) -> ImportResult:
        """Apply adds and deletes in one transaction and log them for the feed."""

    @abc.abstractmethod
    def changes_since(
        self, since: str | None, *, cursor: int = 0, limit: int = 10_000
    ) -> ChangePage:
        """Return the records added and deleted after version `since`."""

    @abc.abstractmethod
    def raw_select(self, issuing_state: str, folded_number: str) -> list[Row]:
        """Run the plain indexed SELECT of a lookup on the state and folded
        number. The benchmark times it as the anchor of Store.lookup."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise StoreUnavailable unless the store answers a query."""

    @abc.abstractmethod
    def add_api_key(self, terminal_id: str, key_hash: str) -> None:
        """Store the hash of a new API key for a terminal."""

    @abc.abstractmethod
    def terminal_for_key(self, key_hash: str) -> str | None:
        """Return the terminal that owns the key with this hash, if any."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    async def open_async_reader(self) -> AsyncReader | None:
        """Open an AsyncReader on the running event loop, or return None when
        the store has none and its lookups run in threads."""
        return None

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        """Look up many keys in one snapshot; answers keep the order of `keys`.

        All answers of one call share one check time, the snapshot's. Keys
        without a candidate share one NO_HIT answer object (answers are
        frozen), which also lets the service serialise it once per batch.
        """
        if not keys:
            return []
        version, candidates = self.find_candidates(keys)
        checked_at = dt.datetime.now(dt.UTC)
        kind = self.kind
        no_hit = LookupAnswer(
            Result.NO_HIT, data_version=version, source=kind, checked_at=checked_at
        )
        answers: list[LookupAnswer] = []
        append = answers.append
        for key, rows in zip(keys, candidates, strict=True):
            if not rows:
                append(no_hit)
                continue
            number = key.document_number
            exact = [row_to_record(r) for r in rows if r[2] == number]
            folded = [row_to_record(r) for r in rows if r[2] != number]
            answer = classify(key, exact, folded)
            # Built directly: dataclasses.replace costs several times more,
            # which adds up over a batch of thousands of keys.
            append(
                LookupAnswer(
                    answer.result,
                    answer.records,
                    data_version=version,
                    type_mismatch=answer.type_mismatch,
                    source=kind,
                    checked_at=checked_at,
                )
            )
        return answers

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        return self.lookup_many([key])[0]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def require_version(version: str | None) -> str:
    """Return `version`, or raise StoreUnavailable if nothing was imported yet."""
    if version is None:
        raise StoreUnavailable(
            "the store holds no imported data yet; run 'kiosk-backend import FILE'"
        )
    return version


def version_time(version: str | None) -> dt.datetime | None:
    """Return the UTC time encoded in a version name from new_version_name.

    Names from before the random tag ("7-20261204T060000Z") parse too.
    """
    if not version or "-" not in version:
        return None
    stamp = version.split("-", 2)[1]
    try:
        parsed = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC)
