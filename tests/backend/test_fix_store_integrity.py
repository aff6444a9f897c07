"""A store whose records were lost must refuse lookups, never answer NO_HIT."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from backend.app import create_app, hash_api_key
from backend.audit import AuditLog
from backend.errors import StoreUnavailable
from backend.importer import import_csv
from backend.records import DocumentKey, Result
from backend.store import open_store, sqlite_path
from backend.store.postgres import split_schema
from tests.backend.helpers import record_line, write_csv

API_KEY = "integrity-test-key"
COUNT = 40
LISTED = DocumentKey.create("UTO", "P", "N0000007")
UNLISTED = DocumentKey.create("UTO", "P", "Q9999999")


def seed(url: str, tmp_path: Path) -> None:
    lines = [record_line("UTO", f"N{index:07d}") for index in range(COUNT)]
    with open_store(url) as store:
        import_csv(store, write_csv(tmp_path / "seed.csv", lines))
        store.add_api_key("T-1", hash_api_key(API_KEY))


def run_sql(url: str, statement: str) -> None:
    """Damage the store from outside, as an operator or a bad script would."""
    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(statement)
        conn.close()
        return
    conninfo, schema = split_schema(url)
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{schema}"')
        pg.execute(statement)


def table_exists(url: str, name: str) -> bool:
    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path)
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        conn.close()
        return row is not None
    conninfo, schema = split_schema(url)
    with psycopg.connect(conninfo) as pg:
        found = pg.execute("SELECT to_regclass(%s)", (f"{schema}.{name}",)).fetchone()
    return found is not None and found[0] is not None


def test_dropped_records_table_refuses(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    run_sql(store_url, "DROP TABLE records")

    with open_store(store_url) as store:
        assert not table_exists(store_url, "records")
        with pytest.raises(StoreUnavailable, match="import"):
            store.lookup(UNLISTED)
        with pytest.raises(StoreUnavailable, match="records"):
            store.check()


def test_emptied_table_refuses_on_open(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    run_sql(store_url, "DELETE FROM records")

    with open_store(store_url) as store:
        with pytest.raises(StoreUnavailable, match=f"recorded {COUNT}"):
            store.lookup(UNLISTED)
        with pytest.raises(StoreUnavailable):
            store.lookup_many([UNLISTED, LISTED])


def test_partly_deleted_fails_check(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    run_sql(store_url, "DELETE FROM records WHERE document_number > 'N0000019'")

    with open_store(store_url) as store:
        with pytest.raises(StoreUnavailable, match="holds 20 records"):
            store.check()
        with pytest.raises(StoreUnavailable):
            store.lookup(UNLISTED)


def test_emptied_while_open_refuses(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    with open_store(store_url) as store:
        assert store.lookup(UNLISTED).result is Result.NO_HIT
        run_sql(store_url, "DELETE FROM records")
        # PostgreSQL notices at the next readiness check, SQLite at once.
        with pytest.raises(StoreUnavailable):
            store.check()
        with pytest.raises(StoreUnavailable):
            store.lookup(UNLISTED)


def test_full_import_repairs_store(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    run_sql(store_url, "DROP TABLE records")
    lines = [record_line("UTO", f"N{index:07d}") for index in range(COUNT)]

    with open_store(store_url) as store:
        import_csv(store, write_csv(tmp_path / "again.csv", lines))
        store.check()
        assert store.lookup(LISTED).result is Result.HIT
        assert store.lookup(UNLISTED).result is Result.NO_HIT


def test_http_ready_and_lookup_are_503(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    run_sql(store_url, "DELETE FROM records")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"issuing_state": "UTO", "document_type": "P", "document_number": "Q99"}

    with open_store(store_url) as store:
        audit = AuditLog.open(tmp_path / "audit.jsonl")
        with TestClient(create_app(store, audit=audit)) as client:
            ready = client.get("/ready")
            lookup = client.post("/v1/lookup", json=body, headers=auth)
        audit.close()

    assert ready.status_code == 503
    assert "kiosk-backend import" in ready.json()["error"]
    assert lookup.status_code == 503
    assert "NO_HIT" not in lookup.text


def test_ready_runs_probe_lookup(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    with open_store(store_url) as store:
        audit = AuditLog.open(tmp_path / "audit.jsonl")
        with TestClient(create_app(store, audit=audit)) as client:
            healthy = client.get("/ready")
            run_sql(store_url, "ALTER TABLE records RENAME TO records_gone")
            broken = client.get("/ready")
        audit.close()

    assert healthy.status_code == 200
    assert healthy.json()["records"] == COUNT
    assert broken.status_code == 503


def test_change_feed_refused_when_damaged(store_url: str, tmp_path: Path) -> None:
    seed(store_url, tmp_path)
    run_sql(store_url, "DELETE FROM records WHERE document_number > 'N0000009'")

    with (
        open_store(store_url) as store,
        pytest.raises(StoreUnavailable, match="holds 10 records"),
    ):
        store.changes_since(None)


def test_postgres_estimate_path(
    pg_schema_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large stores compare the statistics' estimate first; force that path.
    monkeypatch.setattr("backend.store.postgres._EXACT_COUNT_LIMIT", 0)
    seed(pg_schema_url, tmp_path)
    with open_store(pg_schema_url) as store:
        store.check()
        assert store.lookup(UNLISTED).result is Result.NO_HIT

        conninfo, schema = split_schema(pg_schema_url)
        with psycopg.connect(conninfo, autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{schema}"')
            pg.execute("DELETE FROM records")
            # Statistics reach the shared counters when the session is idle.
            pg.execute("SELECT pg_stat_force_next_flush()")

        with pytest.raises(StoreUnavailable, match=f"recorded {COUNT}"):
            store.check()
