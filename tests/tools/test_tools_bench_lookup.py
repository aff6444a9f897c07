"""Tests of the lookup benchmark's anchors (import floor and HTTP ceiling)
and of how its load generator spreads connections.

They check the helpers and the ceiling app, not any speed, and need no
PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backend.importer import FULL_HEADER
from tools.bench_ceiling_app import create_app, fixed_body
from tools.bench_import_floor import (
    FloorTiming,
    create_index_sql,
    floor_rows,
    pg_create_table_sql,
    sqlite_import_floor,
    sqlite_import_script,
    sqlite_index_script,
)
from tools.bench_lookup import _connection_owner, ceiling_ratio_row, service_workers


def test_floor_rows_rates_and_ratio() -> None:
    timing = FloorTiming(rows=1_000_000, load_seconds=2.0, index_seconds=3.0)
    rows = floor_rows(timing, "COPY", import_rate=100_000.0)
    assert [measure for measure, _, _ in rows] == [
        "import floor: bare COPY",
        "import floor: COPY + one index",
        "import rate / floor",
    ]
    assert rows[0][1] == "500,000 rows/s"
    assert rows[1][1] == "200,000 rows/s"
    assert rows[2][1] == "0.50"


def test_ceiling_ratio_row_divides_by_ceiling() -> None:
    measure, value, note = ceiling_ratio_row(1_000.0, 4_000.0)
    assert measure == "HTTP single / ceiling"
    assert value == "0.25"
    assert note == "1,000 over 4,000 req/s"


@pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp"
)
def test_connection_owner_finds_the_accepting_process() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                assert _connection_owner(client, port, [os.getpid()]) == os.getpid()
                # The process that owns it is not among the processes given.
                assert _connection_owner(client, port, [os.getppid()]) is None
                # A port with no such connection.
                assert _connection_owner(client, port + 1, [os.getpid()]) is None


@pytest.mark.skipif(
    not Path("/proc/self/task").exists(), reason="needs Linux /proc task files"
)
def test_service_workers_skips_resource_tracker() -> None:
    # A process without children serves in itself, as uvicorn with one worker.
    with subprocess.Popen(["sleep", "30"]) as lone:
        try:
            assert service_workers(lone.pid) == (lone.pid,)
        finally:
            lone.kill()
    script = (
        "import subprocess, sys, time\n"
        "a = subprocess.Popen(['sleep', '30'])\n"
        "b = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)',"
        " 'multiprocessing.resource_tracker'])\n"
        "print(a.pid, b.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            worker, tracker = (int(pid) for pid in parent.stdout.readline().split())
            assert service_workers(parent.pid) == (worker,)
        finally:
            for pid in (worker, tracker):
                os.kill(pid, 9)
            parent.kill()


def test_pg_table_types_follow_store() -> None:
    sql = pg_create_table_sql('"s".records')
    assert sql.startswith('CREATE TABLE "s".records (')
    for name in FULL_HEADER:
        assert f"{name} " in sql
    assert 'issuing_state text COLLATE "C"' in sql
    assert 'document_number text COLLATE "C"' in sql
    assert "reported_on date" in sql
    assert "expiry_date date" in sql
    assert "status text," in sql


def test_index_name_is_unqualified() -> None:
    sql = create_index_sql('"s".records')
    assert sql == (
        'CREATE UNIQUE INDEX records_exact ON "s".records '
        "(issuing_state, document_number, document_type)"
    )


def test_sqlite_script_imports_without_header() -> None:
    script = sqlite_import_script(Path("/tmp/data.csv"))
    lines = script.splitlines()
    assert lines[0] == "PRAGMA journal_mode=WAL;"
    assert lines[2] == ".mode csv"
    assert lines[3] == ".import --skip 1 '/tmp/data.csv' records"
    assert "PRAGMA cache_size=-262144;" in sqlite_index_script()


def test_sqlite_script_rejects_quote_in_path() -> None:
    with pytest.raises(ValueError, match="quote"):
        sqlite_import_script(Path("/tmp/it's.csv"))


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell")
def test_sqlite_floor_loads_every_row(tmp_path: Path) -> None:
    csv_path = tmp_path / "data.csv"
    csv_path.write_text(
        ",".join(FULL_HEADER)
        + "\nUTO,P,A1,stolen,2020-01-02,UTO,R1,,\n"
        + "UTO,P,A2,lost,2020-01-03,UTO,R2,2019-01-01,2029-01-01\n"
    )
    db = tmp_path / "floor.sqlite3"
    sqlite3_shell = shutil.which("sqlite3")
    assert sqlite3_shell is not None
    timing = sqlite_import_floor(sqlite3_shell, csv_path, db)
    assert timing.rows == 2
    assert timing.load_seconds > 0
    assert timing.index_seconds > 0
    assert not db.exists()


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell")
def test_sqlite_floor_index_rejects_duplicates(tmp_path: Path) -> None:
    # The floor's index must be unique, like the store's.
    db = tmp_path / "floor.sqlite3"
    csv_path = tmp_path / "data.csv"
    csv_path.write_text(
        ",".join(FULL_HEADER) + "\nUTO,P,A1,stolen,2020-01-02,UTO,R1,,\n"
    )
    shell = shutil.which("sqlite3")
    assert shell is not None
    subprocess.run(
        [shell, str(db)], input=sqlite_import_script(csv_path), text=True, check=True
    )
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO records SELECT * FROM records")
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            [shell, "-bail", str(db)],
            input=sqlite_index_script(),
            text=True,
            check=True,
            capture_output=True,
        )


def test_fixed_body_is_json_of_length() -> None:
    for length in (10, 11, 218):
        body = fixed_body(length)
        assert len(body) == length
        assert isinstance(json.loads(body), dict)
    with pytest.raises(ValueError, match="invalid body length 9"):
        fixed_body(9)


def test_ceiling_app_reads_whole_body() -> None:
    app = create_app(body_length=50)
    incoming = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http"}, receive, send))
    assert incoming == []
    assert sent[0]["status"] == 200
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == b"50"
    assert len(sent[1]["body"]) == 50
