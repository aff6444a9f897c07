"""Look-alike readings left unanswered are queued with their document: one
row per scan, and a late match on a look-alike is a POSSIBLE for the
document's own key."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from backend.importer import import_csv
from backend.records import DocumentKey, LookupAnswer, Record, Result, Status, unknown
from kiosk.lookup.base import (
    BackendState,
    BackendStatus,
    lookup_document_in_turn,
    merge_lookalikes,
)
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.offline import OfflineCopy
from kiosk.lookup.queue import QueuedCheck, RecheckQueue
from kiosk.lookup.resilient import ResilientLookup
from tests.backend.helpers import record_line, write_csv
from tests.lookup.conftest import API_KEY, LiveService, free_port, synced_copy

DOCUMENT = DocumentKey.create("UTO", "P", "XP8271602")
# Two readings of the same document number with look-alike swaps.
VARIANTS = [
    DocumentKey.create("UTO", "P", "XP827160Z"),
    DocumentKey.create("UTO", "P", "XP8271G02"),
]
SERVICE = "http://127.0.0.1:9"


def online(url: str) -> HttpLookup:
    return HttpLookup(url, api_key=API_KEY, timeout_s=2.0, retries=0)


def closed_service() -> HttpLookup:
    return online(f"http://127.0.0.1:{free_port()}")


class _Scripted:
    """Online client stand-in that returns each key's answer from a table,
    and NO_HIT for keys not in it."""

    def __init__(self, answers: dict[DocumentKey, LookupAnswer]) -> None:
        self.answers = answers
        self.asked: list[list[DocumentKey]] = []

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        return self.lookup_many([key])[0]

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        self.asked.append(list(keys))
        no_hit = LookupAnswer(Result.NO_HIT, data_version="v1", source="online")
        return [self.answers.get(key, no_hit) for key in keys]

    def lookup_document(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> tuple[LookupAnswer, list[LookupAnswer]]:
        return lookup_document_in_turn(self, key, variants)

    def status(self) -> BackendStatus:
        return BackendStatus(BackendState.ONLINE, "v1", "scripted")

    def close(self) -> None:
        pass


def test_scan_during_outage_queues_one_row(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    client = ResilientLookup(closed_service(), queue=queue)

    answer, variant_answers = client.lookup_document(DOCUMENT, VARIANTS)
    client.close()

    # Not checked, so the look-alikes are looked up and queued too.
    assert answer.result is Result.UNKNOWN
    assert [a.result for a in variant_answers] == [Result.UNKNOWN, Result.UNKNOWN]
    reopened = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    (check,) = reopened.pending()
    assert check.key == DOCUMENT
    assert check.variants == tuple(VARIANTS)
    assert check.first_result is Result.UNKNOWN
    reopened.close()


def test_hit_skips_lookalikes(live_service: LiveService, tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    client = ResilientLookup(online(live_service.url), queue=queue)
    listed = DocumentKey.create("UTO", "P", "L898902C3")

    answer, variant_answers = client.lookup_document(listed, VARIANTS)

    assert answer.result is Result.HIT
    assert variant_answers == []
    assert len(queue) == 0
    client.close()


def test_each_scan_queues_its_own_row(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    client = ResilientLookup(closed_service(), queue=queue)

    client.lookup_document(DOCUMENT, VARIANTS[:1])
    client.lookup_document(DOCUMENT, VARIANTS)

    assert [c.variants for c in queue.pending()] == [
        tuple(VARIANTS[:1]),
        tuple(VARIANTS),
    ]
    client.close()


def test_queue_ids_not_reused_after_emptying(tmp_path: Path) -> None:
    # "late re-check N" must name one check, even across an emptied queue.
    queue = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    answer = unknown("lookup service unreachable", source="online")
    first = queue.enqueue(DOCUMENT, answer)
    queue._remove(first)
    assert len(queue) == 0
    second = queue.enqueue(DOCUMENT, answer)
    queue.close()
    assert second > first


def test_late_lookalike_match_is_possible_for_the_document(
    live_service: LiveService, tmp_path: Path
) -> None:
    late: list[tuple[QueuedCheck, LookupAnswer]] = []
    copy = synced_copy(tmp_path / "offline.sqlite3", live_service)
    queue = RecheckQueue(
        tmp_path / "q.sqlite3", on_late_hit=lambda c, a: late.append((c, a))
    )
    down = ResilientLookup(closed_service(), offline=copy, queue=queue)
    answer, variant_answers = down.lookup_document(DOCUMENT, VARIANTS)
    assert answer.result is Result.NO_HIT
    assert [a.result for a in variant_answers] == [Result.NO_HIT, Result.NO_HIT]
    assert len(queue) == 1
    down.close()
    # While the link was down, one look-alike reading was reported.
    listed = VARIANTS[1].document_number
    import_csv(
        live_service.store,
        write_csv(
            tmp_path / "d.csv", [["add", *record_line("UTO", listed)]], delta=True
        ),
        delta=True,
    )

    queue = RecheckQueue(
        tmp_path / "q.sqlite3", on_late_hit=lambda c, a: late.append((c, a))
    )
    copy = OfflineCopy(tmp_path / "offline.sqlite3")
    up = ResilientLookup(online(live_service.url), offline=copy, queue=queue)
    up.maintain()
    up.close()

    ((check, answer),) = late
    assert check.key == DOCUMENT
    assert answer.result is Result.POSSIBLE
    assert [r.document_number for r in answer.records] == [listed]
    assert "look-alike" in str(answer.reason)
    reopened = RecheckQueue(tmp_path / "q.sqlite3")
    assert len(reopened) == 0
    reopened.close()


def test_unanswered_lookalike_keeps_the_check(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    queue.enqueue(DOCUMENT, unknown("down", source="online"), VARIANTS)
    scripted = _Scripted({VARIANTS[0]: unknown("timed out", source="online")})

    assert queue.drain(scripted) == 0

    (check,) = queue.pending()
    assert check.attempts == 1
    assert scripted.asked == [[DOCUMENT, *VARIANTS]]
    queue.close()


def test_drain_sends_whole_checks_up_to_the_batch(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    failed = unknown("down", source="online")
    others = [DocumentKey.create("UTO", "P", f"A{n:07d}") for n in range(3)]
    queue.enqueue(DOCUMENT, failed, VARIANTS)
    for key in others:
        queue.enqueue(key, failed)
    scripted = _Scripted({})

    assert queue.drain(scripted, batch=4) == 2
    assert queue.drain(scripted, batch=4) == 2

    assert scripted.asked == [[DOCUMENT, *VARIANTS, others[0]], others[1:]]
    assert len(queue) == 0
    queue.close()


def test_own_hit_wins_over_lookalikes(tmp_path: Path) -> None:
    late: list[LookupAnswer] = []
    queue = RecheckQueue(
        tmp_path / "q.sqlite3", on_late_hit=lambda c, a: late.append(a)
    )
    queue.enqueue(DOCUMENT, unknown("down", source="online"), VARIANTS)
    hit = LookupAnswer(Result.HIT, data_version="v2", source="online")
    scripted = _Scripted(
        {DOCUMENT: hit, VARIANTS[0]: unknown("timed out", source="online")}
    )

    assert queue.drain(scripted) == 1

    assert late == [hit]
    queue.close()


def test_queue_file_from_before_variants_opens(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE rechecks (id INTEGER PRIMARY KEY, issuing_state TEXT NOT NULL,"
        " document_type TEXT NOT NULL, document_number TEXT NOT NULL,"
        " queued_at TEXT NOT NULL, reason TEXT NOT NULL, first_result TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, service_url TEXT)"
    )
    conn.execute(
        "INSERT INTO rechecks (issuing_state, document_type, document_number,"
        " queued_at, reason, first_result) VALUES ('UTO', 'P', 'XP8271602',"
        " '2026-12-01T10:00:00+00:00', 'down', 'UNKNOWN')"
    )
    conn.commit()
    conn.close()

    queue = RecheckQueue(path, service_url=SERVICE)
    queue.enqueue(DOCUMENT, unknown("down", source="online"), VARIANTS)

    old, new = queue.pending()
    assert (old.key, old.variants) == (DOCUMENT, ())
    assert (new.key, new.variants) == (DOCUMENT, tuple(VARIANTS))
    queue.close()


LISTED = Record(
    "UTO", "P", "XP827160Z", Status.STOLEN, dt.date(2026, 1, 2), "UTO", "R-1"
)


def test_merge_lists_each_record_once() -> None:
    own = LookupAnswer(Result.NO_HIT, data_version="v1", source="online")
    match = LookupAnswer(Result.POSSIBLE, (LISTED,), "v1", source="online")

    merged = merge_lookalikes(own, [match, match])

    assert merged.result is Result.POSSIBLE
    assert merged.records == (LISTED,)


def test_merge_match_when_own_key_unchecked() -> None:
    own = unknown("lookup service unreachable", source="online")
    match = LookupAnswer(Result.HIT, (LISTED,), "v1", source="offline")

    merged = merge_lookalikes(own, [match])

    assert merged.result is Result.POSSIBLE
    assert merged.records == (LISTED,)
    assert "own number was not checked" in str(merged.reason)
    assert "lookup service unreachable" in str(merged.reason)


def test_merge_keeps_unknown_without_match() -> None:
    own = unknown("lookup service unreachable", source="online")
    no_hit = LookupAnswer(Result.NO_HIT, data_version="c1", source="offline")

    assert merge_lookalikes(own, [no_hit]) == own


def test_merge_labels_offline_variants() -> None:
    own = LookupAnswer(Result.NO_HIT, data_version="v9", source="online")
    offline = LookupAnswer(Result.NO_HIT, data_version="c1", source="offline")

    merged = merge_lookalikes(own, [offline])

    assert merged.result is Result.NO_HIT
    assert merged.source == "offline"
    assert merged.data_version == "c1"
    assert "offline data only" in str(merged.reason)
