"""PostgreSQL lookups on the event loop: same answers, same failures."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from backend.app import create_app, hash_api_key
from backend.audit import AuditLog, load_or_create_key, verify
from backend.errors import StoreUnavailable
from backend.importer import import_csv
from backend.records import DocumentKey, Result
from backend.store import Store, open_store
from backend.store.postgres import PostgresStore, split_schema
from tests.backend.conftest import PG_URL
from tests.backend.helpers import write_csv
from tests.backend.test_backend_answer_encoding import KEYS, LINES

pytestmark = pytest.mark.postgres

API_KEY = "test-key-async-reader"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _seed(store: Store, tmp_path: Path) -> list[DocumentKey]:
    import_csv(store, write_csv(tmp_path / "seed.csv", LINES))
    store.add_api_key("T-1", hash_api_key(API_KEY))
    return [DocumentKey.create(*parts) for parts, _ in KEYS]


def _key_json(parts: tuple[str, str, str]) -> dict[str, str]:
    state, document_type, number = parts
    return {
        "issuing_state": state,
        "document_type": document_type,
        "document_number": number,
    }


def _fail_sync_lookups(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the thread-pool path fail, so a passing request used the reader."""

    def fail(*_args: object) -> object:
        raise AssertionError("lookup went through the synchronous pool")

    monkeypatch.setattr(store, "find_candidates", fail)


@pytest.fixture
def pg_store(pg_schema_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_schema_url, timeout=1.0)
    yield store
    store.close()


async def test_reader_matches_find_candidates(
    pg_store: PostgresStore, tmp_path: Path
) -> None:
    keys = _seed(pg_store, tmp_path)
    reader = await pg_store.open_async_reader()
    try:
        for chosen in (keys, keys[:1], keys[2:3]):
            assert await reader.find_candidates(chosen) == pg_store.find_candidates(
                chosen
            )
    finally:
        await reader.close()


async def test_reader_without_data_raises(pg_store: PostgresStore) -> None:
    reader = await pg_store.open_async_reader()
    one = [DocumentKey.create("UTO", "P", "A1")]
    two = [*one, DocumentKey.create("UTO", "P", "B2")]
    try:
        for keys in (one, two):
            with pytest.raises(StoreUnavailable, match="no imported data"):
                await reader.find_candidates(keys)
    finally:
        await reader.close()


