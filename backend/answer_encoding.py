"""JSON encoding of lookup answers straight from store rows.

The service returns one JSON document for a batch of up to 10,000 keys. Building a
Record and a LookupAnswer per key and passing each through `json.dumps` took
most of a batch's CPU time, so this module classifies the candidate rows of
`Store.find_candidates` itself and writes the JSON text directly. The text is
byte for byte what `json.dumps(answer.to_json(), separators=(",", ":"))` gives
for the answer `Store.lookup_many` builds from the same rows, with the same
check time and request id. A test in tests/backend compares the two.
"""

from __future__ import annotations

import datetime as dt
import json.encoder
from collections.abc import Sequence

from backend.records import DocumentKey, Result, Status
from backend.store.base import Row

# The C string encoder that `json.dumps` uses with its default ensure_ascii.
_encode_string = json.encoder.encode_basestring_ascii
_STATUS_VALUES = frozenset(status.value for status in Status)


def _string(value: str | None) -> str:
    return "null" if value is None else str(_encode_string(value))


def _date(value: object) -> str:
    # SQLite returns ISO text and PostgreSQL date objects. Text is parsed, as
    # `row_to_record` does, so a malformed stored date fails the same way.
    if isinstance(value, dt.date):
        return f'"{value.isoformat()}"'
    return f'"{dt.date.fromisoformat(str(value)).isoformat()}"'


def _optional_date(value: object) -> str:
    return _date(value) if value else "null"


def encode_record(row: Row) -> str:
    """Return the JSON of `row_to_record(row).to_json()`."""
    status = str(row[4])
    if status not in _STATUS_VALUES:
        status = Status(status).value  # raises ValueError, as row_to_record does
    return (
        f'{{"issuing_state":{_encode_string(str(row[0]))},'
        f'"document_type":{_encode_string(str(row[1]))},'
        f'"document_number":{_encode_string(str(row[2]))},'
        f'"status":"{status}",'
        f'"reported_on":{_date(row[5])},'
        f'"reporting_country":{_encode_string(str(row[6]))},'
        f'"reference":{_encode_string(str(row[7]))},'
        f'"issue_date":{_optional_date(row[8])},'
        f'"expiry_date":{_optional_date(row[9])}}}'
    )


class AnswerEncoder:
    """Encoder of the answers of one snapshot: one data version, store kind,
    check time and request id, which every answer repeats."""

    def __init__(
        self,
        *,
        data_version: str | None,
        source: str,
        request_id: str | None,
        checked_at: dt.datetime,
    ) -> None:
        self.data_version = data_version
        tail = (
            f',"reason":null,"source":{_string(source)},'
            f'"request_id":{_string(request_id)},'
            f'"checked_at":{_string(checked_at.isoformat())}}}'
        )
        version = _string(data_version)
        self._match_tail = f'],"data_version":{version},"type_mismatch":false{tail}'
        self._mismatch_tail = f'],"data_version":{version},"type_mismatch":true{tail}'
        self.no_hit = (
            f'{{"result":"NO_HIT","records":[],"data_version":{version},'
            f'"type_mismatch":false{tail}'
        )

    def encode(self, key: DocumentKey, rows: Sequence[Row]) -> tuple[Result, str]:
        """Classify the candidate rows of `key` as `records.classify` does and
        return the result with the answer's JSON.

        `rows` are the key's candidates from `Store.find_candidates`: the
        records with the key's issuing state and folded number.
        """
        if not rows:
            return Result.NO_HIT, self.no_hit
        number = key.document_number
        exact = [row for row in rows if row[2] == number]
        if exact:
            document_type = key.document_type
            mismatch = all(row[1] != document_type for row in exact)
            records = ",".join([encode_record(row) for row in exact])
            tail = self._mismatch_tail if mismatch else self._match_tail
            return Result.HIT, f'{{"result":"HIT","records":[{records}{tail}'
        # No row has the exact number, so every row is a folded match.
        records = ",".join([encode_record(row) for row in rows])
        return (
            Result.POSSIBLE,
            f'{{"result":"POSSIBLE","records":[{records}{self._match_tail}',
        )

    def batch_body(self, request_id: str, answers: Sequence[str]) -> bytes:
        """Return the batch document around the answers' JSON texts."""
        head = (
            f'{{"request_id":{_string(request_id)},'
            f'"data_version":{_string(self.data_version)},"answers":['
        )
        return f"{head}{','.join(answers)}]}}".encode()
