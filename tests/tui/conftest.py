"""Shared pieces of the terminal app tests: an in-memory lookup client, a
frozen clock and MRZ lines of made-up documents."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterable, Sequence

import pytest

from backend.records import (
    DocumentKey,
    LookupAnswer,
    Record,
    Result,
    Status,
    classify,
    unknown,
)
from kiosk.lookup.base import BackendState, BackendStatus
from kiosk.mrz import DocumentFields, MrzFormat, compose
from kiosk.tui.modals import HitModal

FROZEN_NOW = dt.datetime(2026, 12, 4, 9, 30, 15, tzinfo=dt.UTC)
DATA_VERSION = "7-20261204T060000Z"


def frozen_clock() -> dt.datetime:
    return FROZEN_NOW


@pytest.fixture(autouse=True)
def _acknowledge_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let Pilot's keys acknowledge a HIT without the wait for quiet keys.

    Pilot presses keys faster than a person; the tests of the wait set
    HitModal.quiet_s themselves.
    """
    monkeypatch.setattr(HitModal, "quiet_s", 0.0)


class MemoryLookup:
    """A LookupClient over a dict, with a switch that takes it offline.

    Offline, every lookup is UNKNOWN and its key is queued. `recheck` then
    looks the queued keys up again, as the store-and-forward queue does when
    the link returns.
    """

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._by_fold: dict[tuple[str, str], list[Record]] = {}
        for record in records:
            key = DocumentKey.create(
                record.issuing_state, record.document_type, record.document_number
            )
            self._by_fold.setdefault((key.issuing_state, key.folded_number), []).append(
                record
            )
        self.online = True
        self.queued: list[DocumentKey] = []
        self.closed = False
        self._lock = threading.Lock()

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        return self.lookup_many([key])[0]

    def lookup_document(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> tuple[LookupAnswer, list[LookupAnswer]]:
        answer = self.lookup(key)
        if not variants or answer.result in (Result.HIT, Result.POSSIBLE):
            return answer, []
        with self._lock:
            queued = len(self.queued)
        answers = self.lookup_many(variants)
        # One queue entry per document, as the resilient client keeps.
        with self._lock:
            del self.queued[queued:]
        return answer, answers

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        answers = []
        for key in keys:
            if not self.online:
                with self._lock:
                    self.queued.append(key)
                answers.append(
                    unknown(
                        "lookup backend unreachable: connection refused",
                        source="online",
                    )
                )
                continue
            rows = self._by_fold.get((key.issuing_state, key.folded_number), [])
            exact = [r for r in rows if r.document_number == key.document_number]
            folded = [r for r in rows if r.document_number != key.document_number]
            answer = classify(key, exact, folded)
            answers.append(
                dataclasses.replace(answer, data_version=DATA_VERSION, source="online")
            )
        return answers

    def recheck(self) -> list[tuple[DocumentKey, LookupAnswer]]:
        """Look the queued keys up again and return them with their answers."""
        with self._lock:
            keys, self.queued = self.queued, []
        return list(zip(keys, self.lookup_many(keys), strict=True))

    def status(self) -> BackendStatus:
        if not self.online:
            return BackendStatus(
                BackendState.UNREACHABLE,
                DATA_VERSION,
                "connection refused",
                queued_rechecks=len(self.queued),
            )
        return BackendStatus(
            BackendState.ONLINE,
            DATA_VERSION,
            "test backend",
            data_age=dt.timedelta(hours=3),
            queued_rechecks=len(self.queued),
        )

    def close(self) -> None:
        self.closed = True


def passport(
    number: str, *, state: str = "UTO", surname: str = "ERIKSSON"
) -> list[str]:
    """Return the two MRZ lines of a made-up passport."""
    return compose(
        DocumentFields(
            MrzFormat.TD3,
            "P",
            state,
            number,
            surname,
            "ANNA MARIA",
            state,
            "740812",
            "F",
            "300415",
        )
    )


STOLEN_NUMBER = "L898902C3"
STOLEN = Record(
    issuing_state="UTO",
    document_type="P",
    document_number=STOLEN_NUMBER,
    status=Status.STOLEN,
    reported_on=dt.date(2025, 3, 14),
    reporting_country="UTO",
    reference="TEST-2025-00042",
    issue_date=dt.date(2020, 4, 16),
    expiry_date=dt.date(2030, 4, 15),
)
# Differs from a list entry only by O/0, so the lookup returns POSSIBLE.
SIMILAR_NUMBER = "XO1234567"
SIMILAR = dataclasses.replace(
    STOLEN, document_number="X01234567", status=Status.LOST, reference="TEST-2024-00007"
)


@pytest.fixture
def client() -> MemoryLookup:
    return MemoryLookup([STOLEN, SIMILAR])
