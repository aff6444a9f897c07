"""Client faults that must end as UNKNOWN: stalls, bad answers, wrong copy."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.records import DocumentKey, Result
from kiosk.errors import LookupFailed
from kiosk.lookup import open_client
from kiosk.lookup.http import HttpLookup, parse_answer
from kiosk.lookup.offline import OfflineCopy, copy_path
from kiosk.lookup.queue import RecheckQueue
from kiosk.lookup.resilient import ResilientLookup
from tests.lookup.conftest import API_KEY, LiveService, free_port

HIT_KEY = DocumentKey.create("UTO", "P", "L898902C3")
CLEAN_KEY = DocumentKey.create("UTO", "P", "X0000001")
RECORD = {
    "issuing_state": "UTO",
    "document_type": "P",
    "document_number": "L898902C3",
    "status": "stolen",
    "reported_on": "2024-03-01",
    "reporting_country": "FRA",
    "reference": "REF-1",
    "issue_date": None,
    "expiry_date": None,
}


# -- a service that sends its answer one byte at a time --------------------


@dataclass
class DripServer:
    url: str
    connections: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def _drip(server: DripServer, conn: socket.socket) -> None:
    body = json.dumps({"result": "NO_HIT", "records": [], "data_version": "1-x"})
    reply = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    with conn:
        conn.recv(65536)
        for index in range(len(reply)):
            if server.stop.wait(0.2):
                return
            try:
                conn.sendall(reply[index : index + 1])
            except OSError:
                return


@pytest.fixture
def drip_server() -> Iterator[DripServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    port = listener.getsockname()[1]
    server = DripServer(f"http://127.0.0.1:{port}")

    def accept() -> None:
        while not server.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            server.connections += 1
            threading.Thread(target=_drip, args=(server, conn), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    thread.join(timeout=5)
    listener.close()


def test_dripping_service_hits_total_deadline(drip_server: DripServer) -> None:
    # The whole reply takes about 30 s; the check may take 1 s in total.
    client = HttpLookup(drip_server.url, api_key=API_KEY, timeout_s=1.0, retries=2)
    started = time.monotonic()
    answer = client.lookup(CLEAN_KEY)
    elapsed = time.monotonic() - started
    client.close()

    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "timed out" in answer.reason
    # One attempt used up the budget, so no retry started a fresh one.
    assert drip_server.connections == 1
    # A loose bound that only a missing deadline can break (no retry, no
    # restart per byte), not a speed measurement.
    assert elapsed < 10


def test_dripping_status_hits_deadline(drip_server: DripServer) -> None:
    client = HttpLookup(drip_server.url, api_key=API_KEY, timeout_s=0.5, retries=0)
    status = client.status()
    client.close()
    assert status.state.value == "unreachable"


# -- inconsistent answers ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"result": "NO_HIT", "records": [RECORD], "data_version": "1-x"},
            "NO_HIT with 1 records",
        ),
        ({"result": "HIT", "records": [], "data_version": "1-x"}, "HIT without"),
        ({"result": "POSSIBLE", "data_version": "1-x"}, "POSSIBLE without"),
        ({"result": "NOHIT", "records": [], "data_version": "1-x"}, "malformed"),
        ({"result": "NO_HIT", "records": []}, "without a data version"),
    ],
)
def test_inconsistent_answer_is_refused(body: dict[str, object], reason: str) -> None:
    with pytest.raises(LookupFailed, match=reason):
        parse_answer(body, "req-1")


def test_consistent_answers_accepted() -> None:
    hit = parse_answer(
        {"result": "HIT", "records": [RECORD], "data_version": "1-x"}, "r"
    )
    assert hit.result is Result.HIT
    no_hit = parse_answer(
        {"result": "NO_HIT", "records": [], "data_version": "1-x"}, "r"
    )
    assert no_hit.result is Result.NO_HIT


# -- the offline copy belongs to one service --------------------------------


def synced_copy(live_service: LiveService, path: Path) -> None:
    client = HttpLookup(live_service.url, api_key=API_KEY)
    copy = OfflineCopy(path, service_url=live_service.url)
    copy.sync(client)
    assert copy.lookup(CLEAN_KEY).result is Result.NO_HIT
    copy.close()
    client.close()


def test_copy_ignored_for_other_service(
    live_service: LiveService, tmp_path: Path
) -> None:
    path = tmp_path / "offline.sqlite3"
    synced_copy(live_service, path)
    other_url = f"http://127.0.0.1:{free_port()}"
    copy = OfflineCopy(path, service_url=other_url)
    client = ResilientLookup(
        HttpLookup(other_url, api_key=API_KEY, retries=0), offline=copy
    )

    answers = client.lookup_many([CLEAN_KEY, HIT_KEY])
    client.close()

    assert [a.result for a in answers] == [Result.UNKNOWN, Result.UNKNOWN]
    assert answers[0].reason is not None
    assert f"contains the data of {live_service.url}" in answers[0].reason


def test_copy_used_for_same_service(live_service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    synced_copy(live_service, path)
    copy = OfflineCopy(path, service_url=live_service.url + "/")
    assert copy.lookup(CLEAN_KEY).result is Result.NO_HIT
    copy.close()


def test_other_url_keeps_binding(live_service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    synced_copy(live_service, path)
    OfflineCopy(path, service_url=f"http://127.0.0.1:{free_port()}").close()

    copy = OfflineCopy(path, service_url=live_service.url)
    answer = copy.lookup(CLEAN_KEY)
    copy.close()

    assert answer.result is Result.NO_HIT


def test_rejected_key_skips_offline_copy(
    live_service: LiveService, tmp_path: Path
) -> None:
    path = tmp_path / "offline.sqlite3"
    synced_copy(live_service, path)
    queue = RecheckQueue(tmp_path / "q.sqlite3")
    client = ResilientLookup(
        HttpLookup(live_service.url, api_key="revoked-key", retries=0),
        offline=OfflineCopy(path, service_url=live_service.url),
        queue=queue,
    )

    answer = client.lookup(CLEAN_KEY)
    status = client.status()
    client.close()

    assert answer.result is Result.UNKNOWN
    assert answer.source == "online"
    assert answer.reason is not None
    assert "HTTP 401" in answer.reason
    assert "rejected" in answer.reason
    assert status.state.value == "unreachable"
    assert "rejected" in status.description


# -- open_client passes its limits through ----------------------------------


def test_open_client_honours_max_age(live_service: LiveService, tmp_path: Path) -> None:
    embedded = tmp_path / "kiosk" / "list.sqlite3"
    embedded.parent.mkdir()
    synced_copy(live_service, copy_path(embedded.parent, live_service.url))
    client = open_client(
        live_service.url,
        api_key=API_KEY,
        embedded_path=embedded,
        seed_csv=None,
        offline_max_age=dt.timedelta(microseconds=1),
        maintain_every_s=None,
    )
    assert isinstance(client, ResilientLookup)
    assert client.offline is not None
    # Past the tiny age limit the copy's NO_HIT must turn into UNKNOWN.
    answer = client.offline.lookup(CLEAN_KEY)
    client.close()

    assert answer.result is Result.UNKNOWN
    assert answer.reason is not None
    assert "over the limit" in answer.reason


def test_open_client_honours_timeout(drip_server: DripServer, tmp_path: Path) -> None:
    client = open_client(
        drip_server.url,
        api_key=API_KEY,
        embedded_path=tmp_path / "kiosk" / "list.sqlite3",
        seed_csv=None,
        timeout_s=0.5,
        retries=2,
        maintain_every_s=None,
    )
    answer = client.lookup(CLEAN_KEY)
    client.close()

    assert answer.result is Result.UNKNOWN
    assert drip_server.connections == 1


def test_sync_from_other_service_refused(
    live_service: LiveService, tmp_path: Path
) -> None:
    path = tmp_path / "offline.sqlite3"
    copy = OfflineCopy(path, service_url=f"http://127.0.0.1:{free_port()}")
    client = HttpLookup(live_service.url, api_key=API_KEY)

    with pytest.raises(LookupFailed, match="is bound to"):
        copy.sync(client)
    answer = copy.lookup(CLEAN_KEY)
    client.close()
    copy.close()

    assert answer.result is Result.UNKNOWN
