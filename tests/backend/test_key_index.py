"""One unique index on (state, folded number, number, type) serves lookups,
exact matches and deletes. Stores from before it, with the two indexes
records_exact and records_folded, keep working until a full import."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from backend.errors import StoreUnavailable
from backend.importer import import_csv
from backend.records import DocumentKey, Result, Status
from backend.store import open_store, sqlite_path
from backend.store.postgres import split_schema
from tests.backend.helpers import record_line, write_csv
from tests.backend.test_fix_store_integrity import run_sql

LINES = [
    record_line("UTO", "L898902C3"),
    record_line("UTO", "L898902C3", doc_type="ID", status="lost"),
    record_line("FRA", "AB1O2I", status="invalidated"),
    record_line("GBR", "012345", status="revoked"),
]
OLD_LAYOUT = [
    "DROP INDEX records_key",
    "CREATE UNIQUE INDEX records_exact"
    " ON records (issuing_state, document_number, document_type)",
    "CREATE INDEX records_folded ON records (issuing_state, folded_number)",
]


def key(state: str, number: str, doc_type: str = "P") -> DocumentKey:
    return DocumentKey.create(state, doc_type, number)


def index_names(url: str) -> set[str]:
    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name = 'records'"
        ).fetchall()
        conn.close()
        return {str(row[0]) for row in rows}
    conninfo, schema = split_schema(url)
    with psycopg.connect(conninfo) as pg:
        rows = pg.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s"
            " AND tablename = 'records'",
            (schema,),
        ).fetchall()
    return {str(row[0]) for row in rows}


def query_plan(url: str, query: str, params: tuple[str, ...]) -> str:
    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path)
        rows = conn.execute(f"EXPLAIN QUERY PLAN {query}", params).fetchall()
        conn.close()
        return " ".join(str(row[-1]) for row in rows)
    conninfo, schema = split_schema(url)
    with psycopg.connect(conninfo) as pg:
        pg.execute(f'SET search_path TO "{schema}"')
        # A table of four rows is read whole unless sequential scans are off.
        pg.execute("SET enable_seqscan = off")
        pg_query = query.replace("?", "%s")
        rows = pg.execute(f"EXPLAIN {pg_query}", params).fetchall()
    return " ".join(str(row[0]) for row in rows)


def test_full_import_builds_one_key_index(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        import_csv(store, write_csv(tmp_path / "full.csv", LINES))

    names = index_names(store_url)

    assert "records_key" in names
    assert not names & {"records_exact", "records_folded"}
    # SQLite keys rows by rowid; PostgreSQL adds its primary key on id.
    assert names - {"records_key"} <= {"records_pkey"}


@pytest.mark.parametrize(
    ("query", "params"),
    [
        (
            "SELECT * FROM records WHERE issuing_state = ? AND folded_number = ?",
            ("UTO", "1898902C3"),
        ),
        (
            "DELETE FROM records WHERE issuing_state = ? AND folded_number = ?"
            " AND document_number = ? AND document_type = ?",
            ("UTO", "1898902C3", "L898902C3", "P"),
        ),
    ],
    ids=["lookup", "delete"],
)
def test_lookups_and_deletes_use_the_key_index(
    store_url: str, tmp_path: Path, query: str, params: tuple[str, ...]
) -> None:
    with open_store(store_url) as store:
        import_csv(store, write_csv(tmp_path / "full.csv", LINES))

    assert "records_key" in query_plan(store_url, query, params)


def test_missing_key_index_refuses_lookups(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        import_csv(store, write_csv(tmp_path / "full.csv", LINES))
    run_sql(store_url, "DROP INDEX records_key")

    with (
        open_store(store_url) as store,
        pytest.raises(StoreUnavailable, match="records_key missing"),
    ):
        store.lookup(key("FRA", "X0000001"))


def test_old_index_layout_answers_until_full_import(
    store_url: str, tmp_path: Path
) -> None:
    with open_store(store_url) as store:
        import_csv(store, write_csv(tmp_path / "full.csv", LINES))
    for statement in OLD_LAYOUT:
        run_sql(store_url, statement)
    delta = write_csv(
        tmp_path / "delta.csv",
        [
            ["add", *record_line("NLD", "SPECI2014")],
            ["add", *record_line("UTO", "L898902C3", status="revoked")],
            ["delete", "FRA", "P", "AB1O2I", "", "", "", "", "", ""],
        ],
        delta=True,
    )

    with open_store(store_url) as store:
        store.check()
        assert store.lookup(key("GBR", "12345")).result is Result.POSSIBLE
        report = import_csv(store, delta, delta=True)
        assert (report.result.added, report.result.deleted) == (2, 1)
        assert store.count() == len(LINES)
        assert store.lookup(key("NLD", "SPECI2014")).result is Result.HIT
        replaced = store.lookup(key("UTO", "L898902C3"))
        assert sorted(r.status for r in replaced.records) == sorted(
            [Status.REVOKED, Status.LOST]
        )
        assert store.lookup(key("FRA", "AB1O2I")).result is Result.NO_HIT
        store.check()
        import_csv(store, write_csv(tmp_path / "again.csv", LINES))

    names = index_names(store_url)
    assert "records_key" in names
    assert not names & {"records_exact", "records_folded"}


@pytest.mark.parametrize("lost", ["records_exact", "records_folded"])
def test_old_layout_missing_index_named(
    store_url: str, tmp_path: Path, lost: str
) -> None:
    with open_store(store_url) as store:
        import_csv(store, write_csv(tmp_path / "full.csv", LINES))
    for statement in OLD_LAYOUT:
        run_sql(store_url, statement)
    run_sql(store_url, f"DROP INDEX {lost}")

    with open_store(store_url) as store, pytest.raises(StoreUnavailable) as caught:
        store.lookup(key("FRA", "X0000001"))

    assert f"{lost} missing" in str(caught.value)
    assert "records_key" not in str(caught.value)
