"""SQLite store: one file in WAL mode, the embedded default.

Readers each get their own connection (one per thread), so lookups run while
an import writes: WAL gives every read transaction a consistent snapshot,
and the import becomes visible only when it commits.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from backend.errors import StoreError, StoreUnavailable
from backend.records import DocumentKey
from backend.store.base import (
    RECORD_COLUMNS,
    Change,
    ChangePage,
    DuplicatesCheck,
    ImportResult,
    ProgressCallback,
    Row,
    Store,
    new_version_name,
    require_version,
    row_to_record,
)
from backend.store.bulk import RowBatches

logger = logging.getLogger(__name__)

_COLS = ", ".join(RECORD_COLUMNS)
_MARKS = ", ".join("?" for _ in RECORD_COLUMNS)

_RECORDS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    issuing_state TEXT NOT NULL,
    document_type TEXT NOT NULL,
    document_number TEXT NOT NULL,
    folded_number TEXT NOT NULL,
    status TEXT NOT NULL,
    reported_on TEXT NOT NULL,
    reporting_country TEXT NOT NULL,
    reference TEXT NOT NULL,
    issue_date TEXT,
    expiry_date TEXT
)
"""

# One index serves lookups with its first two columns, and exact matches
# and deletes with all four. The folded number is a function of the number,
# so the index is unique on (state, number, type) too. Stores imported
# before it have two indexes, records_exact and records_folded, until their
# next full import. Every query below works with either layout.
_KEY_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records"
    " (issuing_state, folded_number, document_number, document_type)"
)
_OLD_KEY_INDEXES = ("records_exact", "records_folded")
# WHERE clause of one exact key: state, folded number, number, type.
_EXACT_KEY = (
    "issuing_state = ? AND folded_number = ?"
    " AND document_number = ? AND document_type = ?"
)

