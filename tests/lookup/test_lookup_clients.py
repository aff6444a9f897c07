"""Lookup clients: embedded, online, offline copy, recheck queue and faults."""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from backend.importer import import_csv
from backend.records import DocumentKey, LookupAnswer, Result
from kiosk.lookup import BackendState, open_client
from kiosk.lookup.embedded import EmbeddedLookup
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.offline import OfflineCopy
from kiosk.lookup.queue import QueuedCheck, RecheckQueue
from kiosk.lookup.resilient import ResilientLookup
from tests.backend.helpers import record_line, write_csv
from tests.lookup.conftest import (
    API_KEY,
    SEED_LINES,
    FaultServer,
    LiveService,
    free_port,
    synced_copy,
)

HIT_KEY = DocumentKey.create("UTO", "P", "L898902C3")
CLEAN_KEY = DocumentKey.create("UTO", "P", "X0000001")


def online(url: str, *, timeout_s: float = 2.0, retries: int = 1) -> HttpLookup:
    return HttpLookup(
        url, api_key=API_KEY, timeout_s=timeout_s, retries=retries, backoff_s=0.01
    )


# -- embedded ------------------------------------------------------------


def test_embedded_seeds_on_first_use(tmp_path: Path) -> None:
    seed = write_csv(tmp_path / "seed.csv", SEED_LINES)
    client = EmbeddedLookup(tmp_path / "kiosk" / "list.sqlite3", seed_csv=seed)
    try:
        hit = client.lookup(HIT_KEY)
        assert hit.result is Result.HIT
        assert hit.source == "embedded"
        clean = client.lookup(CLEAN_KEY)
        assert clean.result is Result.NO_HIT
        assert clean.data_version == hit.data_version
        status = client.status()
        assert status.state is BackendState.EMBEDDED
        assert status.data_age is not None
        assert "3 records" in status.description
    finally:
        client.close()


def test_embedded_store_file_is_private(tmp_path: Path) -> None:
    seed = write_csv(tmp_path / "seed.csv", SEED_LINES)
    path = tmp_path / "var" / "kiosk.sqlite3"
    client = EmbeddedLookup(path, seed_csv=seed)
    assert client.lookup(HIT_KEY).result is Result.HIT
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    client.close()

    assert path.name in modes
    for name, mode in modes.items():
        assert mode == 0o600, f"{name} has mode {oct(mode)}"


def test_embedded_without_data_is_unknown(tmp_path: Path) -> None:
    client = EmbeddedLookup(tmp_path / "empty.sqlite3", seed_csv=None)
    answer = client.lookup(CLEAN_KEY)
    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "no imported data" in answer.reason
    assert client.status().state is BackendState.UNREACHABLE
    client.close()


def test_embedded_corrupt_file_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    client = EmbeddedLookup(path, seed_csv=None)
    answers = client.lookup_many([HIT_KEY, CLEAN_KEY])
    assert [a.result for a in answers] == [Result.UNKNOWN, Result.UNKNOWN]
    assert all(a.reason for a in answers)
    client.close()


def test_embedded_bad_seed_is_unknown(tmp_path: Path) -> None:
    client = EmbeddedLookup(tmp_path / "x.sqlite3", seed_csv=tmp_path / "absent.csv")
    answer = client.lookup(HIT_KEY)
    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "cannot read" in answer.reason
    client.close()


def test_open_client_picks_mode(tmp_path: Path) -> None:
    embedded = open_client(
        None, api_key=None, embedded_path=tmp_path / "e.sqlite3", seed_csv=None
    )
    assert isinstance(embedded, EmbeddedLookup)
    embedded.close()
    remote = open_client(
        f"http://127.0.0.1:{free_port()}",
        api_key="k",
        embedded_path=tmp_path / "e.sqlite3",
        seed_csv=None,
        retries=0,
        maintain_every_s=None,
    )
    assert isinstance(remote, ResilientLookup)
    assert remote.lookup(HIT_KEY).result is Result.UNKNOWN
    assert remote.status().queued_rechecks == 1
    remote.close()


