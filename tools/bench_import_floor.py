"""Import floors of the lookup benchmark: the fastest plain load of its CSV.

Each floor loads the benchmark's CSV file with the database's own bulk loader
and no Python in the data path, then builds the one unique index that a
lookup needs. The store's import rate divided by this floor shows how much of
the gap to an import target is the product's and how much is the machine's.

* PostgreSQL: `COPY ... FROM STDIN (FORMAT csv)` of the unchanged file into an
  index-free table in a scratch schema, in one transaction, then
  `CREATE UNIQUE INDEX`.
* SQLite: the `sqlite3` command-line shell's `.import` into a fresh WAL-mode
  file, then `CREATE UNIQUE INDEX` in a second run of the shell.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from backend.importer import FULL_HEADER

FLOOR_TABLE = "records"
COPY_BLOCK_BYTES = 1 << 20
# The key columns, in the order of the store's unique index.
INDEX_COLUMNS = ("issuing_state", "document_number", "document_type")
# The same key-column collation and date types as the PostgreSQL store.
_PG_TYPES = {
    "issuing_state": 'text COLLATE "C"',
    "document_type": 'text COLLATE "C"',
    "document_number": 'text COLLATE "C"',
    "reported_on": "date",
    "issue_date": "date",
    "expiry_date": "date",
}
# The PostgreSQL store sets the same for its index builds.
PG_MAINTENANCE_WORK_MEM = "256MB"
# 256 MiB of page cache, as the SQLite store uses for its import.
SQLITE_CACHE_SIZE_KIB = 262144


@dataclass(frozen=True)
class FloorTiming:
    """Rows loaded and seconds taken by the bulk load and by the index build."""

    rows: int
    load_seconds: float
    index_seconds: float

    @property
    def load_rate(self) -> float:
        return self.rows / self.load_seconds

    @property
    def total_rate(self) -> float:
        return self.rows / (self.load_seconds + self.index_seconds)


def floor_rows(
    timing: FloorTiming, loader: str, import_rate: float
) -> list[tuple[str, str, str]]:
    """Return the (measure, value, note) result rows of one import floor.

    `loader` names the bulk load ("COPY", ".import") and `import_rate` is the
    store's own import rate in rows/s.
    """
    return [
        (
            f"import floor: bare {loader}",
            f"{timing.load_rate:,.0f} rows/s",
            f"{timing.rows:,} rows in {timing.load_seconds:.1f} s, no index",
        ),
        (
            f"import floor: {loader} + one index",
            f"{timing.total_rate:,.0f} rows/s",
            f"index built in {timing.index_seconds:.1f} s",
        ),
        (
            "import rate / floor",
            f"{import_rate / timing.total_rate:.2f}",
            f"store import rate over {loader} + one index",
        ),
    ]


def pg_create_table_sql(table: str) -> str:
    columns = ", ".join(f"{name} {_PG_TYPES.get(name, 'text')}" for name in FULL_HEADER)
    return f"CREATE TABLE {table} ({columns})"


def create_index_sql(table: str) -> str:
    """Return the unique key index of `table`, which may be schema-qualified."""
    # PostgreSQL puts the index in the table's schema, and rejects a
    # qualified index name.
    columns = ", ".join(INDEX_COLUMNS)
    return f"CREATE UNIQUE INDEX {FLOOR_TABLE}_exact ON {table} ({columns})"


def pg_import_floor(pg_url: str, csv_path: Path) -> FloorTiming:
    """Time COPY of `csv_path` and one index build in a scratch schema.

    The schema is dropped at the end, also when a step fails.
    """
    schema = f"bench_floor_{uuid.uuid4().hex[:8]}"
    table = f'"{schema}".{FLOOR_TABLE}'
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(pg_create_table_sql(table))
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cursor:
                with (
                    cursor.copy(
                        f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)"
                    ) as copy,
                    csv_path.open("rb") as handle,
                ):
                    while block := handle.read(COPY_BLOCK_BYTES):
                        copy.write(block)
                rows = cursor.rowcount
            loaded = time.perf_counter()
            conn.execute(f"SET maintenance_work_mem = '{PG_MAINTENANCE_WORK_MEM}'")
            indexing = time.perf_counter()
            conn.execute(create_index_sql(table))
            indexed = time.perf_counter()
    finally:
        # A new connection, because the failure may have broken the first one.
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return FloorTiming(rows, loaded - started, indexed - indexing)


def sqlite_import_script(csv_path: Path) -> str:
    """Return the `sqlite3` shell input that loads `csv_path` into a new table."""
    text = str(csv_path)
    # The shell's single-quoted arguments have no escapes.
    if "'" in text or "\n" in text:
        raise ValueError(
            f"invalid CSV path {text!r} for the sqlite3 shell: "
            "it must not contain a quote or a line break"
        )
    columns = ", ".join(f"{name} TEXT" for name in FULL_HEADER)
    return (
        "PRAGMA journal_mode=WAL;\n"
        f"CREATE TABLE {FLOOR_TABLE} ({columns});\n"
        ".mode csv\n"
        f".import --skip 1 '{text}' {FLOOR_TABLE}\n"
    )


def sqlite_index_script() -> str:
    """Return the `sqlite3` shell input that builds the unique key index."""
    return (
        f"PRAGMA cache_size=-{SQLITE_CACHE_SIZE_KIB};\n"
        f"{create_index_sql(FLOOR_TABLE)};\n"
    )


def _run_shell(sqlite3: str, db: Path, script: str) -> str:
    completed = subprocess.run(
        [sqlite3, "-bail", str(db)],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    # `.import` reports malformed lines on stderr and goes on, so any output
    # there means the floor loaded something other than the CSV file.
    if completed.returncode != 0 or completed.stderr:
        raise RuntimeError(
            f"sqlite3 failed on {db} (exit status {completed.returncode}): "
            f"{completed.stderr.strip()}"
        )
    return completed.stdout


def sqlite_import_floor(sqlite3: str, csv_path: Path, db: Path) -> FloorTiming:
    """Time `.import` of `csv_path` into a fresh file `db`, then one index build.

    `db` and its WAL files are deleted before and after the run.
    """
    paths = [Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm")]
    for path in paths:
        path.unlink(missing_ok=True)
    try:
        started = time.perf_counter()
        _run_shell(sqlite3, db, sqlite_import_script(csv_path.resolve()))
        loaded = time.perf_counter()
        _run_shell(sqlite3, db, sqlite_index_script())
        indexed = time.perf_counter()
        rows = int(_run_shell(sqlite3, db, f"SELECT count(*) FROM {FLOOR_TABLE};\n"))
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
    return FloorTiming(rows, loaded - started, indexed - loaded)
