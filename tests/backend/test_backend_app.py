"""HTTP service: lookups, authentication, limits, malformed input, faults."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.app import (
    WORKER_CONFIG_ENV,
    ServiceSettings,
    create_app,
    hash_api_key,
)
from backend.audit import AuditLog, load_or_create_key, verify
from backend.errors import InvalidRecord
from backend.importer import import_csv
from backend.records import (
    DocumentKey,
    normalize_number,
    normalize_state,
    normalize_type,
)
from backend.store import Store, open_store
from backend.store.postgres import PostgresStore
from tests.backend.conftest import PG_URL
from tests.backend.helpers import record_line, write_csv

API_KEY = "test-key-terminal-1"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SECRET_NUMBER = "L898902C3"


def seed(store: Store, tmp_path: Path) -> str:
    lines = [
        record_line("UTO", SECRET_NUMBER),
        record_line("UTO", "012345", status="lost"),
    ]
    report = import_csv(store, write_csv(tmp_path / "seed.csv", lines))
    store.add_api_key("T-1", hash_api_key(API_KEY))
    return report.result.version


def make_client(
    store: Store, tmp_path: Path, settings: ServiceSettings | None = None
) -> TestClient:
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    return TestClient(create_app(store, audit=audit, settings=settings))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield store
    store.close()


@pytest.fixture
def client(sqlite_store: Store, tmp_path: Path) -> Iterator[TestClient]:
    seed(sqlite_store, tmp_path)
    with make_client(sqlite_store, tmp_path) as test_client:
        yield test_client


def key_json(number: str = SECRET_NUMBER, state: str = "UTO") -> dict[str, str]:
    return {"issuing_state": state, "document_type": "P", "document_number": number}


def test_hit_returns_record(client: TestClient) -> None:
    response = client.post("/v1/lookup", json=key_json(), headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["result"] == "HIT"
    assert body["records"][0]["status"] == "stolen"
    assert body["data_version"]
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_no_hit_names_version(client: TestClient) -> None:
    body = client.post("/v1/lookup", json=key_json("X1234567"), headers=AUTH).json()
    assert body["result"] == "NO_HIT"
    assert body["data_version"]


def test_folded_is_possible(client: TestClient) -> None:
    body = client.post("/v1/lookup", json=key_json("12345"), headers=AUTH).json()
    assert body["result"] == "POSSIBLE"


def test_batch_of_thousand(client: TestClient) -> None:
    keys = [key_json(f"N{i:07d}") for i in range(1000)]
    keys[999] = key_json()
    response = client.post("/v1/lookup/batch", json={"keys": keys}, headers=AUTH)
    assert response.status_code == 200
    answers = response.json()["answers"]
    assert len(answers) == 1000
    assert answers[999]["result"] == "HIT"
    assert {a["result"] for a in answers[:999]} == {"NO_HIT"}


def test_batch_over_limit_rejected(client: TestClient) -> None:
    keys = [key_json(f"N{i:07d}") for i in range(10_001)]
    response = client.post("/v1/lookup/batch", json={"keys": keys}, headers=AUTH)
    assert response.status_code == 422
    assert "keys" in response.json()["error"]


def test_missing_and_wrong_key(client: TestClient) -> None:
    missing = client.post("/v1/lookup", json=key_json())
    assert missing.status_code == 401
    assert "kiosk-backend keys add" in missing.json()["error"]
    wrong = client.post(
        "/v1/lookup", json=key_json(), headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"].startswith("invalid API key: no terminal")
    assert "kiosk-backend keys add" in wrong.json()["error"]
    header = client.post("/v1/lookup", json=key_json(), headers={"X-API-Key": API_KEY})
    assert header.status_code == 200


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({**key_json(), "document_number": 123}, "document_number"),
        ({**key_json(), "issuing_state": ["UTO"]}, "issuing_state"),
        ({"issuing_state": "UTO", "document_type": "P"}, "document_number"),
        ({**key_json(), "extra": "x"}, "extra"),
        ({**key_json(), "document_number": "L8989ü2C3"}, "invalid document number"),
        ({**key_json(), "document_number": "1'; DROP TABLE records;--"}, "number"),
        ({**key_json(), "issuing_state": "U'O"}, "invalid issuing state"),
        ({**key_json(), "document_type": "%"}, "invalid document type"),
    ],
)
def test_malformed_key_is_422(
    client: TestClient, payload: dict[str, object], fragment: str
) -> None:
    response = client.post("/v1/lookup", json=payload, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert fragment in body["error"]
    assert "L8989" not in response.text
    assert "DROP TABLE" not in response.text
    still = client.post("/v1/lookup", json=key_json(), headers=AUTH)
    assert still.json()["result"] == "HIT"


def test_bad_key_in_batch_named_by_index(client: TestClient) -> None:
    keys = [key_json(), key_json("AB<>CD"), key_json()]
    response = client.post("/v1/lookup/batch", json={"keys": keys}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"].startswith("invalid request: keys[1]:")


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/lookup",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["error"]


def test_ten_megabyte_body_is_413(client: TestClient) -> None:
    body = b'{"keys": [' + b" " * (10 * 1024 * 1024) + b"]}"
    response = client.post(
        "/v1/lookup/batch",
        content=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    assert "keys per batch" in response.json()["error"]


def test_large_single_lookup_413_message(client: TestClient) -> None:
    body = b'{"issuing_state": "' + b"U" * (2 * 1024 * 1024) + b'"}'
    response = client.post(
        "/v1/lookup", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "one key" in response.json()["error"]
    assert "batch" not in response.json()["error"]


def test_chunked_large_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"keys": ['
        for _ in range(40):
            yield b" " * (256 * 1024)
        yield b"]}"

    response = client.post(
        "/v1/lookup/batch",
        content=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_invalid_request_id_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/lookup", json=key_json(), headers={**AUTH, "X-Request-ID": "bad id!"}
    )
    assert response.status_code == 400
    assert "X-Request-ID" in response.json()["error"]


def test_retry_with_same_id_is_idempotent(client: TestClient, tmp_path: Path) -> None:
    headers = {**AUTH, "X-Request-ID": "req-0001"}
    first = client.post("/v1/lookup", json=key_json(), headers=headers)
    second = client.post("/v1/lookup", json=key_json(), headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["X-Idempotent-Replay"] == "true"
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["request_id"] == "req-0001" for line in lines) == 1


def test_rate_limit_per_terminal(sqlite_store: Store, tmp_path: Path) -> None:
    seed(sqlite_store, tmp_path)
    settings = ServiceSettings(rate_per_terminal=0.5, burst_per_terminal=2)
    with make_client(sqlite_store, tmp_path, settings) as client:
        codes = [
            client.post("/v1/lookup", json=key_json(), headers=AUTH).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        limited = client.post("/v1/lookup", json=key_json(), headers=AUTH)
        assert "rate limit" in limited.json()["error"]
        assert int(limited.headers["Retry-After"]) >= 1


def test_health_ready_metrics_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready"
    assert ready["records"] == 2
    client.post("/v1/lookup", json=key_json(), headers=AUTH)
    metrics = client.get("/metrics").text
    assert 'kiosk_backend_lookups_total{result="HIT"} 1.0' in metrics
    assert 'endpoint="/v1/lookup"' in metrics
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/lookup", "/v1/lookup/batch", "/v1/changes"} <= set(paths)


def test_metrics_count_each_request(client: TestClient) -> None:
    for _ in range(2):
        client.post("/v1/lookup", json=key_json(), headers=AUTH)
    client.post("/v1/lookup", json=key_json())
    batch = {"keys": [key_json(), key_json("X1234567"), key_json("12345")]}
    client.post("/v1/lookup/batch", json=batch, headers=AUTH)
    metrics = client.get("/metrics").text
    requests = "kiosk_backend_requests_total"
    assert f'{requests}{{endpoint="/v1/lookup",status="200"}} 2.0' in metrics
    assert f'{requests}{{endpoint="/v1/lookup",status="401"}} 1.0' in metrics
    assert f'{requests}{{endpoint="/v1/lookup/batch",status="200"}} 1.0' in metrics
    assert 'kiosk_backend_lookups_total{result="HIT"} 3.0' in metrics
    assert 'kiosk_backend_lookups_total{result="NO_HIT"} 1.0' in metrics
    assert 'kiosk_backend_lookups_total{result="POSSIBLE"} 1.0' in metrics
    latency = 'kiosk_backend_request_seconds_count{endpoint="/v1/lookup"} 3.0'
    assert latency in metrics


def test_ready_fails_without_data(sqlite_store: Store, tmp_path: Path) -> None:
    with make_client(sqlite_store, tmp_path) as client:
        response = client.get("/ready")
        assert response.status_code == 503
        assert "kiosk-backend import" in response.json()["error"]


def test_change_feed_endpoint(client: TestClient) -> None:
    page = client.get("/v1/changes", headers=AUTH).json()
    assert page["reset"] is True
    assert len(page["added"]) == 2
    later = client.get(
        "/v1/changes", params={"since": page["version"]}, headers=AUTH
    ).json()
    assert later["added"] == []
    assert later["reset"] is False
    assert client.get("/v1/changes").status_code == 401


def test_sqlite_file_gone_is_503(sqlite_store: Store, tmp_path: Path) -> None:
    seed(sqlite_store, tmp_path)
    with make_client(sqlite_store, tmp_path) as client:
        assert (
            client.post("/v1/lookup", json=key_json(), headers=AUTH).status_code == 200
        )
        for suffix in ("", "-wal", "-shm"):
            path = tmp_path / f"store.sqlite3{suffix}"
            if path.exists():
                os.remove(path)
        response = client.post("/v1/lookup", json=key_json("X1"), headers=AUTH)
        assert response.status_code == 503
        assert "unavailable" in response.json()["error"]
        assert "NO_HIT" not in response.text
        assert client.get("/ready").status_code == 503


@pytest.mark.postgres
def test_postgres_database_gone_is_503(pg_database_url: str, tmp_path: Path) -> None:
    # A short pool timeout keeps the readiness probe after the drop quick.
    store = PostgresStore(pg_database_url, timeout=1.0)
    try:
        seed(store, tmp_path)
        with make_client(store, tmp_path) as client:
            ok = client.post("/v1/lookup", json=key_json(), headers=AUTH)
            assert ok.json()["result"] == "HIT"
            name = pg_database_url.rsplit("/", 1)[1]
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            response = client.post("/v1/lookup", json=key_json("X1"), headers=AUTH)
            assert response.status_code == 503
            assert "unavailable" in response.json()["error"]
            assert client.get("/ready").status_code == 503
    finally:
        store.close()


def test_audit_log_chain_and_privacy(client: TestClient, tmp_path: Path) -> None:
    for number in (SECRET_NUMBER, "X0000001", "12345"):
        client.post("/v1/lookup", json=key_json(number), headers=AUTH)
    log = tmp_path / "audit.jsonl"
    text = log.read_text()
    assert SECRET_NUMBER not in text
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e["queries"][0][1] for e in entries] == ["HIT", "NO_HIT", "POSSIBLE"]
    assert {e["terminal"] for e in entries} == {"T-1"}
    assert all(e["data_version"] for e in entries)
    report = verify(log, load_or_create_key(tmp_path / "audit.jsonl.key"))
    assert report.ok, report.problems
    assert report.entries == 3


def test_logs_carry_no_document_number(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/lookup", json=key_json(), headers=AUTH)
        client.post("/v1/lookup/batch", json={"keys": [key_json()]}, headers=AUTH)
        client.post("/v1/lookup", json=key_json("L8989'02C3"), headers=AUTH)
    assert caplog.records
    assert all("L8989" not in record.getMessage() for record in caplog.records)


def test_replay_cache_bounded_by_bytes() -> None:
    from backend.app import _ReplayCache

    cache = _ReplayCache(window_s=60, entries=100, max_bytes=25)
    cache.put(("T", "a"), b"x" * 10)
    cache.put(("T", "b"), b"y" * 10)
    cache.put(("T", "c"), b"z" * 10)
    assert cache.get(("T", "a")) is None
    assert cache.get(("T", "b")) == b"y" * 10
    assert cache.get(("T", "c")) == b"z" * 10


def test_server_chosen_ids_not_replayed(client: TestClient) -> None:
    first = client.post("/v1/lookup", json=key_json(), headers=AUTH)
    generated = first.headers["X-Request-ID"]
    again = client.post(
        "/v1/lookup", json=key_json(), headers={**AUTH, "X-Request-ID": generated}
    )
    assert "X-Idempotent-Replay" not in again.headers


def test_change_feed_limit_validated(client: TestClient) -> None:
    response = client.get("/v1/changes", params={"limit": 0}, headers=AUTH)
    assert response.status_code == 422
    assert "limit" in response.json()["error"]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("UTO", "P", "L898902C3"), ("UTO", "P", "L898902C3")),
        (("D<<", "PK", "0012"), ("D<<", "PK", "0012")),
        (("d", "p<", "a 8-9<"), ("D<<", "P", "A89")),
        # The unit separator counts as white space, which numbers drop.
        (("UTO", "P", "A\x1fB"), ("UTO", "P", "AB")),
        (("UTO\x1fP", "P", "A"), None),
        (("UT", "P", "١٢"), None),
        (("AB<", "P", "L898902C3"), None),
        (("<<<", "P", "L898902C3"), None),
    ],
)
def test_key_create_normalises_or_refuses(
    parts: tuple[str, str, str], expected: tuple[str, str, str] | None
) -> None:
    if expected is None:
        with pytest.raises(InvalidRecord):
            DocumentKey.create(*parts)
        return
    key = DocumentKey.create(*parts)
    assert (key.issuing_state, key.document_type, key.document_number) == expected


@pytest.mark.parametrize("state", ["UTO", "D<<", "D", "AB<", "<<<", "A<B", "uto"])
def test_key_fast_path_matches_normalisers(state: str) -> None:
    try:
        slow: tuple[str, str, str] | None = (
            normalize_state(state),
            normalize_type("P"),
            normalize_number("L898902C3"),
        )
    except InvalidRecord:
        slow = None
    try:
        key = DocumentKey.create(state, "P", "L898902C3")
    except InvalidRecord:
        assert slow is None
        return
    assert (key.issuing_state, key.document_type, key.document_number) == slow


def test_routes_under_root_path_match(sqlite_store: Store, tmp_path: Path) -> None:
    # Under a root path the middleware does not take the lookup POSTs, so
    # FastAPI's routes answer them; both must give the same answers.
    seed(sqlite_store, tmp_path)
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    app = create_app(sqlite_store, audit=audit)
    payload = {"keys": [key_json(), key_json("12345"), key_json("X1234567")]}
    bodies = []
    for root, prefix in (("", ""), ("/api", "/api")):
        with TestClient(app, root_path=root) as client:
            single = client.post(f"{prefix}/v1/lookup", json=key_json(), headers=AUTH)
            batch = client.post(f"{prefix}/v1/lookup/batch", json=payload, headers=AUTH)
            malformed = client.post(
                f"{prefix}/v1/lookup/batch", json={"keys": []}, headers=AUTH
            )
        assert single.status_code == 200
        assert batch.status_code == 200
        assert malformed.status_code == 422
        bodies.append(
            (
                single.json()["result"],
                [answer["result"] for answer in batch.json()["answers"]],
                [answer["records"] for answer in batch.json()["answers"]],
                malformed.json()["error"],
            )
        )
    assert bodies[0] == bodies[1]
    assert bodies[0][1] == ["HIT", "POSSIBLE", "NO_HIT"]
    key = load_or_create_key(tmp_path / "audit.jsonl.key")
    report = verify(tmp_path / "audit.jsonl", key)
    assert report.ok, report.problems
    assert report.entries == 4


def test_worker_app_freezes_startup_objects(tmp_path: Path) -> None:
    # In a child process, because freezing changes the collector of the
    # whole test process.
    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    seed_store = open_store(store_url)
    seed(seed_store, tmp_path)
    seed_store.close()
    config = {
        "store": store_url,
        "audit_log": str(tmp_path / "audit.jsonl"),
        "audit_fsync": False,
        "rate": 10,
    }
    code = (
        "import gc\n"
        "from backend.app import create_worker_app\n"
        "create_worker_app()\n"
        "print(gc.get_freeze_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, WORKER_CONFIG_ENV: json.dumps(config)},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 10_000


def test_fastapi_telemetry_stays_off(
    sqlite_store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # These variables make FastAPI add OTLP exporters at startup. The
    # endpoint is the loopback discard port, so nothing could leave anyway.
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    seed(sqlite_store, tmp_path)

    with caplog.at_level(logging.DEBUG), make_client(sqlite_store, tmp_path) as client:
        response = client.post("/v1/lookup", json=key_json(), headers=AUTH)
        app = cast(FastAPI, client.app)

    assert response.status_code == 200
    assert not [r for r in caplog.records if r.name.startswith("fastapi")]
    assert not app._native_telemetry.enabled()
    assert app._telemetry["auto_configure"] is False