# -- online --------------------------------------------------------------


def test_online_hit_and_no_hit(live_service: LiveService) -> None:
    client = online(live_service.url)
    try:
        hit = client.lookup(HIT_KEY)
        assert hit.result is Result.HIT
        assert hit.records[0].document_number == "L898902C3"
        assert hit.source == "online"
        assert hit.request_id
        clean = client.lookup(CLEAN_KEY)
        assert clean.result is Result.NO_HIT
        assert clean.data_version == live_service.store.data_version()
        mismatch = client.lookup(DocumentKey.create("D", "P", "C01X00T47"))
        assert mismatch.result is Result.HIT
        assert mismatch.type_mismatch
        status = client.status()
        assert status.state is BackendState.ONLINE
        assert status.data_version == clean.data_version
    finally:
        client.close()


def test_online_batch_splits_requests(live_service: LiveService) -> None:
    client = online(live_service.url)
    keys = [DocumentKey.create("UTO", "P", f"N{i:07d}") for i in range(2500)]
    keys[2400] = HIT_KEY
    answers = client.lookup_many(keys)
    client.close()
    assert len(answers) == 2500
    assert answers[2400].result is Result.HIT
    assert sum(a.result is Result.NO_HIT for a in answers) == 2499


def test_online_wrong_key_is_unknown_without_retry(live_service: LiveService) -> None:
    client = HttpLookup(live_service.url, api_key="wrong", retries=2, backoff_s=0.01)
    answer = client.lookup(HIT_KEY)
    client.close()
    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "401" in answer.reason


def test_service_with_store_gone_gives_unknown(live_service: LiveService) -> None:
    client = online(live_service.url, retries=1)
    assert client.lookup(HIT_KEY).result is Result.HIT
    for suffix in ("", "-wal", "-shm"):
        path = live_service.folder / f"store.sqlite3{suffix}"
        if path.exists():
            os.remove(path)
    answer = client.lookup(CLEAN_KEY)
    client.close()
    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "503" in answer.reason


