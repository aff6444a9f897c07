"""One store test suite, run against SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.errors import ImportFailed, StoreUnavailable
from backend.importer import import_csv
from backend.records import DocumentKey, Result, Status, fold_number
from backend.store import Row, Store, open_store
from backend.store.base import new_version_name, version_time
from tests.backend.helpers import record_line, write_csv


def load(
    store: Store, tmp_path: Path, lines: list[list[str]], name: str = "a.csv"
) -> str:
    report = import_csv(store, write_csv(tmp_path / name, lines))
    return report.result.version


def key(state: str, number: str, doc_type: str = "P") -> DocumentKey:
    return DocumentKey.create(state, doc_type, number)


BASIC = [
    record_line("UTO", "L898902C3", issue_date="2020-01-02", expiry_date="2030-01-01"),
    record_line("D", "C01X00T47", doc_type="ID", status="lost"),
    record_line("UTO", "012345", status="revoked"),
    record_line("FRA", "AB1O2I", status="invalidated"),
]


def test_lookup_before_import_is_unavailable(store: Store) -> None:
    with pytest.raises(StoreUnavailable, match="no imported data"):
        store.lookup(key("UTO", "L898902C3"))
    assert store.data_version() is None
    assert store.count() == 0


def test_exact_match_is_hit_with_record(store: Store, tmp_path: Path) -> None:
    version = load(store, tmp_path, BASIC)
    answer = store.lookup(key("UTO", "L898902C3"))
    assert answer.result is Result.HIT
    assert answer.data_version == version
    assert answer.source == store.kind
    assert not answer.type_mismatch
    (record,) = answer.records
    assert record.status is Status.STOLEN
    assert record.issue_date is not None
    assert record.issue_date.isoformat() == "2020-01-02"
    assert record.reporting_country == "FRA"


def test_type_mismatch_is_still_hit(store: Store, tmp_path: Path) -> None:
    load(store, tmp_path, BASIC)
    answer = store.lookup(key("D<<", "C01X00T47", "P"))
    assert answer.result is Result.HIT
    assert answer.type_mismatch
    assert answer.records[0].document_type == "ID"


def test_unknown_number_is_no_hit_with_version(store: Store, tmp_path: Path) -> None:
    version = load(store, tmp_path, BASIC)
    answer = store.lookup(key("UTO", "X0000001"))
    assert answer.result is Result.NO_HIT
    assert answer.data_version == version
    assert answer.records == ()


def test_other_state_is_no_hit(store: Store, tmp_path: Path) -> None:
    load(store, tmp_path, BASIC)
    assert store.lookup(key("GBR", "L898902C3")).result is Result.NO_HIT


@pytest.mark.parametrize(
    ("state", "number"),
    [
        ("UTO", "12345"),
        ("UTO", "0012345"),
        ("FRA", "AB1021"),
        ("FRA", "ABIOZI".replace("Z", "2")),
    ],
)
def test_folded_match_is_possible(
    store: Store, tmp_path: Path, state: str, number: str
) -> None:
    load(store, tmp_path, BASIC)
    answer = store.lookup(key(state, number))
    assert answer.result is Result.POSSIBLE
    assert len(answer.records) == 1


def test_batch_keeps_order(store: Store, tmp_path: Path) -> None:
    load(store, tmp_path, BASIC)
    keys = [key("UTO", f"N{i:07d}") for i in range(1000)]
    keys[10] = key("UTO", "L898902C3")
    keys[500] = key("UTO", "12345")
    answers = store.lookup_many(keys)
    assert len(answers) == 1000
    assert answers[10].result is Result.HIT
    assert answers[500].result is Result.POSSIBLE
    others = {a.result for i, a in enumerate(answers) if i not in (10, 500)}
    assert others == {Result.NO_HIT}


def test_full_import_replaces_data(store: Store, tmp_path: Path) -> None:
    first = load(store, tmp_path, BASIC)
    second = load(store, tmp_path, [record_line("GBR", "123456789")], "b.csv")
    assert second != first
    assert store.data_version() == second
    assert store.count() == 1
    assert store.lookup(key("UTO", "L898902C3")).result is Result.NO_HIT
    assert store.lookup(key("GBR", "123456789")).result is Result.HIT


def test_failed_import_keeps_previous_data(store: Store, tmp_path: Path) -> None:
    version = load(store, tmp_path, BASIC)

    def broken_rows() -> Iterator[tuple[int, Row]]:
        yield (
            2,
            ("GBR", "P", "99", "99", "stolen", "2024-01-01", "GBR", "R", None, None),
        )
        raise ImportFailed("source failed mid-way")

    with pytest.raises(ImportFailed):
        store.import_full(broken_rows())
    assert store.data_version() == version
    assert store.count() == len(BASIC)
    assert store.lookup(key("UTO", "L898902C3")).result is Result.HIT
    assert store.lookup(key("GBR", "99")).result is Result.NO_HIT


def test_empty_full_import_is_refused(store: Store, tmp_path: Path) -> None:
    version = load(store, tmp_path, BASIC)
    bad_only = [record_line("UTO", "A1", status="misplaced")]
    with pytest.raises(ImportFailed, match="no valid records"):
        load(store, tmp_path, bad_only, "bad.csv")
    assert store.data_version() == version


def test_duplicates_rejected_with_lines(store: Store, tmp_path: Path) -> None:
    lines = [*BASIC, record_line("UTO", "L898902C3", status="lost")]
    # One line in five is over the default 1% limit of invalid lines.
    report = import_csv(
        store, write_csv(tmp_path / "d.csv", lines), max_rejected_share=None
    )
    assert report.rejected == [(6, "duplicate of the record on line 2")]
    assert store.count() == len(BASIC)
    answer = store.lookup(key("UTO", "L898902C3"))
    assert [r.status for r in answer.records] == [Status.STOLEN]


def test_delta_adds_replaces_and_deletes(store: Store, tmp_path: Path) -> None:
    first = load(store, tmp_path, BASIC)
    delta = write_csv(
        tmp_path / "delta.csv",
        [
            ["add", *record_line("GBR", "555000111")],
            ["add", *record_line("UTO", "L898902C3", status="revoked")],
            ["delete", "FRA", "P", "AB1O2I", "", "", "", "", "", ""],
            ["delete", "FRA", "P", "NOTSTORED1", "", "", "", "", "", ""],
        ],
        delta=True,
    )
    report = import_csv(store, delta, delta=True)
    assert report.result.version != first
    assert report.result.added == 2
    assert report.result.deleted == 1
    assert report.rejected == [(5, "delete of a record that is not stored")]
    assert store.count() == len(BASIC)
    assert store.lookup(key("GBR", "555000111")).result is Result.HIT
    replaced = store.lookup(key("UTO", "L898902C3"))
    assert replaced.records[0].status is Status.REVOKED
    assert store.lookup(key("FRA", "AB1O2I")).result is Result.NO_HIT


def test_change_feed_snapshot_then_delta(store: Store, tmp_path: Path) -> None:
    first = load(store, tmp_path, BASIC)
    snapshot = store.changes_since(None)
    assert snapshot.reset
    assert snapshot.version == first
    assert len(snapshot.added) == len(BASIC)
    assert snapshot.next_cursor is None

    unchanged = store.changes_since(first)
    assert not unchanged.reset
    assert unchanged.added == ()
    assert unchanged.deleted == ()

    delta = write_csv(
        tmp_path / "delta.csv",
        [
            ["add", *record_line("GBR", "555000111")],
            ["delete", "UTO", "P", "012345", "", "", "", "", "", ""],
        ],
        delta=True,
    )
    second = import_csv(store, delta, delta=True).result.version
    page = store.changes_since(first)
    assert not page.reset
    assert page.version == second
    assert [r.document_number for r in page.added] == ["555000111"]
    assert page.deleted == (DocumentKey("UTO", "P", "012345"),)


def test_change_feed_compacts_add_then_delete(store: Store, tmp_path: Path) -> None:
    first = load(store, tmp_path, BASIC)
    add = write_csv(tmp_path / "1.csv", [["add", *record_line("GBR", "7")]], delta=True)
    import_csv(store, add, delta=True)
    delete = write_csv(
        tmp_path / "2.csv",
        [["delete", "GBR", "P", "7", "", "", "", "", "", ""]],
        delta=True,
    )
    import_csv(store, delete, delta=True)
    page = store.changes_since(first)
    assert page.added == ()
    assert page.deleted == (DocumentKey("GBR", "P", "7"),)


def test_change_feed_pages(store: Store, tmp_path: Path) -> None:
    lines = [record_line("UTO", f"P{i:06d}") for i in range(25)]
    load(store, tmp_path, lines)
    seen: list[str] = []
    cursor = 0
    pages = 0
    while True:
        page = store.changes_since(None, cursor=cursor, limit=10)
        pages += 1
        seen.extend(r.document_number for r in page.added)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert sorted(seen) == [f"P{i:06d}" for i in range(25)]


def test_change_feed_resets_after_full_import(store: Store, tmp_path: Path) -> None:
    first = load(store, tmp_path, BASIC)
    load(store, tmp_path, [record_line("GBR", "1")], "b.csv")
    page = store.changes_since(first)
    assert page.reset
    assert [r.document_number for r in page.added] == ["1"]
    unknown_version = store.changes_since("no-such-version")
    assert unknown_version.reset


def test_api_keys(store: Store) -> None:
    store.add_api_key("T-001", "ab" * 32)
    assert store.terminal_for_key("ab" * 32) == "T-001"
    assert store.terminal_for_key("cd" * 32) is None


def test_raw_select_anchor(store: Store, tmp_path: Path) -> None:
    load(store, tmp_path, BASIC)
    rows = store.raw_select("UTO", fold_number("L898902C3"))
    assert len(rows) == 1
    assert rows[0][2] == "L898902C3"


def test_reopen_keeps_data(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as first:
        version = load(first, tmp_path, BASIC)
    with open_store(store_url) as second:
        assert second.data_version() == version
        assert second.count() == len(BASIC)


def test_same_number_two_types(store: Store, tmp_path: Path) -> None:
    load(
        store,
        tmp_path,
        [
            record_line("UTO", "A1234567", doc_type="P"),
            record_line("UTO", "A1234567", doc_type="ID", status="lost"),
        ],
    )
    answer = store.lookup(key("UTO", "A1234567", "P"))
    assert answer.result is Result.HIT
    assert not answer.type_mismatch
    assert sorted(r.document_type for r in answer.records) == ["ID", "P"]
    other = store.lookup(key("UTO", "A1234567", "V"))
    assert other.result is Result.HIT
    assert other.type_mismatch


def test_unknown_store_url_rejected() -> None:
    from backend.errors import StoreError

    with pytest.raises(StoreError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://localhost/db")
    with pytest.raises(StoreError, match="no file path"):
        open_store("sqlite:///")
    with pytest.raises(StoreError, match="needs three slashes"):
        open_store("sqlite://var/x.sqlite3")


@pytest.mark.postgres
def test_postgres_schema_name_validated(pg_schema_url: str) -> None:
    from backend.errors import StoreError

    bad = pg_schema_url.rsplit("schema=", 1)[0] + "schema=Bad;Name"
    with pytest.raises(StoreError, match="invalid schema name"):
        open_store(bad)


def test_versions_of_two_stores_differ_within_one_second() -> None:
    moment = dt.datetime(2026, 12, 5, 1, 2, 3, tzinfo=dt.UTC)

    first, second = new_version_name(1, moment), new_version_name(1, moment)

    assert first != second
    assert first.startswith("1-20261205T010203Z-")
    assert version_time(first) == moment
    assert version_time("7-20261204T060000Z") == dt.datetime(
        2026, 12, 4, 6, 0, tzinfo=dt.UTC
    )


def test_mapped_readers_see_new_import(tmp_path: Path) -> None:
    # Readers read through a memory mapping. A later full import, written
    # by another connection, must still be what their lookups return.
    from backend.store.sqlite import SQLiteStore

    with open_store(f"sqlite:///{tmp_path / 'mapped.sqlite3'}") as store:
        assert isinstance(store, SQLiteStore)
        import_csv(store, write_csv(tmp_path / "a.csv", [record_line("UTO", "AB1")]))
        key = DocumentKey.create("UTO", "P", "AB1")
        assert store.lookup(key).result is Result.HIT
        mapped = store._reader().execute("PRAGMA mmap_size").fetchone()[0]
        assert mapped > 0
        import_csv(store, write_csv(tmp_path / "b.csv", [record_line("UTO", "CD2")]))
        assert store.lookup(key).result is Result.NO_HIT
        other = DocumentKey.create("UTO", "P", "CD2")
        assert store.lookup(other).result is Result.HIT


def test_sqlite_file_cut_short_under_readers_is_unavailable(tmp_path: Path) -> None:
    # A file overwritten in place (cp onto it) shrinks under the mapping.
    # SQLite checks the file's size before it reads from the mapping, so
    # the lookup fails with an error instead of stopping the process.
    path = tmp_path / "cut.sqlite3"
    with open_store(f"sqlite:///{path}") as store:
        lines = [record_line("UTO", f"AB{i}") for i in range(2000)]
        import_csv(store, write_csv(tmp_path / "a.csv", lines))
        key = DocumentKey.create("UTO", "P", "AB7")
        assert store.lookup(key).result is Result.HIT
        # The pages must be in the file, not only in the write-ahead log.
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert path.stat().st_size > 8192
        os.truncate(path, 8192)
        with pytest.raises(StoreUnavailable, match="malformed"):
            store.lookup(key)


def test_new_sqlite_store_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "list.sqlite3"
    with open_store(f"sqlite:///{path}") as store:
        import_csv(store, write_csv(tmp_path / "a.csv", [record_line("UTO", "AB1")]))
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
