"""kiosk-backend commands: import, keys add, and kill -9 during an import."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backend.app import ServiceSettings, hash_api_key
from backend.cli import main
from backend.importer import FULL_HEADER
from backend.records import DocumentKey, Result
from backend.store import open_store
from tests.backend.helpers import record_line, write_csv


def test_import_reports_rejected_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(
        tmp_path / "f.csv",
        [record_line("UTO", "L898902C3"), record_line("UTO", "X", status="gone")],
    )
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    # Half the lines are invalid, far over the default limit of 1%.
    args = ["import", str(path), "--store", url, "--max-rejected-percent", "50"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 added, 0 deleted, 1 rejected, 1 records" in captured.out
    assert f"{path}:3: rejected: invalid status 'gone'" in captured.err
    assert "100.0%" in captured.err
    with open_store(url) as store:
        hit = store.lookup(DocumentKey.create("UTO", "P", "L898902C3"))
        assert hit.result is Result.HIT


def test_import_failure_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert main(["import", str(tmp_path / "absent.csv"), "--store", url]) == 1
    assert "error: cannot read" in capsys.readouterr().err


def test_keys_add_prints_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert main(["keys", "add", "GATE-07", "--store", url]) == 0
    captured = capsys.readouterr()
    api_key = captured.out.strip()
    assert len(api_key) >= 40
    assert "shown only this once" in captured.err
    with open_store(url) as store:
        assert store.terminal_for_key(hash_api_key(api_key)) == "GATE-07"
        assert store.terminal_for_key(api_key) is None
    db = (tmp_path / "s.sqlite3").read_bytes()
    assert api_key.encode() not in db


def test_keys_add_rejects_bad_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert main(["keys", "add", "gate 7; rm", "--store", url]) == 2
    assert "invalid terminal id" in capsys.readouterr().err


def test_serve_rejects_half_tls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--tls-cert", "cert.pem"]) == 2
    assert "go together" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--rate-limit", "0"], "invalid rate limit 0: use a number"),
        (["serve", "--rate-limit", "-3"], "invalid rate limit -3"),
        (["serve", "--rate-limit", "nan"], "invalid rate limit 'nan'"),
        (["serve", "--port", "99999"], "invalid port 99999: use 1 to 65535"),
        (["serve", "--port", "0"], "invalid port 0"),
        (["serve", "--port", "http"], "invalid port 'http': expected a whole"),
        (["serve", "--workers", "0"], "argument --workers: invalid value 0"),
        (["import", "x.csv", "--max-rejected", "-1"], "invalid value -1: use 0"),
        (["import", "x.csv", "--show-rejected", "-1"], "invalid value -1: use 0"),
        (["import", "x.csv", "--max-rejected-percent", "101"], "use 0 to 100"),
        (["import", "x.csv", "--max-rejected-percent", "inf"], "a finite number"),
    ],
)
def test_out_of_range_options_rejected(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_zero_rate_setting_rejected() -> None:
    with pytest.raises(ValueError, match="invalid rate_per_terminal 0"):
        ServiceSettings(rate_per_terminal=0)


def test_serve_names_port_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert main(["import", str(big_csv(tmp_path / "a.csv", 3)), "--store", url]) == 0
    audit = tmp_path / "audit.jsonl"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(
            [
                "serve", "--store", url, "--port", str(port),
                "--audit-log", str(audit),
            ]
        )  # fmt: skip
    assert code == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    # Nothing was started, so no audit chain was begun.
    assert not audit.exists()


def big_csv(path: Path, rows: int) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FULL_HEADER)
        for i in range(rows):
            writer.writerow(record_line("GBR", f"K{i:08d}"))
    return path


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_kill_during_import_keeps_old_data(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    with open_store(url) as store:
        from backend.importer import import_csv

        old = import_csv(
            store, write_csv(tmp_path / "old.csv", [record_line("UTO", "1")])
        )
    path = big_csv(tmp_path / "big.csv", 150_000)
    child = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "import", str(path), "--store", url],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert child.stderr is not None
    # The progress bar prints rows as they stream into the open transaction.
    seen = b""
    while b"rows" not in seen:
        chunk = os.read(child.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    assert b"rows" in seen, seen.decode(errors="replace")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    with open_store(url) as store:
        assert store.data_version() == old.result.version
        assert store.count() == 1
        assert store.lookup(DocumentKey.create("UTO", "P", "1")).result is Result.HIT
        probe = DocumentKey.create("GBR", "P", "K00000001")
        assert store.lookup(probe).result is Result.NO_HIT


def test_serve_with_two_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import time

    import httpx

    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    seed = write_csv(tmp_path / "seed.csv", [record_line("UTO", "L898902C3")])
    assert main(["import", str(seed), "--store", url, "--quiet"]) == 0
    assert main(["keys", "add", "GATE-1", "--store", url]) == 0
    api_key = capsys.readouterr().out.strip().splitlines()[-1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "audit.jsonl"
    server = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "--log-level", "WARNING", "serve",
         "--store", url, "--port", str(port), "--workers", "2",
         "--audit-log", str(log)]
    )  # fmt: skip
    body = {
        "issuing_state": "UTO",
        "document_type": "P",
        "document_number": "L898902C3",
    }
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "service with workers did not start"
            time.sleep(0.1)
        results = []
        for _ in range(20):
            # A new connection each time, so both workers get requests.
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/lookup",
                json=body,
                headers={"Authorization": f"Bearer {api_key}"},
            )
            results.append(response.json()["result"])
        assert results == ["HIT"] * 20
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert main(["audit", "verify", "--log", str(log)]) == 0
    output = capsys.readouterr().out
    assert "chain intact" in output
    counted = sum(
        int(line.split(": ")[1].split()[0])
        for line in output.splitlines()
        if "chain intact" in line
    )
    assert counted == 20
