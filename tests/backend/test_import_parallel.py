"""Full imports parsed in a child process give the in-process results."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

import backend.importer
from backend.errors import ImportFailed
from backend.importer import import_csv
from backend.records import DocumentKey, Result
from backend.store import Store
from backend.store.base import Row
from backend.store.bulk import encode_copy_rows
from tests.backend.helpers import record_line, write_csv


def mixed_lines() -> list[list[str]]:
    """Valid lines in normalised and raw form, invalid lines and a duplicate."""
    return [
        record_line("UTO", "L898902C3"),
        record_line("UTO", "BAD*NUMBER"),
        record_line("uto", "a 8-9<", doc_type="p", status=" Lost "),
        record_line("D", "0012345", reference="back\\slash, comma"),
        record_line("UTO", "A2", reported_on="2024-13-01"),
        record_line("UTO", "L898902C3", reference="duplicate"),
        record_line("FRA", "X1", issue_date="2020-01-02", expiry_date="2030-01-01"),
        ["UTO", "P", "A4"],
    ]


def stored_rows(store: Store) -> list[tuple[str, ...]]:
    keys = [
        DocumentKey.create("UTO", "P", "L898902C3"),
        DocumentKey.create("UTO", "P", "A89"),
        DocumentKey.create("D", "P", "0012345"),
        DocumentKey.create("FRA", "P", "X1"),
    ]
    _, found = store.find_candidates(keys)
    return sorted(tuple(str(v) for v in row) for rows in found for row in rows)


def test_parallel_matches_inline(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "mixed.csv", mixed_lines())

    inline = import_csv(store, path, parallel=False, max_rejected_share=None)
    inline_rows = stored_rows(store)
    parallel = import_csv(store, path, parallel=True, max_rejected_share=None)

    assert parallel.rejected == inline.rejected
    assert [line for line, _ in parallel.rejected] == [3, 6, 7, 9]
    assert parallel.rows_read == inline.rows_read == 8
    assert parallel.result.record_count == inline.result.record_count == 4
    assert stored_rows(store) == inline_rows
    assert len(inline_rows) == 4
    assert inline_rows[0][:4] == ("D<<", "P", "0012345", "12345")
    assert "back\\slash, comma" in inline_rows[0]


def test_parallel_limit_keeps_old_data(store: Store, tmp_path: Path) -> None:
    old = import_csv(store, write_csv(tmp_path / "old.csv", [record_line("UTO", "1")]))
    lines = [record_line("GBR", f"K{i:06d}") for i in range(50_000)]
    lines += [record_line("GBR", "BAD*", status="misplaced")] * 3
    path = write_csv(tmp_path / "bad.csv", lines)

    with pytest.raises(ImportFailed, match="more than 2 invalid lines"):
        import_csv(store, path, parallel=True, max_rejected=2)

    assert store.data_version() == old.result.version
    assert store.count() == 1
    probe = DocumentKey.create("GBR", "P", "K000001")
    assert store.lookup(probe).result is Result.NO_HIT


def test_parallel_header_error_raised(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("state,number\nUTO,1\n", encoding="utf-8")

    with pytest.raises(ImportFailed, match="unexpected header"):
        import_csv(store, path, parallel=True)


def test_parser_crash_keeps_old_data(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = import_csv(store, write_csv(tmp_path / "old.csv", [record_line("UTO", "1")]))
    path = write_csv(tmp_path / "new.csv", [record_line("GBR", "K1")])
    # A child that exits at once, as if killed before its first batch.
    monkeypatch.setattr(sys, "executable", "/bin/false")

    with pytest.raises(ImportFailed, match="ended without a result"):
        import_csv(store, path, parallel=True)

    assert store.data_version() == old.result.version
    assert store.count() == 1


@pytest.mark.parametrize(("idle", "expected"), [(1.0, ["rows"]), (0.2, [])])
def test_default_follows_idle_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle: float, expected: list[str]
) -> None:
    from backend.store import open_store

    calls: list[str] = []
    original = backend.importer._ChildParsedRows._start

    def spy(self: backend.importer._ChildParsedRows, form: str) -> object:
        calls.append(form)
        return original(self, form)

    monkeypatch.setattr(backend.importer._ChildParsedRows, "_start", spy)
    monkeypatch.setattr(backend.importer, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(backend.importer, "_idle_cpus", lambda _sample_s: idle)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    path = write_csv(tmp_path / "f.csv", [record_line("UTO", "1")])
    with open_store(f"sqlite:///{tmp_path / 's.sqlite3'}") as store:
        report = import_csv(store, path)

    assert calls == expected
    assert report.result.record_count == 1


@pytest.mark.parametrize(("load", "expected"), [(0.0, True), (64.0, False)])
def test_default_falls_back_to_load_average(
    monkeypatch: pytest.MonkeyPatch, load: float, expected: bool
) -> None:
    monkeypatch.setattr(backend.importer, "_idle_cpus", lambda _sample_s: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))

    assert backend.importer._parse_in_child_by_default(1 << 30) is expected


def test_default_needs_two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend.importer, "_idle_cpus", lambda _sample_s: 1.0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})

    assert backend.importer._parse_in_child_by_default(1 << 30) is False


@pytest.mark.parametrize(
    ("size", "sample_s"), [(64 << 20, 0.2), (256 << 20, 1.0), (2 << 30, 1.0)]
)
def test_large_files_sample_idle_longer(
    monkeypatch: pytest.MonkeyPatch, size: int, sample_s: float
) -> None:
    # A busy moment in a short sample would turn the parser process off
    # for a whole long import.
    samples: list[float] = []

    def idle(sample: float) -> float:
        samples.append(sample)
        return 1.0

    monkeypatch.setattr(backend.importer, "_idle_cpus", idle)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})

    assert backend.importer._parse_in_child_by_default(size) is True
    assert samples == [sample_s]


def test_idle_cpus_reads_proc_stat() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat on this system")

    idle = backend.importer._idle_cpus(0.05)

    assert idle is not None
    assert 0.0 <= idle <= (os.cpu_count() or 1) + 1e-9


def test_copy_text_escapes_reference() -> None:
    row: Row = ("UTO", "P", "1", "1", "lost", "2024-01-01", "FRA", "a\\b", None, None)

    text = encode_copy_rows([(2, row)])

    assert text == "2\tUTO\tP\t1\t1\tlost\t2024-01-01\tFRA\ta\\\\b\t\\N\t\\N\n"


def test_parallel_rows_are_sqlite_integers(tmp_path: Path) -> None:
    from backend.store import open_store

    db = tmp_path / "s.sqlite3"
    path = write_csv(tmp_path / "f.csv", [record_line("UTO", "1")])
    with open_store(f"sqlite:///{db}") as store:
        import_csv(store, path, parallel=True)

    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT typeof(id), id, typeof(issue_date) FROM records")
        assert row.fetchall() == [("integer", 2, "null")]
