"""PostgreSQL store: psycopg 3 with a connection pool, the scale store.

A URL may carry `?schema=NAME`; the store then keeps its tables in that
schema (created if missing), which lets several stores share a database.
Past one machine, reads scale out to streaming read replicas: point the
lookup service at a replica and imports at the primary. Past that, the
records table can be distributed with Citus on (issuing_state,
folded_number), the key every lookup filters on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

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
from backend.store.bulk import RowBatches, encode_copy_row
from backend.store.sqlite import compact_delta_rows

logger = logging.getLogger(__name__)

_COLS = ", ".join(RECORD_COLUMNS)
_R_COLS = ", ".join(f"r.{c}" for c in RECORD_COLUMNS)
_PLACEHOLDERS = ", ".join("%s" for _ in RECORD_COLUMNS)
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# The key columns hold ASCII codes only, where byte order is the natural
# order. With the "C" collation PostgreSQL sorts them by memcmp and
# abbreviated keys, which built the key indexes about 3x faster than the
# C.UTF-8 default in a test over 1 million rows.
_RECORDS_TABLE = """
CREATE TABLE {name} (
    id bigint NOT NULL DEFAULT nextval('record_ids'),
    issuing_state text COLLATE "C" NOT NULL,
    document_type text COLLATE "C" NOT NULL,
    document_number text COLLATE "C" NOT NULL,
    folded_number text COLLATE "C" NOT NULL,
    status text NOT NULL,
    reported_on date NOT NULL,
    reporting_country text NOT NULL,
    reference text NOT NULL,
    issue_date date,
    expiry_date date
)
"""

_SCHEMA = [
    "CREATE SEQUENCE IF NOT EXISTS record_ids",
    """CREATE TABLE IF NOT EXISTS versions (
        seq bigint PRIMARY KEY,
        version text NOT NULL UNIQUE,
        kind text NOT NULL,
        created_at timestamptz NOT NULL,
        record_count bigint NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS changes (
        seq bigserial PRIMARY KEY,
        version_seq bigint NOT NULL,
        op text NOT NULL,
        issuing_state text NOT NULL,
        document_type text NOT NULL,
        document_number text NOT NULL,
        folded_number text,
        status text,
        reported_on date,
        reporting_country text,
        reference text,
        issue_date date,
        expiry_date date
    )""",
    "CREATE INDEX IF NOT EXISTS changes_version ON changes (version_seq, seq)",
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_hash text PRIMARY KEY,
        terminal_id text NOT NULL,
        created_at timestamptz NOT NULL
    )""",
]

_VERSION_SQL = "SELECT version FROM versions ORDER BY seq DESC LIMIT 1"
# One statement reads the version and the rows, so both come from the same
# snapshot even under READ COMMITTED, in one round trip.
_FIND_ONE = (
    f"SELECT v.version, 1, {_R_COLS} FROM ({_VERSION_SQL}) v"
    " LEFT JOIN records r ON r.issuing_state = %s AND r.folded_number = %s"
)
# Lookup of a batch of keys, `{keys}` being the unnest of their states and
# folded numbers. Only keys with candidates yield rows. The outer join keeps
# one row with the version when no key has any.
_BATCH_MATCHES = (
    f"SELECT k.i, {_R_COLS} FROM {{keys}} WITH ORDINALITY AS k(s, f, i)"
    " JOIN records r ON r.issuing_state = k.s AND r.folded_number = k.f"
)
_FIND_MANY_SQL = (
    f"SELECT v.version, m.* FROM ({_VERSION_SQL}) v"
    f" LEFT JOIN ({_BATCH_MATCHES}) m ON true"
)
_FIND_MANY = _FIND_MANY_SQL.format(keys="unnest(%s::text[], %s::text[])")
# The same with each array sent as one comma-separated text. For a batch of
# 1,000 keys, psycopg took about 0.8 ms more client CPU per query to dump
# two lists than to send two joined strings (psycopg 3.3, 2 vCPUs).
_FIND_MANY_JOINED = _FIND_MANY_SQL.format(
    keys="unnest(string_to_array(%s, ','), string_to_array(%s, ','))"
)
_SELECT_FOLDED = (
    f"SELECT {_COLS} FROM records WHERE issuing_state = %s AND folded_number = %s"
)
# WHERE clause of one exact key: state, folded number, number, type. It
# uses the key index, and the exact index of stores from before it.
_EXACT_KEY = (
    "issuing_state = %s AND folded_number = %s"
    " AND document_number = %s AND document_type = %s"
)
_COPY_CHUNK_BYTES = 1 << 20
# Up to this many expected records the integrity check counts them exactly;
# above it, it compares the statistics' live-row estimate and counts only
# when that differs by more than _ESTIMATE_TOLERANCE.
_EXACT_COUNT_LIMIT = 1_000_000
_ESTIMATE_TOLERANCE = 0.10
# While damaged, lookups check again at most this often, in seconds, so
# that the service recovers after a re-import without a restart.
_DAMAGE_RECHECK_S = 5.0


