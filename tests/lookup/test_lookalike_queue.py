"""Look-alike readings left unanswered are queued with their document: one
row per scan, and a late match on a look-alike is a POSSIBLE for the
document's own key."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from backend.importer import import_csv
from backend.records import DocumentKey, LookupAnswer, Result, unknown
from kiosk.lookup.base import BackendState, BackendStatus
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.offline import OfflineCopy
from kiosk.lookup.queue import QueuedCheck, RecheckQueue
from kiosk.lookup.resilient import ResilientLookup
from tests.backend.helpers import record_line, write_csv
from tests.lookup.conftest import API_KEY, LiveService, free_port

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
    """An online client answering each key from a table, NO_HIT otherwise."""

    def __init__(self, answers: dict[DocumentKey, LookupAnswer]) -> None:
        self.answers = answers
        self.asked: list[list[DocumentKey]] = []

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        return self.lookup_many([key])[0]

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        self.asked.append(list(keys))
        no_hit = LookupAnswer(Result.NO_HIT, data_version="v1", source="online")
        return [self.answers.get(key, no_hit) for key in keys]

    def lookup_lookalikes(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> list[LookupAnswer]:
        return self.lookup_many(variants)

    def status(self) -> BackendStatus:
        return BackendStatus(BackendState.ONLINE, "v1", "scripted")

    def close(self) -> None:
        pass


def test_scan_during_outage_queues_one_row(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    client = ResilientLookup(closed_service(), queue=queue)

    assert client.lookup(DOCUMENT).result is Result.UNKNOWN
    answers = client.lookup_lookalikes(DOCUMENT, VARIANTS)
    client.close()

    assert [a.result for a in answers] == [Result.UNKNOWN, Result.UNKNOWN]
    reopened = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    (check,) = reopened.pending()
    assert check.key == DOCUMENT
    assert check.variants == tuple(VARIANTS)
    reopened.close()


def test_variants_merge_into_the_newest_row(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    failed = unknown("lookup backend unreachable", source="online")
    queue.enqueue(DOCUMENT, failed)
    newest = queue.enqueue(DOCUMENT, failed)

    queue.attach_variants(DOCUMENT, VARIANTS[:1], failed)
    queue.attach_variants(DOCUMENT, VARIANTS, failed)

    checks = queue.pending()
    assert [c.variants for c in checks] == [(), tuple(VARIANTS)]
    assert checks[1].id == newest
    queue.close()


def test_variants_of_an_answered_document_get_their_own_row(tmp_path: Path) -> None:
    # The document's own key was answered online, so it is not queued; its
    # look-alikes then failed, and they still need a recheck.
    queue = RecheckQueue(tmp_path / "q.sqlite3", service_url=SERVICE)
    failed = unknown("lookup backend unreachable", source="online")

    queue.attach_variants(DOCUMENT, VARIANTS, failed)

    (check,) = queue.pending()
    assert (check.key, check.variants) == (DOCUMENT, tuple(VARIANTS))
    assert check.first_result is Result.UNKNOWN
    queue.close()


def test_late_lookalike_match_is_possible_for_the_document(
    live_service: LiveService, tmp_path: Path
) -> None:
    late: list[tuple[QueuedCheck, LookupAnswer]] = []
    copy = OfflineCopy(tmp_path / "offline.sqlite3")
    first = online(live_service.url)
    copy.sync(first)
    first.close()
    queue = RecheckQueue(
        tmp_path / "q.sqlite3", on_late_hit=lambda c, a: late.append((c, a))
    )
    down = ResilientLookup(closed_service(), offline=copy, queue=queue)
    assert down.lookup(DOCUMENT).result is Result.NO_HIT
    assert [a.result for a in down.lookup_lookalikes(DOCUMENT, VARIANTS)] == [
        Result.NO_HIT,
        Result.NO_HIT,
    ]
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
    queue.attach_variants(DOCUMENT, VARIANTS, unknown("down", source="online"))

    (check,) = queue.pending()
    assert (check.key, check.variants) == (DOCUMENT, tuple(VARIANTS))
    queue.close()
