"""Answers encoded from store rows match the JSON of Store.lookup_many."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.answer_encoding import AnswerEncoder
from backend.app import create_app, hash_api_key
from backend.audit import AuditLog, load_or_create_key, verify
from backend.importer import import_csv
from backend.records import DocumentKey, LookupAnswer, Result
from backend.store import Store
from tests.backend.helpers import record_line, write_csv

API_KEY = "test-key-encoding"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)

# Each key with the result Store.lookup_many gives for it on LINES.
KEYS = [
    (("UTO", "P", "L898902C3"), Result.HIT),
    (("UTO", "P", "NOSUCH1"), Result.NO_HIT),
    (("UTO", "I", "12345"), Result.POSSIBLE),
    (("UTO", "I", "AB123"), Result.HIT),
    (("UTO", "V", "CD456"), Result.HIT),
    (("D<<", "P", "C01X00T47"), Result.HIT),
    (("UTO", "P", "NOSUCH2"), Result.NO_HIT),
]
LINES = [
    record_line("UTO", "L898902C3", issue_date="2019-05-02", expiry_date="2029-05-01"),
    record_line("UTO", "012345", status="lost", reference='quote " and \\ back'),
    # The same number under two types: one HIT with both records.
    record_line("UTO", "AB123", doc_type="P", status="revoked"),
    record_line("UTO", "AB123", doc_type="I", status="invalidated"),
    # A HIT whose only record has another type: type_mismatch is true.
    record_line("UTO", "CD456", doc_type="P", reference="Zürich Ω"),
    record_line("D<<", "C01X00T47", status="stolen_blank", reporting_country="D<<"),
]


def _seed(store: Store, tmp_path: Path) -> list[DocumentKey]:
    import_csv(store, write_csv(tmp_path / "seed.csv", LINES))
    store.add_api_key("T-1", hash_api_key(API_KEY))
    return [DocumentKey.create(*parts) for parts, _ in KEYS]


def _plain_json(answer: LookupAnswer, request_id: str) -> str:
    return json.dumps(
        {**answer.to_json(), "request_id": request_id}, separators=(",", ":")
    )


def test_encoder_matches_lookup_many(store: Store, tmp_path: Path) -> None:
    keys = _seed(store, tmp_path)
    answers = store.lookup_many(keys)
    assert [answer.result for answer in answers] == [result for _, result in KEYS]
    assert answers[4].type_mismatch
    assert len(answers[3].records) == 2

    version, candidates = store.find_candidates(keys)
    encoder = AnswerEncoder(
        data_version=version,
        source=store.kind,
        request_id="req-1",
        checked_at=answers[0].checked_at,
    )
    encoded = [
        encoder.encode(key, rows) for key, rows in zip(keys, candidates, strict=True)
    ]
    for (result, text), answer in zip(encoded, answers, strict=True):
        assert result is answer.result
        assert text == _plain_json(answer, "req-1")

    body = encoder.batch_body("req-1", [text for _, text in encoded])
    expected = {
        "request_id": "req-1",
        "data_version": version,
        "answers": [{**a.to_json(), "request_id": "req-1"} for a in answers],
    }
    assert body == json.dumps(expected, separators=(",", ":")).encode()


def test_service_batch_matches_lookup_many(store: Store, tmp_path: Path) -> None:
    keys = _seed(store, tmp_path)
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    payload = {
        "keys": [
            {"issuing_state": s, "document_type": t, "document_number": n}
            for (s, t, n), _ in KEYS
        ]
    }
    headers = {**AUTH, "X-Request-ID": "req-2"}
    with TestClient(create_app(store, audit=audit)) as client:
        response = client.post("/v1/lookup/batch", json=payload, headers=headers)
    assert response.status_code == 200
    body = response.json()
    checked_at = body["answers"][0]["checked_at"]
    assert {answer["checked_at"] for answer in body["answers"]} == {checked_at}

    # Same snapshot and check time, so the whole document must match.
    answers = [
        dataclasses.replace(
            answer, request_id="req-2", checked_at=dt.datetime.fromisoformat(checked_at)
        )
        for answer in store.lookup_many(keys)
    ]
    assert body == {
        "request_id": "req-2",
        "data_version": answers[0].data_version,
        "answers": [answer.to_json() for answer in answers],
    }

    entries = [
        json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()
    ]
    assert [item[1] for item in entries[-1]["queries"]] == [r.value for _, r in KEYS]
    key = load_or_create_key(tmp_path / "audit.jsonl.key")
    report = verify(tmp_path / "audit.jsonl", key)
    assert report.ok, report.problems


@pytest.mark.parametrize("stored", ["2024-03-01", "20240301"])
def test_encoder_parses_stored_dates(stored: str) -> None:
    row = ("UTO", "P", "A1", "A1", "lost", stored, "FRA", "R", None, "")
    encoder = AnswerEncoder(
        data_version="1-x", source="sqlite", request_id=None, checked_at=NOW
    )
    result, text = encoder.encode(DocumentKey("UTO", "P", "A1"), [row])
    assert result is Result.HIT
    record = json.loads(text)["records"][0]
    assert record["reported_on"] == "2024-03-01"
    assert record["issue_date"] is None
    assert record["expiry_date"] is None


def test_encoder_rejects_unknown_status() -> None:
    row = ("UTO", "P", "A1", "A1", "missing", "2024-03-01", "FRA", "R", None, None)
    encoder = AnswerEncoder(
        data_version="1-x", source="sqlite", request_id=None, checked_at=NOW
    )
    with pytest.raises(ValueError, match="missing"):
        encoder.encode(DocumentKey("UTO", "P", "A1"), [row])