def test_backend_down_is_unknown_and_queued(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    client = ResilientLookup(online(url, retries=1), queue=queue)
    answer = client.lookup(HIT_KEY)
    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "unreachable" in answer.reason
    assert [c.key for c in queue.pending()] == [HIT_KEY]
    assert client.status().state is BackendState.UNREACHABLE
    client.close()


@pytest.mark.parametrize(
    ("fault_server", "reason"),
    [
        ("slow", "timed out"),
        ("error500", "HTTP 500"),
        ("garbage", "not JSON"),
        ("wrong_json", "malformed"),
        ("no_version", "without a data version"),
    ],
    indirect=["fault_server"],
)
def test_faulty_backend_is_unknown_and_queued(
    fault_server: FaultServer, reason: str, tmp_path: Path
) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    client = ResilientLookup(
        online(fault_server.url, timeout_s=0.3, retries=1), queue=queue
    )
    answer = client.lookup(HIT_KEY)
    client.close()
    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert reason in answer.reason
    reopened = RecheckQueue(tmp_path / "q.sqlite3")
    assert [c.key for c in reopened.pending()] == [HIT_KEY]
    reopened.close()


@pytest.mark.parametrize("fault_server", ["wrong_json", "no_version"], indirect=True)
def test_unusable_answer_logged_with_request_id(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = online(fault_server.url, retries=0)
    with caplog.at_level(logging.WARNING, logger="kiosk.lookup.http"):
        single = client.lookup(HIT_KEY)
        batch = client.lookup_many([HIT_KEY, CLEAN_KEY])
    client.close()
    assert single.result is Result.UNKNOWN
    assert {answer.result for answer in batch} == {Result.UNKNOWN}
    warnings = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    assert len(warnings) == 2
    assert single.request_id is not None
    assert single.request_id in warnings[0]
    assert batch[0].request_id is not None
    assert batch[0].request_id in warnings[1]
    # The log names the request, never the document.
    assert all(HIT_KEY.document_number not in text for text in warnings)


@pytest.mark.parametrize("fault_server", ["error500"], indirect=True)
def test_retries_reuse_request_id(fault_server: FaultServer) -> None:
    client = online(fault_server.url, retries=2)
    answer = client.lookup(HIT_KEY)
    client.close()
    assert len(fault_server.request_ids) == 3
    assert len(set(fault_server.request_ids)) == 1
    assert answer.request_id == fault_server.request_ids[0]


# -- offline copy --------------------------------------------------------


def test_offline_copy_syncs_snapshot_and_delta(
    live_service: LiveService, tmp_path: Path
) -> None:
    client = online(live_service.url)
    copy = OfflineCopy(tmp_path / "offline.sqlite3")
    assert copy.lookup(HIT_KEY).result is Result.UNKNOWN
    first = copy.sync(client)
    assert first == live_service.store.data_version()
    assert copy.lookup(HIT_KEY).result is Result.HIT
    no_hit = copy.lookup(CLEAN_KEY)
    assert no_hit.result is Result.NO_HIT
    assert no_hit.data_version == first
    assert no_hit.source == "offline"

    delta = write_csv(
        tmp_path / "delta.csv",
        [
            ["add", *record_line("UTO", "X0000001")],
            ["delete", "UTO", "P", "L898902C3", "", "", "", "", "", ""],
        ],
        delta=True,
    )
    import_csv(live_service.store, delta, delta=True)
    second = copy.sync(client)
    assert second != first
    assert copy.lookup(CLEAN_KEY).result is Result.HIT
    assert copy.lookup(HIT_KEY).result is Result.NO_HIT

    import_csv(
        live_service.store, write_csv(tmp_path / "full.csv", [record_line("GBR", "9")])
    )
    copy.sync(client)
    assert copy.lookup(CLEAN_KEY).result is Result.NO_HIT
    assert copy.lookup(DocumentKey.create("GBR", "P", "9")).result is Result.HIT
    copy.close()
    client.close()


def test_offline_copy_pages_snapshot(live_service: LiveService, tmp_path: Path) -> None:
    lines = [record_line("UTO", f"P{i:06d}") for i in range(120)]
    import_csv(live_service.store, write_csv(tmp_path / "many.csv", lines))

    class SmallPages:
        def __init__(self, inner: HttpLookup) -> None:
            self.inner = inner
            self.base_url = inner.base_url
            self.calls = 0

        def changes(
            self, since: str | None, cursor: int = 0, limit: int = 50
        ) -> object:
            self.calls += 1
            return self.inner.changes(since, cursor, 50)

    client = online(live_service.url)
    feed = SmallPages(client)
    copy = OfflineCopy(tmp_path / "offline.sqlite3")
    copy.sync(feed)  # type: ignore[arg-type]
    assert feed.calls == 3
    assert copy.lookup(DocumentKey.create("UTO", "P", "P000119")).result is Result.HIT
    copy.close()
    client.close()


def synced_copy_aged(
    url: str, path: Path, *, max_age: dt.timedelta, age: dt.timedelta
) -> OfflineCopy:
    """Return an offline copy synced from `url` whose last sync is `age` ago."""
    client = online(url)
    copy = OfflineCopy(path, max_age=max_age)
    copy.sync(client)
    client.close()
    copy._write_meta(synced_at=(dt.datetime.now(dt.UTC) - age).isoformat())
    return copy


def test_stale_copy_under_a_minute_in_seconds(
    live_service: LiveService, tmp_path: Path
) -> None:
    copy = synced_copy_aged(
        live_service.url,
        tmp_path / "offline.sqlite3",
        max_age=dt.timedelta(seconds=1),
        age=dt.timedelta(seconds=30),
    )
    stale = copy.lookup(CLEAN_KEY)
    copy.close()
    assert stale.reason is not None
    assert "over the limit of 1 s" in stale.reason
    assert " s old" in stale.reason


def test_stale_copy_turns_no_hit_into_unknown(
    live_service: LiveService, tmp_path: Path
) -> None:
    copy = synced_copy_aged(
        live_service.url,
        tmp_path / "offline.sqlite3",
        max_age=dt.timedelta(hours=1),
        age=dt.timedelta(hours=3),
    )
    stale = copy.lookup(CLEAN_KEY)
    assert stale.result is Result.UNKNOWN
    assert stale.reason is not None
    assert "over the limit of 1.0 h" in stale.reason
    assert copy.lookup(HIT_KEY).result is Result.HIT
    status = copy.status()
    assert status.state is BackendState.OFFLINE
    assert status.data_age is not None
    assert status.data_age >= dt.timedelta(hours=3)
    assert "stale" in status.description
    copy.close()


# -- link lost and regained ----------------------------------------------


def test_offline_fallback_then_late_hit(
    live_service: LiveService, tmp_path: Path
) -> None:
    late: list[tuple[QueuedCheck, LookupAnswer]] = []
    copy = synced_copy(tmp_path / "offline.sqlite3", live_service)
    queue = RecheckQueue(
        tmp_path / "q.sqlite3", on_late_hit=lambda c, a: late.append((c, a))
    )
    down = ResilientLookup(
        online(f"http://127.0.0.1:{free_port()}", retries=0), offline=copy, queue=queue
    )
    new_key = DocumentKey.create("UTO", "P", "NEW000001")
    answers = down.lookup_many([HIT_KEY, new_key])
    assert answers[0].result is Result.HIT
    assert answers[0].source == "offline"
    assert answers[1].result is Result.NO_HIT
    assert len(queue) == 2
    assert down.status().state is BackendState.OFFLINE
    down.close()

    import_csv(
        live_service.store,
        write_csv(
            tmp_path / "d.csv", [["add", *record_line("UTO", "NEW000001")]], delta=True
        ),
        delta=True,
    )
    queue = RecheckQueue(
        tmp_path / "q.sqlite3", on_late_hit=lambda c, a: late.append((c, a))
    )
    copy = OfflineCopy(tmp_path / "offline.sqlite3")
    up = ResilientLookup(online(live_service.url), offline=copy, queue=queue)
    up.maintain()
    assert len(queue) == 0
    assert [(c.key, a.result) for c, a in late] == [
        (HIT_KEY, Result.HIT),
        (new_key, Result.HIT),
    ]
    assert late[1][0].first_result is Result.NO_HIT
    assert up.lookup(new_key).source == "online"
    up.close()


def test_queue_keeps_unknown_on_failed_recheck(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    queue.enqueue(HIT_KEY, LookupAnswer(Result.UNKNOWN, reason="test"))
    client = online(f"http://127.0.0.1:{free_port()}", retries=0)
    assert queue.drain(client) == 0
    (check,) = queue.pending()
    assert check.attempts == 1
    client.close()
    queue.close()
    assert oct((tmp_path / "q.sqlite3").stat().st_mode & 0o777) == "0o600"


def test_background_maintenance_syncs(
    live_service: LiveService, tmp_path: Path
) -> None:
    client = open_client(
        live_service.url,
        api_key=API_KEY,
        embedded_path=tmp_path / "kiosk" / "list.sqlite3",
        seed_csv=None,
        maintain_every_s=0.05,
    )
    assert isinstance(client, ResilientLookup)
    assert client.offline is not None
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    while client.offline.service_version is None:
        assert dt.datetime.now(dt.UTC) < deadline, "offline copy never synced"
        time.sleep(0.02)
    assert client.offline.service_version == live_service.store.data_version()
    client.close()


class _CrashingOnline(HttpLookup):
    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        raise RuntimeError("simulated bug in the online client")


def test_unexpected_error_is_unknown_and_queued(tmp_path: Path) -> None:
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    online_client = _CrashingOnline(f"http://127.0.0.1:{free_port()}", api_key=API_KEY)
    client = ResilientLookup(online_client, queue=queue)
    answer = client.lookup(HIT_KEY)
    assert answer.result is Result.UNKNOWN
    assert answer.reason == "online lookup failed: RuntimeError"
    assert len(queue) == 1
    client.close()
