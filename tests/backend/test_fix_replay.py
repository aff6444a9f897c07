"""Replay cache: a reused request id must not return another document's answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app, hash_api_key
from backend.audit import AuditLog
from backend.importer import import_csv
from backend.store import Store, open_store
from tests.backend.helpers import record_line, write_csv

API_KEY = "replay-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
REPORTED = {
    "issuing_state": "UTO",
    "document_type": "P",
    "document_number": "L898902C3",
}
CLEAN = {"issuing_state": "UTO", "document_type": "P", "document_number": "X1234567"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store: Store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    import_csv(
        store, write_csv(tmp_path / "seed.csv", [record_line("UTO", "L898902C3")])
    )
    store.add_api_key("T-1", hash_api_key(API_KEY))
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    with TestClient(create_app(store, audit=audit)) as test_client:
        yield test_client
    audit.close()
    store.close()


def audit_entries(tmp_path: Path) -> int:
    return len((tmp_path / "audit.jsonl").read_text().splitlines())


def test_same_id_other_body_is_409(client: TestClient, tmp_path: Path) -> None:
    headers = {**AUTH, "X-Request-ID": "kiosk-req-1"}
    first = client.post("/v1/lookup", json=CLEAN, headers=headers)
    assert first.json()["result"] == "NO_HIT"

    second = client.post("/v1/lookup", json=REPORTED, headers=headers)

    assert second.status_code == 409
    assert "X-Idempotent-Replay" not in second.headers
    assert "kiosk-req-1" in second.json()["error"]
    assert "different request body" in second.json()["error"]
    assert "L898902C3" not in second.text
    assert audit_entries(tmp_path) == 1


def test_same_id_same_body_replays(client: TestClient, tmp_path: Path) -> None:
    headers = {**AUTH, "X-Request-ID": "kiosk-req-2"}
    first = client.post("/v1/lookup", json=REPORTED, headers=headers)
    again = client.post("/v1/lookup", json=REPORTED, headers=headers)

    assert again.status_code == 200
    assert again.headers["X-Idempotent-Replay"] == "true"
    assert again.json() == first.json()
    assert audit_entries(tmp_path) == 1


def test_batch_id_reused_for_other_batch(client: TestClient) -> None:
    headers = {**AUTH, "X-Request-ID": "kiosk-batch-1"}
    first = client.post(
        "/v1/lookup/batch", json={"keys": [CLEAN, CLEAN]}, headers=headers
    )
    assert first.status_code == 200

    second = client.post(
        "/v1/lookup/batch", json={"keys": [CLEAN, REPORTED]}, headers=headers
    )

    assert second.status_code == 409


def test_single_id_reused_for_batch(client: TestClient) -> None:
    headers = {**AUTH, "X-Request-ID": "kiosk-req-3"}
    client.post("/v1/lookup", json=CLEAN, headers=headers)

    batch = client.post("/v1/lookup/batch", json={"keys": [CLEAN]}, headers=headers)

    assert batch.status_code == 409
    assert json.loads(batch.text)["request_id"] == "kiosk-req-3"