def test_service_answers_byte_identical(
    pg_store: PostgresStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _seed(pg_store, tmp_path)
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    payload = {"keys": [_key_json(parts) for parts, _ in KEYS]}
    with TestClient(create_app(pg_store, audit=audit)) as client:
        _fail_sync_lookups(pg_store, monkeypatch)
        batch = client.post(
            "/v1/lookup/batch", json=payload, headers={**AUTH, "X-Request-ID": "b-1"}
        )
        single = client.post(
            "/v1/lookup",
            json=payload["keys"][0],
            headers={**AUTH, "X-Request-ID": "s-1"},
        )
    monkeypatch.undo()
    audit.close()
    assert batch.status_code == 200
    assert single.status_code == 200

    checked_at = dt.datetime.fromisoformat(batch.json()["answers"][0]["checked_at"])
    answers = [
        {**answer.to_json(), "request_id": "b-1", "checked_at": checked_at.isoformat()}
        for answer in pg_store.lookup_many(keys)
    ]
    expected = {
        "request_id": "b-1",
        "data_version": answers[0]["data_version"],
        "answers": answers,
    }
    assert batch.content == json.dumps(expected, separators=(",", ":")).encode()
    assert [answer["result"] for answer in answers] == [r.value for _, r in KEYS]

    single_checked_at = single.json()["checked_at"]
    [answer] = pg_store.lookup_many(keys[:1])
    expected_single = {
        **answer.to_json(),
        "request_id": "s-1",
        "checked_at": single_checked_at,
    }
    assert single.content == json.dumps(expected_single, separators=(",", ":")).encode()

    report = verify(
        tmp_path / "audit.jsonl", load_or_create_key(tmp_path / "audit.jsonl.key")
    )
    assert report.ok, report.problems
    assert report.entries == 2


def test_dropped_table_is_503(
    pg_schema_url: str,
    pg_store: PostgresStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed(pg_store, tmp_path)
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    single = _key_json(("UTO", "P", "Q9999"))
    with TestClient(create_app(pg_store, audit=audit)) as client:
        _fail_sync_lookups(pg_store, monkeypatch)
        assert client.post("/v1/lookup", json=single, headers=AUTH).status_code == 200
        conninfo, schema = split_schema(pg_schema_url)
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP TABLE "{schema}".records')
        responses = [
            client.post("/v1/lookup", json=single, headers=AUTH),
            client.post("/v1/lookup/batch", json={"keys": [single] * 3}, headers=AUTH),
        ]
    audit.close()
    for response in responses:
        assert response.status_code == 503
        assert "unavailable" in response.json()["error"]
        assert "NO_HIT" not in response.text
    entries = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(entries) == 1


def test_database_gone_is_503(
    pg_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(pg_database_url, timeout=1.0)
    try:
        _seed(store, tmp_path)
        audit = AuditLog.open(tmp_path / "audit.jsonl")
        single = _key_json(KEYS[0][0])
        with TestClient(create_app(store, audit=audit)) as client:
            _fail_sync_lookups(store, monkeypatch)
            ok = client.post("/v1/lookup", json=single, headers=AUTH)
            assert ok.json()["result"] == Result.HIT.value
            name = pg_database_url.rsplit("/", 1)[1]
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            responses = [
                client.post("/v1/lookup", json=single, headers=AUTH),
                client.post(
                    "/v1/lookup/batch", json={"keys": [single] * 2}, headers=AUTH
                ),
                # A later request gets no connection from the pool at all.
                client.post("/v1/lookup", json=single, headers=AUTH),
            ]
        audit.close()
    finally:
        store.close()
    for response in responses:
        assert response.status_code == 503
        assert "unavailable" in response.json()["error"]
        assert "NO_HIT" not in response.text


async def test_reader_retries_terminated_connection(
    pg_store: PostgresStore, tmp_path: Path
) -> None:
    # After a server restart every pooled connection is dead. The next
    # lookup must return its result, not fail with 503 once per connection.
    keys = _seed(pg_store, tmp_path)
    reader = await pg_store.open_async_reader()
    try:
        expected = await reader.find_candidates(keys[:1])
        # Hold every pooled connection at once to learn its server process.
        pids = []
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(reader._pool.get_stats()["pool_size"]):
                conn = await stack.enter_async_context(reader._pool.connection())
                row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
                assert row is not None
                pids.append(row[0])
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert await reader.find_candidates(keys[:1]) == expected
    finally:
        await reader.close()


def test_damaged_store_is_503(pg_schema_url: str, tmp_path: Path) -> None:
    with open_store(pg_schema_url) as store:
        _seed(store, tmp_path)
    conninfo, schema = split_schema(pg_schema_url)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'DELETE FROM "{schema}".records')
    single = _key_json(("UTO", "P", "Q9999"))
    with PostgresStore(pg_schema_url, timeout=1.0) as store:
        audit = AuditLog.open(tmp_path / "audit.jsonl")
        with TestClient(create_app(store, audit=audit)) as client:
            responses = [
                client.post("/v1/lookup", json=single, headers=AUTH),
                client.post("/v1/lookup/batch", json={"keys": [single]}, headers=AUTH),
            ]
        audit.close()
    for response in responses:
        assert response.status_code == 503
        assert "NO_HIT" not in response.text


async def test_batch_with_comma_keys(pg_store: PostgresStore, tmp_path: Path) -> None:
    # A batch goes as comma-separated text unless a key contains a comma. Such
    # a key, built without DocumentKey.create, must not shift the others.
    keys = _seed(pg_store, tmp_path)
    odd = DocumentKey("UTO", "P", "A,B")
    chosen = [odd, *keys, odd]
    version, candidates = pg_store.find_candidates(chosen)
    per_key = [pg_store.find_candidates([key])[1][0] for key in chosen]
    assert candidates == per_key
    assert candidates[0] == []
    assert candidates[-1] == []
    assert candidates[1] != []
    reader = await pg_store.open_async_reader()
    try:
        assert await reader.find_candidates(chosen) == (version, candidates)
    finally:
        await reader.close()


def test_full_import_analyzes_records(
    pg_schema_url: str, pg_store: PostgresStore, tmp_path: Path
) -> None:
    _seed(pg_store, tmp_path)
    conninfo, schema = split_schema(pg_schema_url)
    with psycopg.connect(conninfo) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stats WHERE schemaname = %s"
            " AND tablename = 'records' AND attname = 'folded_number'",
            (schema,),
        ).fetchone()
    assert row is not None
    assert row[0] == 1
