"""Offline copies of two lookup services on one kiosk: no copy returns a result for
a service other than the one whose data it contains."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.importer import import_csv
from backend.records import DocumentKey, LookupAnswer, Result
from kiosk.errors import LookupFailed
from kiosk.lookup import open_client
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.offline import OfflineCopy, copy_path
from kiosk.lookup.queue import RecheckQueue
from kiosk.lookup.resilient import ResilientLookup
from tests.backend.helpers import record_line, write_csv
from tests.lookup.conftest import API_KEY, SEED_LINES, LiveService, serve_list

# On service B's list only; service A's copy returns NO_HIT for it.
B_ONLY_KEY = DocumentKey.create("LTU", "P", "00000000")
B_LINES = [record_line("LTU", "00000000")]
A_HIT_KEY = DocumentKey.create("UTO", "P", "L898902C3")


def kiosk(
    url: str, folder: Path, on_notice: Callable[[str], None] | None = None
) -> ResilientLookup:
    """Open the client a kiosk process opens, with no maintenance thread."""
    client = open_client(
        url,
        api_key=API_KEY,
        embedded_path=folder / "kiosk.sqlite3",
        seed_csv=None,
        retries=0,
        maintain_every_s=None,
        on_notice=on_notice,
    )
    assert isinstance(client, ResilientLookup)
    return client


def test_kiosk_on_b_ignores_copy_of_a(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    with serve_list(tmp_path / "a", SEED_LINES) as service_a:
        app = kiosk(service_a.url, folder)
        app.maintain()
        with serve_list(tmp_path / "b", B_LINES) as service_b:
            # A second import, so that B's data version is not also A's.
            import_csv(service_b.store, write_csv(tmp_path / "b.csv", B_LINES))
            b_url = service_b.url
            scan = kiosk(b_url, folder)
            assert scan.lookup(B_ONLY_KEY).result is Result.HIT
            scan.maintain()
            scan.close()
            # The app's next sync, after a kiosk on B opened the same folder.
            app.maintain()
        # Service B is down now, so only an offline copy can return a result.
        scan = kiosk(b_url, folder)
        answer = scan.lookup(B_ONLY_KEY)
        scan.close()
        app.close()

    assert answer.result is Result.HIT
    assert answer.source == "offline"


def test_kiosk_on_b_never_synced_gives_unknown(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    with serve_list(tmp_path / "a", SEED_LINES) as service_a:
        app = kiosk(service_a.url, folder)
        app.maintain()
        with serve_list(tmp_path / "b", B_LINES) as service_b:
            b_url = service_b.url
            scan = kiosk(b_url, folder)
            assert scan.lookup(B_ONLY_KEY).result is Result.HIT
            scan.close()
            app.maintain()
        scan = kiosk(b_url, folder)
        answer = scan.lookup(B_ONLY_KEY)
        scan.close()
        app.close()

    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "never synced" in answer.reason


def test_app_copy_survives_kiosk_on_b(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    with serve_list(tmp_path / "a", SEED_LINES) as service_a:
        app = kiosk(service_a.url, folder)
        app.maintain()
        with serve_list(tmp_path / "b", B_LINES) as service_b:
            kiosk(service_b.url, folder).close()
    # Service A is down now.
    answer = app.lookup(A_HIT_KEY)
    app.close()

    assert answer.result is Result.HIT
    assert answer.source == "offline"


def test_copies_of_two_services_differ(tmp_path: Path) -> None:
    first = copy_path(tmp_path, "http://127.0.0.1:8080")
    assert copy_path(tmp_path, "http://127.0.0.1:8080/") == first
    assert copy_path(tmp_path, "http://127.0.0.1:8081") != first
    assert first.parent == tmp_path


# -- one file opened for two services ---------------------------------------


def test_file_of_a_refuses_b(live_service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    feed_a = HttpLookup(live_service.url, api_key=API_KEY)
    copy_a = OfflineCopy(path, service_url=live_service.url)
    copy_a.sync(feed_a)
    other_url = "http://127.0.0.1:9"
    copy_b = OfflineCopy(path, service_url=other_url)
    feed_b = HttpLookup(other_url, api_key=API_KEY, retries=0)

    # A sync by the process that owns the file, after B opened it.
    copy_a.sync(feed_a)
    answer_b = copy_b.lookup(B_ONLY_KEY)
    answer_a = copy_a.lookup(B_ONLY_KEY)
    status_b = copy_b.status()
    with pytest.raises(LookupFailed, match="contains the data of"):
        copy_b.sync(feed_b)
    for closable in (copy_a, copy_b, feed_a, feed_b):
        closable.close()

    assert answer_b.result is Result.UNKNOWN
    assert answer_b.reason is not None
    assert live_service.url in answer_b.reason
    assert answer_a.result is Result.NO_HIT
    assert status_b.state.value == "unreachable"


def test_unbound_file_binds_on_sync(live_service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    feed = HttpLookup(live_service.url, api_key=API_KEY)
    OfflineCopy(path).sync(feed)
    copy_b = OfflineCopy(path, service_url="http://127.0.0.1:9")
    answer = copy_b.lookup(A_HIT_KEY)
    copy_b.close()
    feed.close()

    assert answer.result is Result.UNKNOWN


def test_sync_skipped_while_locked(live_service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    copy = OfflineCopy(path, service_url=live_service.url, sync_wait_s=0.0)
    feed = HttpLookup(live_service.url, api_key=API_KEY)
    # The lock another kiosk process holds while it syncs the same file.
    fd = os.open(copy.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LookupFailed, match="another process"):
            copy.sync(feed)
    finally:
        os.close(fd)
    assert copy.sync(feed) == live_service.store.data_version()
    copy.close()
    feed.close()


# -- re-check queue shared by kiosks on two services ---------------------------


def test_recheck_stays_with_its_service(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    with serve_list(tmp_path / "b", B_LINES) as service_b:
        b_url = service_b.url
    # Service B is down: the check of a key on B's list is queued.
    scan = kiosk(b_url, folder)
    assert scan.lookup(B_ONLY_KEY).result is Result.UNKNOWN
    scan.close()
    with serve_list(tmp_path / "a", SEED_LINES) as service_a:
        app = kiosk(service_a.url, folder)
        assert app.queue is not None
        queued_for_a = len(app.queue)
        app.maintain()
        app.close()

    queue = RecheckQueue(folder / "rechecks.sqlite3")
    keys = [check.key for check in queue.pending()]
    queue.close()
    assert queued_for_a == 0
    assert keys == [B_ONLY_KEY]
    queue_b = RecheckQueue(folder / "rechecks.sqlite3", service_url=b_url + "/")
    keys_for_b = [check.key for check in queue_b.pending()]
    queue_b.close()
    assert keys_for_b == [B_ONLY_KEY]


def test_queue_file_without_service_column(tmp_path: Path) -> None:
    path = tmp_path / "rechecks.sqlite3"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            """CREATE TABLE rechecks (
                id INTEGER PRIMARY KEY,
                issuing_state TEXT NOT NULL,
                document_type TEXT NOT NULL,
                document_number TEXT NOT NULL,
                queued_at TEXT NOT NULL,
                reason TEXT NOT NULL,
                first_result TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT
            )"""
        )
        conn.execute(
            "INSERT INTO rechecks (issuing_state, document_type, document_number,"
            " queued_at, reason, first_result) VALUES"
            " ('LTU', 'P', '00000000', '2026-12-01T00:00:00+00:00', 'down', 'UNKNOWN')"
        )
    conn.close()

    queue = RecheckQueue(path, service_url="http://127.0.0.1:9")
    keys = [check.key for check in queue.pending()]
    queue.enqueue(A_HIT_KEY, LookupAnswer(Result.UNKNOWN, reason="down"))
    count = len(queue)
    queue.close()

    assert keys == [B_ONLY_KEY]
    assert count == 2


# -- file modes ---------------------------------------------------------------


def test_copy_files_are_private(live_service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "var" / "offline.sqlite3"
    copy = OfflineCopy(path, service_url=live_service.url)
    feed = HttpLookup(live_service.url, api_key=API_KEY)
    copy.sync(feed)
    feed.close()
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    copy.close()

    assert path.name in modes
    assert path.name + ".lock" in modes
    for name, mode in modes.items():
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