_SCHEMA = [
    _RECORDS_TABLE.format(name="records"),
    _KEY_INDEX,
    """CREATE TABLE IF NOT EXISTS versions (
        seq INTEGER PRIMARY KEY,
        version TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        record_count INTEGER NOT NULL
    )""",
    # Rows of delta imports since the last full import, for the change feed.
    """CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY,
        version_seq INTEGER NOT NULL,
        op TEXT NOT NULL,
        issuing_state TEXT NOT NULL,
        document_type TEXT NOT NULL,
        document_number TEXT NOT NULL,
        folded_number TEXT,
        status TEXT,
        reported_on TEXT,
        reporting_country TEXT,
        reference TEXT,
        issue_date TEXT,
        expiry_date TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS changes_version ON changes (version_seq, seq)",
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_hash TEXT PRIMARY KEY,
        terminal_id TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
]

_SELECT_FOLDED = (
    f"SELECT {_COLS} FROM records WHERE issuing_state = ? AND folded_number = ?"
)
_BUSY_TIMEOUT_S = 10.0
# Keys per batch query: three bound values each, well under SQLite's default
# limit of 32,766 variables (since SQLite 3.32).
_JOIN_CHUNK = 1000
_R_COLS = ", ".join(f"r.{c}" for c in RECORD_COLUMNS)


@functools.lru_cache(maxsize=64)
def _join_sql(size: int) -> str:
    # Joining a VALUES list lets SQLite probe the folded index once per key
    # inside one statement: about 5x cheaper per key than one query each.
    values = ", ".join("(?, ?, ?)" for _ in range(size))
    return (
        f"SELECT k.column1, {_R_COLS} FROM (VALUES {values}) AS k"
        " JOIN records r ON r.issuing_state = k.column2"
        " AND r.folded_number = k.column3"
    )


# One statement reads the version and the rows, so both come from the same
# snapshot without an explicit transaction: the cheapest path for one key.
# `emptied` flags a records table emptied behind the store's back, in the
# same snapshot, for the price of one b-tree probe.
_FIND_ONE = (
    f"SELECT v.version, v.emptied, {_R_COLS} FROM"
    " (SELECT version,"
    "  record_count > 0 AND NOT EXISTS (SELECT 1 FROM records) AS emptied"
    "  FROM versions ORDER BY seq DESC LIMIT 1) AS v"
    " LEFT JOIN records r ON r.issuing_state = ? AND r.folded_number = ?"
)


def _find_one(
    conn: sqlite3.Connection, key: DocumentKey
) -> tuple[str, list[list[Row]], bool]:
    """Return the version, the candidate rows and whether the table was emptied."""
    rows = conn.execute(_FIND_ONE, (key.issuing_state, key.folded_number)).fetchall()
    if not rows:
        require_version(None)
    found: list[Row] = [row[2:] for row in rows if row[2] is not None]
    return str(rows[0][0]), [found], bool(rows[0][1])


def _find_many(
    conn: sqlite3.Connection, keys: Sequence[DocumentKey]
) -> list[list[Row]]:
    found: list[list[Row]] = [[] for _ in keys]
    for start in range(0, len(keys), _JOIN_CHUNK):
        chunk = keys[start : start + _JOIN_CHUNK]
        params: list[object] = []
        for offset, key in enumerate(chunk):
            params.extend((start + offset, key.issuing_state, key.folded_number))
        for row in conn.execute(_join_sql(len(chunk)), params):
            found[row[0]].append(row[1:])
    return found


# Readers map the store file into memory and read pages from the mapping,
# where they would copy each page with a read() call. With 3 million
# records, HTTP batches of 250 rose from 97,000 to 107,000 documents/s to
# 128,000 to 131,000, and single lookups from 7,700 to 8,700/s to 9,200 to
# 10,400/s (2 vCPUs, 2 service workers). SQLite caps the mapping at its
# compile-time limit, 2 GiB in Python's builds, and reads the rest of a
# larger file as before. The mapped pages are the kernel's page cache, which
# ps counts in a reader's resident memory.
# NOTE: a read error on a mapped page (a failing disk) stops the process
# with SIGBUS, where read() would raise an error. A kiosk then gets no
# response and shows the check as not done, as for any lost service.
_READER_MMAP_BYTES = 1 << 40


def _create_private(path: Path) -> None:
    """Create an empty file that only its owner can read and write.

    The list contains document numbers, and SQLite gives its -wal and -shm
    files the mode of the database file.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        # Another process created it meanwhile; its mode stays as it is.
        pass
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create store file {path}: {exc.strerror}"
        ) from exc


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise StoreUnavailable(
                    f"store file {self.path} not found; import data into it first"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # Set while the records do not match the versions table; lookups
        # then raise StoreUnavailable with this message.
        self._damage: str | None = None
        conn = self._connect()
        try:
            with self._lock:
                conn.execute("PRAGMA journal_mode=WAL")
                _create_schema(conn)
            self._damage = _find_damage(conn, self.path, exact=True)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(
                f"cannot open store file {self.path}: {exc}"
            ) from exc
        conn.close()
        self._identity = self._file_identity()
        if self._damage is not None:
            # Opening still succeeds, so that a full import can repair it.
            logger.error("%s", self._damage)
        logger.info("opened SQLite store %s", self.path)

    # -- connections -----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            # NORMAL keeps committed WAL frames across a process kill; only a
            # power loss can drop the last transactions.
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot open store file {self.path}: {exc}"
            ) from exc
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        self._check_file()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute(f"PRAGMA mmap_size={_READER_MMAP_BYTES}")
            self._local.conn = conn
            self._local.data_version = None
            self._local.version = None
            self._local.checked_data_version = None
            self._local.counted_data_version = None
            with self._lock:
                self._all.append(conn)
        return conn

    def _file_identity(self) -> tuple[int, int]:
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"store file {self.path} is missing") from exc
        return (info.st_dev, info.st_ino)

    def _check_file(self) -> None:
        # An open connection keeps reading a deleted file through its inode,
        # so a removed or replaced file is detected here, not by SQLite.
        if self._file_identity() != self._identity:
            raise StoreUnavailable(
                f"store file {self.path} was replaced; restart the service"
            )

    def _cached_version(self, conn: sqlite3.Connection) -> str | None:
        # PRAGMA data_version changes only when another connection commits,
        # so the versions table is read again only after an import.
        changed = conn.execute("PRAGMA data_version").fetchone()[0]
        if changed != self._local.data_version:
            row = conn.execute(
                "SELECT version FROM versions ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            self._local.version = row[0] if row else None
            self._local.data_version = changed
        version: str | None = self._local.version
        return version

    def _ensure_intact(self, conn: sqlite3.Connection, *, exact: bool) -> None:
        """Raise StoreUnavailable when the records do not match `versions`.

        The check runs again only after another connection committed (PRAGMA
        data_version changed), or with `exact` after such a commit since the
        last exact check. The quick form sees a missing table and a table
        emptied under a non-zero count; the exact form compares COUNT(*).
        A damage found stays until a check after a later commit passes.
        """
        changed = conn.execute("PRAGMA data_version").fetchone()[0]
        seen = (
            self._local.counted_data_version
            if exact
            else self._local.checked_data_version
        )
        if changed != seen:
            # An exact count found damage that the quick form cannot see.
            exact = exact or self._damage is not None
            damage = _find_damage(conn, self.path, exact=exact)
            self._damage = damage
            self._local.checked_data_version = changed
            if exact:
                self._local.counted_data_version = changed
        if self._damage is not None:
            raise StoreUnavailable(self._damage)

    # -- reads -----------------------------------------------------------

    def find_candidates(
        self, keys: Sequence[DocumentKey]
    ) -> tuple[str, list[list[Row]]]:
        conn = self._reader()
        try:
            if len(keys) == 1 and self._damage is None:
                version, found, emptied = _find_one(conn, keys[0])
                if not emptied:
                    return version, found
            # Batches, a damaged store and an emptied table take the full
            # check, which raises StoreUnavailable while the damage lasts.
            self._ensure_intact(conn, exact=False)
            if len(keys) == 1:
                version, found, emptied = _find_one(conn, keys[0])
                if emptied:
                    raise StoreUnavailable(
                        f"store {self.path} is damaged: its records table is "
                        "empty; re-import the full list"
                    )
                return version, found
            conn.execute("BEGIN")
            try:
                version = require_version(self._cached_version(conn))
                found = _find_many(conn, keys)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"lookup in {self.path} failed: {exc}") from exc
        return version, found

    def raw_select(self, issuing_state: str, folded_number: str) -> list[Row]:
        conn = self._reader()
        rows: list[Row] = conn.execute(
            _SELECT_FOLDED, (issuing_state, folded_number)
        ).fetchall()
        return rows

    def data_version(self) -> str | None:
        conn = self._reader()
        try:
            return self._cached_version(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"reading {self.path} failed: {exc}") from exc

    def count(self) -> int:
        conn = self._reader()
        try:
            row = conn.execute(
                "SELECT record_count FROM versions ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"reading {self.path} failed: {exc}") from exc
        return int(row[0]) if row else 0

    def check(self) -> None:
        conn = self._reader()
        try:
            require_version(self._cached_version(conn))
            self._ensure_intact(conn, exact=True)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"reading {self.path} failed: {exc}") from exc

    def changes_since(
        self, since: str | None, *, cursor: int = 0, limit: int = 10_000
    ) -> ChangePage:
        conn = self._reader()
        try:
            # A snapshot of a damaged table would make offline copies drop
            # records, so the feed is refused like a lookup.
            self._ensure_intact(conn, exact=True)
            conn.execute("BEGIN")
            try:
                return self._changes_since(conn, since, cursor, limit)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"reading {self.path} failed: {exc}") from exc

    def _changes_since(
        self, conn: sqlite3.Connection, since: str | None, cursor: int, limit: int
    ) -> ChangePage:
        head = conn.execute(
            "SELECT seq, version FROM versions ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if head is None:
            require_version(None)
        version = str(head[1])
        since_row = (
            conn.execute(
                "SELECT seq FROM versions WHERE version = ?", (since,)
            ).fetchone()
            if since is not None
            else None
        )
        full_row = conn.execute(
            "SELECT max(seq) FROM versions WHERE kind = 'full'"
        ).fetchone()
        last_full = full_row[0] if full_row else None
        if since_row is None or (last_full is not None and since_row[0] < last_full):
            rows = conn.execute(
                f"SELECT id, {_COLS} FROM records WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, limit),
            ).fetchall()
            return _snapshot_page(version, rows, limit)
        rows = conn.execute(
            f"SELECT seq, op, {_COLS} FROM changes"
            " WHERE version_seq > ? AND seq > ? ORDER BY seq LIMIT ?",
            (since_row[0], cursor, limit),
        ).fetchall()
        return _delta_page(version, rows, limit)

    # -- writes ----------------------------------------------------------

    def _writer(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        self._check_file()
        conn = self._connect()
        # Larger page cache for the bulk insert and index builds: 256 MiB.
        conn.execute("PRAGMA cache_size=-262144")
        return conn

    def import_full(
        self,
        rows: Iterable[tuple[int, Row]],
        *,
        progress: ProgressCallback | None = None,
        check_duplicates: DuplicatesCheck | None = None,
    ) -> ImportResult:
        conn = self._writer()
        counter = _Counter(progress)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DROP TABLE IF EXISTS records_new")
            conn.execute(_RECORDS_TABLE.format(name="records_new"))
            insert = f"INSERT INTO records_new (id, {_COLS}) VALUES (?, {_MARKS})"
            if isinstance(rows, RowBatches):
                # Batches from the importer's parser process: executemany
                # takes each list as it comes, while the next is parsed.
                for batch in rows.row_batches():
                    conn.executemany(insert, batch)
                    counter.add(len(batch))
            else:
                conn.executemany(insert, counter.wrap_rows(rows))
            counter.finish()
            # The new table replaces the old one inside the same transaction,
            # so readers see either all old or all new records.
            # IF EXISTS: a full import is how a store that lost its records
            # table is repaired.
            conn.execute("DROP TABLE IF EXISTS records")
            conn.execute("ALTER TABLE records_new RENAME TO records")
            rejected = _drop_duplicates(conn)
            if check_duplicates is not None:
                check_duplicates(rejected)
            record_count = counter.count - len(rejected)
            version = self._new_version(conn, "full", record_count)
            conn.execute("DELETE FROM changes")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise StoreError(f"full import into {self.path} failed: {exc}") from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()
        logger.info(
            "full import into %s: version %s, %d records, %d rejected",
            self.path,
            version,
            record_count,
            len(rejected),
        )
        return ImportResult(
            version=version,
            kind="full",
            added=record_count,
            deleted=0,
            rejected=tuple(rejected),
            record_count=record_count,
        )

    def import_delta(
        self,
        changes: Iterable[tuple[int, Change]],
        *,
        progress: ProgressCallback | None = None,
    ) -> ImportResult:
        conn = self._writer()
        rejected: list[tuple[int, str]] = []
        added = deleted = created = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            seq = _next_seq(conn)
            for n, (line, change) in enumerate(changes, start=1):
                row = change.row
                key = (row[0], row[3], row[2], row[1])
                exists = conn.execute(
                    f"SELECT 1 FROM records WHERE {_EXACT_KEY}", key
                ).fetchone()
                if change.op == "add":
                    if exists:
                        _update(conn, row, key)
                    else:
                        conn.execute(
                            f"INSERT INTO records ({_COLS}) VALUES ({_MARKS})", row
                        )
                        created += 1
                    added += 1
                elif exists is None:
                    rejected.append((line, "delete of a record that is not stored"))
                    continue
                else:
                    conn.execute(f"DELETE FROM records WHERE {_EXACT_KEY}", key)
                    deleted += 1
                conn.execute(
                    f"INSERT INTO changes (version_seq, op, {_COLS})"
                    f" VALUES (?, ?, {_MARKS})",
                    (seq, change.op, *row),
                )
                if progress is not None and n % 10_000 == 0:
                    progress(n)
            previous = conn.execute(
                "SELECT record_count FROM versions ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            record_count = (previous[0] if previous else 0) + created - deleted
            version = self._new_version(conn, "delta", record_count, seq=seq)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise StoreError(f"delta import into {self.path} failed: {exc}") from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()
        logger.info(
            "delta import into %s: version %s, %d added, %d deleted, %d rejected",
            self.path,
            version,
            added,
            deleted,
            len(rejected),
        )
        return ImportResult(
            version=version,
            kind="delta",
            added=added,
            deleted=deleted,
            rejected=tuple(rejected),
            record_count=record_count,
        )

    def _new_version(
        self,
        conn: sqlite3.Connection,
        kind: str,
        record_count: int,
        *,
        seq: int | None = None,
    ) -> str:
        seq = seq if seq is not None else _next_seq(conn)
        now = dt.datetime.now(dt.UTC)
        version = new_version_name(seq, now)
        conn.execute(
            "INSERT INTO versions (seq, version, kind, created_at, record_count)"
            " VALUES (?, ?, ?, ?, ?)",
            (seq, version, kind, now.isoformat(), record_count),
        )
        return version

    def add_api_key(self, terminal_id: str, key_hash: str) -> None:
        conn = self._writer()
        try:
            with conn:
                conn.execute(
                    "INSERT INTO api_keys (key_hash, terminal_id, created_at)"
                    " VALUES (?, ?, ?)",
                    (key_hash, terminal_id, dt.datetime.now(dt.UTC).isoformat()),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"storing the API key failed: {exc}") from exc
        finally:
            conn.close()

    def terminal_for_key(self, key_hash: str) -> str | None:
        conn = self._reader()
        try:
            row = conn.execute(
                "SELECT terminal_id FROM api_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"reading {self.path} failed: {exc}") from exc
        return str(row[0]) if row else None

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


class _Counter:
    """Counts rows on their way into executemany and reports progress."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.count = 0
        self._progress = progress

    def wrap_rows(
        self, rows: Iterable[tuple[int, Row]]
    ) -> Iterator[tuple[object, ...]]:
        progress = self._progress
        for line, row in rows:
            self.count += 1
            if progress is not None and self.count % 50_000 == 0:
                progress(self.count)
            yield (line, *row)

    def add(self, count: int) -> None:
        before = self.count
        self.count += count
        if self._progress is not None and before // 50_000 != self.count // 50_000:
            self._progress(self.count)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress(self.count)


def _update(conn: sqlite3.Connection, row: Row, key: tuple[object, ...]) -> None:
    """Replace the details of the stored record with `row`'s exact key.

    Not INSERT ... ON CONFLICT, whose conflict target must name a unique
    index: the two index layouts have different ones.
    """
    conn.execute(
        "UPDATE records SET status = ?, reported_on = ?, reporting_country = ?,"
        f" reference = ?, issue_date = ?, expiry_date = ? WHERE {_EXACT_KEY}",
        (*row[4:], *key),
    )


def _drop_duplicates(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """Delete later rows that repeat a (state, number, type) key; return their
    lines. The row id is the source line number during a full import."""
    try:
        conn.execute(_KEY_INDEX)
        return []
    except sqlite3.IntegrityError:
        pass
    conn.execute(
        "CREATE INDEX records_dup ON records (issuing_state, folded_number,"
        " document_number, document_type, id)"
    )
    duplicates = conn.execute(
        "SELECT r.id, (SELECT min(o.id) FROM records o"
        "  WHERE o.issuing_state = r.issuing_state"
        "  AND o.folded_number = r.folded_number"
        "  AND o.document_number = r.document_number"
        "  AND o.document_type = r.document_type) AS first"
        " FROM records r WHERE r.id > first ORDER BY r.id"
    ).fetchall()
    conn.executemany("DELETE FROM records WHERE id = ?", [(d[0],) for d in duplicates])
    conn.execute("DROP INDEX records_dup")
    conn.execute(_KEY_INDEX)
    return [(int(d[0]), f"duplicate of the record on line {d[1]}") for d in duplicates]


# Tables and indexes a store with imported data must have.
_REQUIRED_OBJECTS = ("records", "records_key", "versions", "changes", "api_keys")


def _create_schema(conn: sqlite3.Connection) -> None:
    # Once data was imported, an empty records table created here would turn
    # every lookup into a false NO_HIT, so a lost one stays missing.
    names = _schema_names(conn)
    imported = (
        "versions" in names
        and conn.execute("SELECT 1 FROM versions LIMIT 1").fetchone() is not None
    )
    records_schema = _SCHEMA[:2]
    for statement in _SCHEMA:
        if imported and statement in records_schema:
            continue
        conn.execute(statement)


def _schema_names(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
    ).fetchall()
    return {str(row[0]) for row in rows}


def _find_damage(conn: sqlite3.Connection, path: Path, *, exact: bool) -> str | None:
    """Return why the records do not match the latest version, or None.

    Without `exact` only emptiness is compared, which costs one index probe.
    The exact COUNT(*) reads a whole b-tree: 25-35 ms for 3 million rows,
    measured with a warm page cache on a 2-core VM. NOTE: about 0.3 s at 30
    million is an extrapolation, and a cold cache reads the file first.
    """
    names = _schema_names(conn)
    if "versions" not in names:
        return None
    head = conn.execute(
        "SELECT version, record_count FROM versions ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if head is None:
        return None
    version, expected = str(head[0]), int(head[1])
    repair = (
        "lookups are refused until the full list is imported again with "
        "'kiosk-backend import --store URL FILE'"
    )
    missing = [name for name in _REQUIRED_OBJECTS if name not in names]
    if "records_key" in missing and names.intersection(_OLD_KEY_INDEXES):
        # The layout before the single key index needs both of its indexes.
        missing.remove("records_key")
        missing += [name for name in _OLD_KEY_INDEXES if name not in names]
    if missing:
        return (
            f"store {path} is damaged: {', '.join(missing)} missing although "
            f"version {version} recorded {expected} records; {repair}"
        )
    if exact:
        actual = int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
        if actual == expected:
            return None
    else:
        present = conn.execute("SELECT 1 FROM records LIMIT 1").fetchone()
        actual = 0 if present is None else expected
        if (actual > 0) == (expected > 0):
            return None
    return (
        f"store {path} is damaged: the records table holds {actual} records but "
        f"version {version} recorded {expected}; {repair}"
    )


def _next_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM versions").fetchone()
    return int(row[0])


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        logger.exception("rollback of a failed import failed")


def _snapshot_page(
    version: str, rows: list[tuple[object, ...]], limit: int
) -> ChangePage:
    records = tuple(row_to_record(row[1:]) for row in rows)
    next_cursor = int(str(rows[-1][0])) if len(rows) == limit else None
    return ChangePage(version, True, records, (), next_cursor)


def _delta_page(version: str, rows: list[tuple[object, ...]], limit: int) -> ChangePage:
    return compact_delta_rows(version, rows, limit)


def compact_delta_rows(
    version: str, rows: Sequence[Sequence[object]], limit: int
) -> ChangePage:
    """Build a delta page from change rows (seq, op, record columns...).

    Only the last change per record counts within a page, which makes the
    added and deleted sets disjoint: a reader may apply them in any order.
    Pages themselves must be applied in order.
    """
    last: dict[tuple[str, str, str], tuple[str, Sequence[object]]] = {}
    for row in rows:
        key = (str(row[2]), str(row[3]), str(row[4]))
        last.pop(key, None)
        last[key] = (str(row[1]), row[2:])
    added = tuple(row_to_record(cols) for op, cols in last.values() if op == "add")
    deleted = tuple(
        DocumentKey(str(cols[0]), str(cols[1]), str(cols[2]))
        for op, cols in last.values()
        if op == "delete"
    )
    next_cursor = int(str(rows[-1][0])) if len(rows) == limit else None
    return ChangePage(version, False, added, deleted, next_cursor)
