"""One time limit for all the lookups of one document check.

The servers here accept connections on a loopback port and never respond
(or respond only to the first connection), which is what a stopped service
(`kill -STOP`) looks like to the kiosk. The tests assert on the answers
and on the deadline each request was given, not on elapsed time.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from backend.records import DocumentKey, Result
from kiosk.lookup.deadline import shared_deadline, shared_deadline_start
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.resilient import ResilientLookup
from kiosk.mrz import compose
from kiosk.mrz.compose import DocumentFields
from kiosk.mrz.formats import MrzFormat
from kiosk.pipeline import check_text

TODAY = dt.date(2026, 12, 4)
TIMEOUT_S = 0.5
# Only a lookup with no deadline at all takes this long; a loose bound
# that catches a hang, not a speed check.
HANG_S = 30.0
NO_HIT_BODY = json.dumps({"result": "NO_HIT", "records": [], "data_version": "1-x"})


@dataclass
class SilentServer:
    """A TCP server on 127.0.0.1 that responds NO_HIT on its first
    `answered` connections and keeps every later one open without a
    response."""

    url: str
    answered: int
    connections: int = 0
    held: list[socket.socket] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def _answer_no_hit(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(65536)
        if not chunk:
            return
        request += chunk
    head, _, body = request.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk
    reply = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(NO_HIT_BODY)}\r\nConnection: close\r\n\r\n"
        f"{NO_HIT_BODY}"
    )
    conn.sendall(reply.encode())


def _serve(server: SilentServer, listener: socket.socket) -> None:
    while not server.stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        server.connections += 1
        if server.connections <= server.answered:
            with conn:
                _answer_no_hit(conn)
        else:
            server.held.append(conn)


@pytest.fixture
def silent_server(request: pytest.FixtureRequest) -> Iterator[SilentServer]:
    answered: int = getattr(request, "param", 0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    port = listener.getsockname()[1]
    server = SilentServer(f"http://127.0.0.1:{port}", answered)
    thread = threading.Thread(target=_serve, args=(server, listener), daemon=True)
    thread.start()
    yield server
    server.stop.set()
    thread.join(timeout=5)
    listener.close()
    for conn in server.held:
        conn.close()


@dataclass
class Deadlines:
    """The path and deadline of every request an HttpLookup sent, in call
    order, and the time.monotonic() of the first one."""

    paths: list[str] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)
    first_call: float | None = None


def _record_deadlines(client: HttpLookup, monkeypatch: pytest.MonkeyPatch) -> Deadlines:
    """Record the deadline of every request `client` sends from now on."""
    seen = Deadlines()
    original = client._attempts

    def attempts(
        method: str, path: str, request_id: str, deadline: float, **kwargs: Any
    ) -> Any:
        if seen.first_call is None:
            seen.first_call = time.monotonic()
        seen.paths.append(path)
        seen.deadlines.append(deadline)
        return original(method, path, request_id, deadline, **kwargs)

    monkeypatch.setattr(client, "_attempts", attempts)
    return seen


def _passport(state: str, number: str) -> list[str]:
    fields = DocumentFields(
        MrzFormat.TD3,
        "P<",
        state,
        number,
        "HOLLOWAY",
        "ADA",
        "NLD",
        "800101",
        "F",
        "300101",
    )
    return compose(fields)


@pytest.mark.parametrize("silent_server", [1], indirect=True)
def test_lookalikes_share_main_deadline(
    silent_server: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service responds to the main lookup, then stops responding.
    client = HttpLookup(silent_server.url, api_key=None, timeout_s=TIMEOUT_S)
    seen = _record_deadlines(client, monkeypatch)
    try:
        started = time.monotonic()
        outcome = check_text(_passport("UTO", "W3180689"), client, today=TODAY)
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert outcome.lookup.result is Result.UNKNOWN
    assert "look-alike readings could not be checked" in str(outcome.lookup.reason)
    assert seen.paths == ["/v1/lookup", "/v1/lookup/batch"]
    assert seen.deadlines[1] == seen.deadlines[0]
    assert seen.first_call is not None
    assert seen.deadlines[0] <= seen.first_call + TIMEOUT_S
    assert elapsed < HANG_S


def test_silent_service_is_unknown(
    silent_server: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = HttpLookup(silent_server.url, api_key=None, timeout_s=TIMEOUT_S)
    seen = _record_deadlines(online, monkeypatch)
    client = ResilientLookup(online)
    try:
        started = time.monotonic()
        outcome = check_text(_passport("UTO", "W3180689"), client, today=TODAY)
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert outcome.lookup.result is Result.UNKNOWN
    assert "timed out" in str(outcome.lookup.reason)
    assert seen.first_call is not None
    assert all(d <= seen.first_call + TIMEOUT_S for d in seen.deadlines)
    assert elapsed < HANG_S


def test_second_lookup_not_sent_after_deadline(
    silent_server: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = HttpLookup(silent_server.url, api_key=None, timeout_s=TIMEOUT_S)
    seen = _record_deadlines(client, monkeypatch)
    key = DocumentKey.create("UTO", "P", "W3180689")
    other = DocumentKey.create("UTO", "P", "W31806890")
    try:
        with shared_deadline():
            first = client.lookup(key)
            second = client.lookup_many([key, other])
    finally:
        client.close()
    assert first.result is Result.UNKNOWN
    assert "timed out" in str(first.reason)
    assert [a.result for a in second] == [Result.UNKNOWN, Result.UNKNOWN]
    assert "lookup not sent" in str(second[0].reason)
    assert seen.paths == ["/v1/lookup"]
    assert silent_server.connections == 1


def test_deadline_without_block_is_per_request(
    silent_server: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = HttpLookup(silent_server.url, api_key=None, timeout_s=TIMEOUT_S)
    seen = _record_deadlines(client, monkeypatch)
    key = DocumentKey.create("UTO", "P", "W3180689")
    try:
        client.lookup(key)
        client.lookup(key)
    finally:
        client.close()
    assert seen.deadlines[1] > seen.deadlines[0]


def test_nested_block_keeps_outer_start() -> None:
    assert shared_deadline_start() is None
    with shared_deadline():
        outer = shared_deadline_start()
        with shared_deadline():
            assert shared_deadline_start() == outer
        assert shared_deadline_start() == outer
    assert outer is not None
    assert shared_deadline_start() is None
