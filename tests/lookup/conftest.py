"""Fixtures for the lookup client tests: a live service and faulty servers."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn

from backend.app import ServiceSettings, create_app, hash_api_key
from backend.audit import AuditLog
from backend.importer import import_csv
from backend.store import Store, open_store
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.offline import OfflineCopy
from tests.backend.helpers import record_line, write_csv

API_KEY = "kiosk-test-key"

SEED_LINES = [
    record_line("UTO", "L898902C3"),
    record_line("UTO", "012345", status="lost"),
    record_line("D", "C01X00T47", doc_type="ID"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class LiveService:
    url: str
    store: Store
    folder: Path


def synced_copy(path: Path, service: LiveService) -> OfflineCopy:
    """Return an offline copy at `path`, synced once from the live service."""
    copy = OfflineCopy(path)
    client = HttpLookup(service.url, api_key=API_KEY, timeout_s=2.0, retries=1)
    copy.sync(client)
    client.close()
    return copy


def _run_uvicorn(server: uvicorn.Server) -> threading.Thread:
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test service did not start within 10 s")
        time.sleep(0.01)
    return thread


@contextlib.contextmanager
def serve_list(folder: Path, lines: list[list[str]]) -> Iterator[LiveService]:
    """Run the real lookup service on a loopback port, seeded with `lines`."""
    folder.mkdir()
    store = open_store(f"sqlite:///{folder / 'store.sqlite3'}")
    import_csv(store, write_csv(folder / "seed.csv", lines))
    store.add_api_key("KIOSK-1", hash_api_key(API_KEY))
    audit = AuditLog.open(folder / "audit.jsonl")
    app = create_app(store, audit=audit, settings=ServiceSettings())
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = _run_uvicorn(server)
    try:
        yield LiveService(f"http://127.0.0.1:{port}", store, folder)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
        audit.close()


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[LiveService]:
    """The real lookup service on a loopback port, seeded with SEED_LINES."""
    with serve_list(tmp_path / "service", SEED_LINES) as service:
        yield service


@dataclass
class FaultServer:
    """A plain HTTP server that misbehaves in one chosen way."""

    url: str
    mode: str
    request_ids: list[str] = field(default_factory=list)


def _fault_handler(state: FaultServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            self.do_GET()

        def do_GET(self) -> None:
            state.request_ids.append(self.headers.get("X-Request-ID", ""))
            if state.mode == "slow":
                time.sleep(1.0)
                self._reply(200, b"{}", "application/json")
            elif state.mode == "error500":
                self._reply(500, b"Internal Server Error", "text/plain")
            elif state.mode == "garbage":
                self._reply(200, b"\x00\xffnot json at all", "application/json")
            elif state.mode == "wrong_json":
                self._reply(200, b'{"result": "MAYBE"}', "application/json")
            elif state.mode == "no_version":
                self._reply(
                    200, b'{"result": "NO_HIT", "records": []}', "application/json"
                )
            else:
                self._reply(404, b"{}", "application/json")

    return Handler


@pytest.fixture
def fault_server(request: pytest.FixtureRequest) -> Iterator[FaultServer]:
    mode: str = request.param
    port = free_port()
    state = FaultServer(f"http://127.0.0.1:{port}", mode)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _fault_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
