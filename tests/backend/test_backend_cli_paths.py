"""kiosk-backend paths: serve needs an existing store, and audit verify
takes the audit log under the option name serve uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import main
from tests.backend.helpers import record_line, write_csv
from tests.backend.test_backend_audit import write_entries


class UvicornCalls:
    """Stand-in for uvicorn.run that records its calls instead of serving."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.calls += 1


def imported_store_url(tmp_path: Path) -> str:
    """Return the URL of a SQLite store that `kiosk-backend import` filled."""
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    seed = write_csv(tmp_path / "seed.csv", [record_line("UTO", "L898902C3")])
    assert main(["import", str(seed), "--store", url, "--quiet"]) == 0
    return url


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> UvicornCalls:
    calls = UvicornCalls()
    monkeypatch.setattr("uvicorn.run", calls)
    return calls


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_missing_store_folder_rejected(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    uvicorn_calls: UvicornCalls,
    workers: str,
) -> None:
    store = tmp_path / "missing" / "dir" / "x.sqlite3"
    argv = ["serve", "--store", f"sqlite:///{store}", "--workers", workers]

    code = main([*argv, "--audit-log", str(tmp_path / "audit.jsonl")])

    assert code == 1
    assert f"store file {store} not found" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
    assert uvicorn_calls.calls == 0


def test_serve_missing_store_file_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uvicorn_calls: UvicornCalls
) -> None:
    store = tmp_path / "x.sqlite3"
    argv = ["serve", "--store", f"sqlite:///{store}"]

    assert main([*argv, "--audit-log", str(tmp_path / "audit.jsonl")]) == 1
    assert not store.exists()
    assert uvicorn_calls.calls == 0


def test_serve_imported_store_starts(
    tmp_path: Path, uvicorn_calls: UvicornCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gc.freeze would keep this test process's objects for good.
    monkeypatch.setattr("backend.app.freeze_startup_objects", lambda: None)
    url = imported_store_url(tmp_path)

    code = main(["serve", "--store", url, "--audit-log", str(tmp_path / "a.jsonl")])

    assert code == 0
    assert uvicorn_calls.calls == 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_missing_audit_folder_rejected(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    uvicorn_calls: UvicornCalls,
    workers: str,
) -> None:
    url = imported_store_url(tmp_path)
    log = tmp_path / "adit" / "audit.jsonl"

    code = main(
        ["serve", "--store", url, "--workers", workers, "--audit-log", str(log)]
    )

    assert code == 2
    err = capsys.readouterr().err
    assert f"audit log folder {log.parent} does not exist" in err
    assert "--audit-log" in err
    assert not log.parent.exists()
    assert uvicorn_calls.calls == 0


def test_serve_creates_default_audit_folder(
    tmp_path: Path,
    uvicorn_calls: UvicornCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("backend.app.freeze_startup_objects", lambda: None)
    monkeypatch.chdir(tmp_path)
    url = imported_store_url(tmp_path)

    assert main(["serve", "--store", url]) == 0

    assert (tmp_path / "var" / "backend").is_dir()
    assert uvicorn_calls.calls == 1


@pytest.mark.parametrize("option", ["--audit-log", "--log"])
def test_audit_verify_log_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    log = tmp_path / "audit.jsonl"
    write_entries(log, 3)

    assert main(["audit", "verify", option, str(log)]) == 0
    assert "3 entries, chain intact" in capsys.readouterr().out


@pytest.mark.parametrize("audit_log", ["", "logs"])
def test_serve_audit_log_folder_rejected(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    uvicorn_calls: UvicornCalls,
    monkeypatch: pytest.MonkeyPatch,
    audit_log: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs").mkdir()
    url = imported_store_url(tmp_path)

    code = main(["serve", "--store", url, "--audit-log", audit_log])

    assert code == 2
    assert "is a folder: name a file in it" in capsys.readouterr().err
    # No audit key was written beside the folder.
    assert not list(tmp_path.rglob("*.key"))
    assert uvicorn_calls.calls == 0


def test_serve_audit_log_key_file_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uvicorn_calls: UvicornCalls
) -> None:
    url = imported_store_url(tmp_path)
    key = tmp_path / "audit.jsonl.key"

    code = main(["serve", "--store", url, "--audit-log", str(key)])

    assert code == 2
    assert "names the log's key or head file" in capsys.readouterr().err
    assert not (tmp_path / "audit.jsonl.key.key").exists()
    assert uvicorn_calls.calls == 0


def test_audit_verify_missing_folder_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "nowhere" / "audit.jsonl"

    assert main(["audit", "verify", "--audit-log", str(log)]) == 2
    assert f"audit log folder {log.parent} not found" in capsys.readouterr().err