def split_schema(url: str) -> tuple[str, str | None]:
    """Return the connection URL without `schema=` and the schema name."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    kept = []
    for name, value in query:
        if name == "schema":
            schema = value
        else:
            kept.append((name, value))
    if schema is not None and not _SCHEMA_RE.match(schema):
        raise StoreError(
            f"invalid schema name {schema!r} in the store URL: use lower-case "
            "letters, digits and '_'"
        )
    cleaned = parts._replace(query=urllib.parse.urlencode(kept))
    return urllib.parse.urlunsplit(cleaned), schema


def _unavailable(action: str, exc: Exception) -> StoreError:
    # A lost connection, a missing database and a schema dropped under us
    # all mean the store cannot answer: callers return 503, never NO_HIT.
    if isinstance(
        exc,
        psycopg.OperationalError
        | PoolTimeout
        | psycopg.errors.UndefinedTable
        | psycopg.errors.InvalidCatalogName
        | psycopg.errors.InvalidSchemaName,
    ):
        return StoreUnavailable(f"{action} failed, database unavailable: {exc}")
    return StoreError(f"{action} failed: {exc}")


class PostgresStore(Store):
    kind = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 5.0,
    ) -> None:
        conninfo, schema = split_schema(url)
        self.schema = schema
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(timeout)),
        }
        if schema is not None:
            kwargs["options"] = f"-c search_path={schema}"
        self._prepare(conninfo, kwargs, schema)
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            timeout=timeout,
            name="kiosk-store",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL within {timeout} s: {exc}"
            ) from exc
        # Set while the records do not match the versions table; lookups
        # then raise StoreUnavailable with this message. Opening still
        # succeeds, so that a full import can repair the store.
        self._damage: str | None = None
        self._damage_checked_at = 0.0
        try:
            self._verify()
        except StoreUnavailable as exc:
            logger.error("%s", exc)
        logger.info("opened PostgreSQL store (schema %s)", schema or "public")

    def _where(self) -> str:
        return f"PostgreSQL store (schema {self.schema or 'public'})"

    def _verify(self) -> None:
        """Compare the records with the latest version; raise StoreUnavailable."""
        try:
            with self._pool.connection() as conn:
                self._damage = _find_damage(conn, self._where())
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("checking the records table", exc) from exc
        finally:
            self._damage_checked_at = time.monotonic()
        if self._damage is not None:
            raise StoreUnavailable(self._damage)

    def _refuse_if_damaged(self) -> None:
        # NOTE: lookups only see damage found on open, in readiness or by the
        # change feed, so rows deleted while the service runs are noticed at
        # the next /ready call, not by the lookups before it.
        if self._damage is None:
            return
        if time.monotonic() - self._damage_checked_at < _DAMAGE_RECHECK_S:
            raise StoreUnavailable(self._damage)
        self._verify()

    @staticmethod
    def _prepare(conninfo: str, kwargs: dict[str, Any], schema: str | None) -> None:
        connect_args = {k: v for k, v in kwargs.items() if k != "options"}
        try:
            with psycopg.connect(conninfo, **connect_args) as conn:
                standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if standby is not None and standby[0]:
                    # A read replica takes its tables from the primary and
                    # rejects DDL. NOTE: not yet run against a real replica.
                    logger.info("PostgreSQL server is a standby; schema left as is")
                    return
                if schema is not None:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    conn.execute(f'SET search_path TO "{schema}"')
                # Two services starting at once must not both create tables.
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(7305)")
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    exists = conn.execute(
                        "SELECT to_regclass('records') IS NOT NULL"
                    ).fetchone()
                    imported = conn.execute(
                        "SELECT EXISTS (SELECT 1 FROM versions)"
                    ).fetchone()
                    # Once data was imported, an empty records table created
                    # here would turn every lookup into a false NO_HIT.
                    if (exists is None or not exists[0]) and not (
                        imported is not None and imported[0]
                    ):
                        conn.execute(_RECORDS_TABLE.format(name="records"))
                        _create_indexes(conn, "records")
        except psycopg.Error as exc:
            raise _unavailable("opening the PostgreSQL store", exc) from exc

    # -- reads -----------------------------------------------------------

    def find_candidates(
        self, keys: Sequence[DocumentKey]
    ) -> tuple[str, list[list[Row]]]:
        self._refuse_if_damaged()
        query, params = _find_query(keys)
        # NOTE: unlike AsyncPostgresReader, this path does not retry on a
        # connection the server closed, so after a server restart each dead
        # pooled connection fails one lookup with StoreUnavailable. The
        # service's lookups use it only before its lifespan opens the async
        # reader; /ready uses it always, so one probe may fail after a restart.
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(query, params).fetchall()
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("lookup", exc) from exc
        return _split_candidates(rows, len(keys))

    async def open_async_reader(self) -> AsyncPostgresReader:
        """Open a reader with its own asyncio connection pool on the running
        event loop. The caller closes it on the same loop."""
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs=self._kwargs,
            timeout=self._timeout,
            name="kiosk-store-async",
            open=False,
        )
        # Without waiting: a database that is down now makes lookups fail
        # with StoreUnavailable, as the thread pool's connections do.
        await pool.open(wait=False)
        return AsyncPostgresReader(self, pool)

    def raw_select(self, issuing_state: str, folded_number: str) -> list[Row]:
        with self._pool.connection() as conn:
            rows: list[Row] = conn.execute(
                _SELECT_FOLDED, (issuing_state, folded_number)
            ).fetchall()
        return rows

    def data_version(self) -> str | None:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(_VERSION_SQL).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("reading the data version", exc) from exc
        return str(row[0]) if row else None

    def count(self) -> int:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT record_count FROM versions ORDER BY seq DESC LIMIT 1"
                ).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("counting records", exc) from exc
        return int(row[0]) if row else 0

    def check(self) -> None:
        require_version(self.data_version())
        self._verify()

    def changes_since(
        self, since: str | None, *, cursor: int = 0, limit: int = 10_000
    ) -> ChangePage:
        # A snapshot of a damaged table would make offline copies drop
        # records, so the feed is refused like a lookup.
        if cursor == 0:
            self._verify()
        else:
            self._refuse_if_damaged()
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return self._changes_since(conn, since, cursor, limit)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("reading the change feed", exc) from exc

    def _changes_since(
        self, conn: psycopg.Connection[Any], since: str | None, cursor: int, limit: int
    ) -> ChangePage:
        head = conn.execute(
            "SELECT seq, version FROM versions ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if head is None:
            require_version(None)
            raise AssertionError("unreachable")
        version = str(head[1])
        since_row = None
        if since is not None:
            since_row = conn.execute(
                "SELECT seq FROM versions WHERE version = %s", (since,)
            ).fetchone()
        full_row = conn.execute(
            "SELECT max(seq) FROM versions WHERE kind = 'full'"
        ).fetchone()
        last_full = full_row[0] if full_row else None
        if since_row is None or (last_full is not None and since_row[0] < last_full):
            rows = conn.execute(
                f"SELECT id, {_COLS} FROM records WHERE id > %s ORDER BY id LIMIT %s",
                (cursor, limit),
            ).fetchall()
            records = tuple(row_to_record(row[1:]) for row in rows)
            next_cursor = int(rows[-1][0]) if len(rows) == limit else None
            return ChangePage(version, True, records, (), next_cursor)
        rows = conn.execute(
            f"SELECT seq, op, {_COLS} FROM changes"
            " WHERE version_seq > %s AND seq > %s ORDER BY seq LIMIT %s",
            (since_row[0], cursor, limit),
        ).fetchall()
        return compact_delta_rows(version, rows, limit)

    # -- writes ----------------------------------------------------------

    def import_full(
        self,
        rows: Iterable[tuple[int, Row]],
        *,
        progress: ProgressCallback | None = None,
        check_duplicates: DuplicatesCheck | None = None,
    ) -> ImportResult:
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7306)")
                conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
                conn.execute("DROP TABLE IF EXISTS records_new")
                conn.execute(_RECORDS_TABLE.format(name="records_new"))
                count = _copy_rows(conn, rows, progress)
                rejected = _drop_duplicates(conn)
                if check_duplicates is not None:
                    check_duplicates(rejected)
                _create_indexes(conn, "records_new")
                conn.execute(
                    "SELECT setval('record_ids', greatest(coalesce(max(id), 0), 1))"
                    " FROM records_new"
                )
                # Without statistics the planner expects about 75 records per
                # lookup key and scans each key's index entries by bitmap.
                # Autovacuum would analyze the table only later, or never
                # where it is off. Sampling 3 million rows took about 0.5 s.
                conn.execute("ANALYZE records_new")
                # The swap waits for running lookups, then later lookups see
                # the new table; nothing reads a half-loaded list.
                present = conn.execute(
                    "SELECT to_regclass('records') IS NOT NULL"
                ).fetchone()
                # A full import is how a store that lost its records table
                # is repaired, so the table may be missing here.
                if present is not None and present[0]:
                    conn.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
                conn.execute("DROP TABLE IF EXISTS records")
                conn.execute("ALTER TABLE records_new RENAME TO records")
                for suffix in ("pkey", "key"):
                    conn.execute(
                        f"ALTER INDEX records_new_{suffix} RENAME TO records_{suffix}"
                    )
                record_count = count - len(rejected)
                version = _new_version(conn, "full", record_count)
                conn.execute("DELETE FROM changes")
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("full import", exc) from exc
        self._damage = None
        logger.info(
            "full import into PostgreSQL: version %s, %d records, %d rejected",
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
        rejected: list[tuple[int, str]] = []
        added = deleted = created = 0
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7306)")
                seq_row = conn.execute(
                    "SELECT coalesce(max(seq), 0) + 1 FROM versions"
                ).fetchone()
                seq = int(seq_row[0]) if seq_row else 1
                # NOTE: one round trip per change. Fine for daily deltas; a
                # delta of millions of rows should COPY into a staging table.
                for n, (line, change) in enumerate(changes, start=1):
                    row = change.row
                    key = (row[0], row[3], row[2], row[1])
                    if change.op == "add":
                        updated = conn.execute(
                            _UPDATE, (*_nullable_dates(row[4:]), *key)
                        ).fetchone()
                        if updated is None:
                            conn.execute(_INSERT, row)
                            created += 1
                        added += 1
                    else:
                        gone = conn.execute(
                            f"DELETE FROM records WHERE {_EXACT_KEY} RETURNING 1", key
                        ).fetchone()
                        if gone is None:
                            rejected.append(
                                (line, "delete of a record that is not stored")
                            )
                            continue
                        deleted += 1
                    conn.execute(
                        f"INSERT INTO changes (version_seq, op, {_COLS})"
                        f" VALUES (%s, %s, {_PLACEHOLDERS})",
                        (seq, change.op, *_nullable_dates(row)),
                    )
                    if progress is not None and n % 10_000 == 0:
                        progress(n)
                previous = conn.execute(
                    "SELECT record_count FROM versions ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                record_count = (previous[0] if previous else 0) + created - deleted
                version = _new_version(conn, "delta", record_count, seq=seq)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("delta import", exc) from exc
        logger.info(
            "delta import into PostgreSQL: version %s, %d added, %d deleted,"
            " %d rejected",
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

    def add_api_key(self, terminal_id: str, key_hash: str) -> None:
        try:
            with self._pool.connection() as conn:
                conn.execute(
                    "INSERT INTO api_keys (key_hash, terminal_id, created_at)"
                    " VALUES (%s, %s, now())",
                    (key_hash, terminal_id),
                )
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("storing the API key", exc) from exc

    def terminal_for_key(self, key_hash: str) -> str | None:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT terminal_id FROM api_keys WHERE key_hash = %s", (key_hash,)
                ).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable("reading API keys", exc) from exc
        return str(row[0]) if row else None

    def close(self) -> None:
        self._pool.close()


class AsyncPostgresReader:
    """`PostgresStore.find_candidates` on an asyncio connection pool.

    A lookup then waits for PostgreSQL on the event loop instead of in a
    thread. Sent through the service's ASGI app in process, a single lookup
    cost about 240 µs of CPU this way against 280 to 335 µs through the
    thread pool (3 million records, 2 vCPUs, load average 4 to 5).
    """

    def __init__(self, store: PostgresStore, pool: AsyncConnectionPool) -> None:
        self._store = store
        self._pool = pool

    async def find_candidates(
        self, keys: Sequence[DocumentKey]
    ) -> tuple[str, list[list[Row]]]:
        """Return what `PostgresStore.find_candidates` returns, with the same
        errors."""
        if self._store._damage is not None:
            # Rechecking the damage reads through the synchronous pool and
            # can wait for a connection, so it runs in a thread.
            await asyncio.to_thread(self._store._refuse_if_damaged)
        query, params = _find_query(keys)
        for attempt in (1, 2):
            broken = False
            try:
                async with self._pool.connection() as conn:
                    try:
                        cursor = await conn.execute(query, params)
                        rows = await cursor.fetchall()
                    except psycopg.OperationalError:
                        broken = conn.broken
                        raise
            except (psycopg.Error, PoolTimeout) as exc:
                if broken and attempt == 1:
                    # A server restart or a terminated backend leaves every
                    # pooled connection dead; each would fail one lookup
                    # with 503. The pool drops the dead ones, then the lookup
                    # runs once more. A server still down fails it again.
                    logger.warning(
                        "PostgreSQL closed a lookup connection (%s); checking "
                        "the pool and retrying once",
                        type(exc).__name__,
                    )
                    await self._pool.check()
                    continue
                raise _unavailable("lookup", exc) from exc
            return _split_candidates(rows, len(keys))
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def close(self) -> None:
        await self._pool.close()


def _find_query(keys: Sequence[DocumentKey]) -> tuple[str, tuple[object, ...]]:
    if len(keys) == 1:
        return _FIND_ONE, (keys[0].issuing_state, keys[0].folded_number)
    states = [k.issuing_state for k in keys]
    numbers = [k.folded_number for k in keys]
    joined_states = ",".join(states)
    joined_numbers = ",".join(numbers)
    # DocumentKey.create admits no comma, but a key built directly could
    # contain one, and splitting it would shift every later key's candidates.
    separators = len(keys) - 1
    if (
        joined_states.count(",") == separators
        and joined_numbers.count(",") == separators
    ):
        return _FIND_MANY_JOINED, (joined_states, joined_numbers)
    return _FIND_MANY, (states, numbers)


def _split_candidates(
    rows: Sequence[tuple[Any, ...]], key_count: int
) -> tuple[str, list[list[Row]]]:
    """Return the version and the candidate rows per key of a _FIND_ONE or
    _FIND_MANY result."""
    # The version subquery yields a row even when no record matches, so no
    # rows at all means that nothing was imported yet.
    if not rows:
        require_version(None)
    found: list[list[Row]] = [[] for _ in range(key_count)]
    for row in rows:
        if row[2] is not None:
            found[int(row[1]) - 1].append(row[2:])
    return str(rows[0][0]), found


# An add updates the stored record with its exact key, or inserts one.
# INSERT ... ON CONFLICT would have to name a unique index, and the two
# index layouts have different ones. The delta import holds an advisory
# lock, so no other import inserts the key in between.
_UPDATE = (
    "UPDATE records SET status = %s, reported_on = %s, reporting_country = %s,"
    f" reference = %s, issue_date = %s, expiry_date = %s WHERE {_EXACT_KEY}"
    " RETURNING 1"
)
_INSERT = f"INSERT INTO records ({_COLS}) VALUES ({_PLACEHOLDERS})"


def _nullable_dates(row: Sequence[object]) -> tuple[object, ...]:
    # Delete lines leave the date columns empty; PostgreSQL needs NULL there.
    return tuple(value if value != "" else None for value in row)


def _key_index(table: str) -> str:
    # One index serves lookups with its first two columns, and exact matches
    # and deletes with all four. The folded number is a function of the
    # number, so the index is unique on (state, number, type) too. Stores
    # imported before it have two indexes, records_exact and records_folded,
    # until their next full import. Every query here works with either.
    return (
        f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_key ON {table}"
        " (issuing_state, folded_number, document_number, document_type)"
    )


_OLD_KEY_INDEXES = ("records_exact", "records_folded")


def _create_indexes(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)")
    conn.execute(_key_index(table))


# COPY runs without FREEZE. On PostgreSQL 15, COPY ... WITH (FREEZE) plus
# one index build over 1 million rows took 6.4 s against 5.4 s without it
# (best of 3, load 6.5 on 2 vCPUs). FREEZE would spare the first reads
# from setting hint bits.
_COPY_SQL = f"COPY records_new (id, {_COLS}) FROM STDIN"


def _copy_rows(
    conn: psycopg.Connection[Any],
    rows: Iterable[tuple[int, Row]],
    progress: ProgressCallback | None,
) -> int:
    """COPY rows into records_new with their source line as id; return the count."""
    if isinstance(rows, RowBatches):
        return _copy_chunks(conn, rows, progress)
    count = 0
    chunk: list[str] = []
    size = 0
    with conn.cursor().copy(_COPY_SQL) as copy:
        for line, row in rows:
            text = encode_copy_row(line, row)
            chunk.append(text)
            size += len(text) + 1
            count += 1
            if size >= _COPY_CHUNK_BYTES:
                copy.write("\n".join(chunk) + "\n")
                chunk.clear()
                size = 0
                if progress is not None:
                    progress(count)
        if chunk:
            copy.write("\n".join(chunk) + "\n")
    if progress is not None:
        progress(count)
    return count


def _copy_chunks(
    conn: psycopg.Connection[Any],
    rows: RowBatches,
    progress: ProgressCallback | None,
) -> int:
    """COPY the text chunks of a parser process unchanged; return the count."""
    count = 0
    with conn.cursor().copy(_COPY_SQL) as copy:
        for data, rows_in_chunk in rows.copy_chunks():
            copy.write(data)
            count += rows_in_chunk
            if progress is not None:
                progress(count)
    return count


def _drop_duplicates(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    """Delete later rows repeating a (state, number, type) key; return their
    lines. Row ids are the source line numbers during a full import."""
    try:
        with conn.transaction():
            conn.execute(_key_index("records_new"))
        return []
    except psycopg.errors.UniqueViolation:
        pass
    duplicates = conn.execute(
        "DELETE FROM records_new d USING ("
        "  SELECT id, first_value(id) OVER w AS first FROM records_new"
        "  WINDOW w AS (PARTITION BY issuing_state, document_number,"
        "  document_type ORDER BY id)) f"
        " WHERE d.id = f.id AND f.id <> f.first RETURNING d.id, f.first"
    ).fetchall()
    return sorted(
        (int(d[0]), f"duplicate of the record on line {d[1]}") for d in duplicates
    )


# Tables and indexes a store with imported data must have.
_REQUIRED_OBJECTS = ("records", "records_key", "versions", "changes", "api_keys")


def _find_damage(conn: psycopg.Connection[Any], where: str) -> str | None:
    """Return why the records do not match the latest version, or None."""
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
    missing = [
        name
        for name in _REQUIRED_OBJECTS
        if (row := conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()) is None
        or row[0] is None
    ]
    if "records_key" in missing:
        old_missing = [
            name
            for name in _OLD_KEY_INDEXES
            if (row := conn.execute("SELECT to_regclass(%s)", (name,)).fetchone())
            is None
            or row[0] is None
        ]
        if len(old_missing) < len(_OLD_KEY_INDEXES):
            # The layout before the single key index needs both of its indexes.
            missing.remove("records_key")
            missing += old_missing
    if missing:
        return (
            f"{where} is damaged: {', '.join(missing)} missing although version "
            f"{version} recorded {expected} records; {repair}"
        )
    if expected > _EXACT_COUNT_LIMIT:
        # n_live_tup follows inserts and deletes within about a second of
        # their commit; reltuples would wait for the next VACUUM or ANALYZE.
        estimate_row = conn.execute(
            "SELECT pg_stat_get_live_tuples('records'::regclass)"
        ).fetchone()
        estimate = int(estimate_row[0]) if estimate_row else 0
        if abs(estimate - expected) <= _ESTIMATE_TOLERANCE * expected:
            return None
    counted = conn.execute("SELECT count(*) FROM records").fetchone()
    actual = int(counted[0]) if counted else 0
    if actual == expected:
        return None
    return (
        f"{where} is damaged: the records table holds {actual} records but "
        f"version {version} recorded {expected}; {repair}"
    )


def _new_version(
    conn: psycopg.Connection[Any],
    kind: str,
    record_count: int,
    *,
    seq: int | None = None,
) -> str:
    if seq is None:
        row = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM versions").fetchone()
        seq = int(row[0]) if row else 1
    now = dt.datetime.now(dt.UTC)
    version = new_version_name(seq, now)
    conn.execute(
        "INSERT INTO versions (seq, version, kind, created_at, record_count)"
        " VALUES (%s, %s, %s, %s, %s)",
        (seq, version, kind, now, record_count),
    )
    return version
