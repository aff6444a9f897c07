"""Damaged kiosk-local files: a garbled offline copy or re-check queue is set
aside and replaced, so the kiosk keeps checking documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.records import DocumentKey, Result
from kiosk.cli import main
from kiosk.errors import LookupFailed
from kiosk.lookup.offline import copy_path
from kiosk.lookup.resilient import ResilientLookup
from tests.lookup.conftest import SEED_LINES, free_port, serve_list
from tests.lookup.test_offline_binding import kiosk

KEY = DocumentKey.create("UTO", "P", "L898902C3")
# A loopback port that nothing listens on.
CLOSED_URL = f"http://127.0.0.1:{free_port()}"
GARBAGE = bytes(range(256)) * 20


def open_kiosk(url: str, folder: Path, notices: list[str]) -> ResilientLookup:
    return kiosk(url, folder, on_notice=notices.append)


def test_damaged_queue_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    folder.mkdir()
    queue_file = folder / "rechecks.sqlite3"
    queue_file.write_bytes(GARBAGE)
    notices: list[str] = []
    client = open_kiosk(CLOSED_URL, folder, notices)
    try:
        assert len(notices) == 1
        assert "re-check queue" in notices[0]
        assert "renamed to rechecks.sqlite3.corrupt-" in notices[0]
        moved = list(folder.glob("rechecks.sqlite3.corrupt-*"))
        assert len(moved) == 1
        # The damaged file is kept as it was, for inspection.
        assert moved[0].read_bytes() == GARBAGE
        # The new queue takes the check that the closed port left undone.
        answer = client.lookup(KEY)
        assert answer.result is Result.UNKNOWN
        assert client.queue is not None
        assert len(client.queue) == 1
    finally:
        client.close()


def test_damaged_offline_copy_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    with serve_list(tmp_path / "svc", SEED_LINES) as service:
        folder.mkdir()
        copy_file = copy_path(folder, service.url)
        copy_file.write_bytes(GARBAGE)
        notices: list[str] = []
        client = open_kiosk(service.url, folder, notices)
        try:
            assert len(notices) == 1
            assert "offline copy" in notices[0]
            assert len(list(folder.glob(copy_file.name + ".corrupt-*"))) == 1
            # Online checks work, and the new copy syncs.
            assert client.lookup(KEY).result is Result.HIT
            client.maintain()
            assert client.offline is not None
            assert client.offline.lookup(KEY).result is Result.HIT
        finally:
            client.close()


def test_unopenable_queue_still_raises(tmp_path: Path) -> None:
    # A folder in the queue's place is not damage that a new file repairs.
    folder = tmp_path / "var"
    (folder / "rechecks.sqlite3").mkdir(parents=True)
    with pytest.raises(LookupFailed, match="cannot open the recheck queue"):
        open_kiosk(CLOSED_URL, folder, [])
    assert not list(folder.glob("*.corrupt-*"))


def test_parse_names_unopenable_queue(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "kiosk.sqlite3").touch()
    (tmp_path / "var" / "rechecks.sqlite3").mkdir()
    (tmp_path / "kiosk.toml").write_text('[kiosk]\nstore_path = "var/kiosk.sqlite3"\n')
    code = main(
        [
            "parse",
            "--config",
            "kiosk.toml",
            "--backend",
            CLOSED_URL,
            "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
            "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot open the recheck queue" in err
    assert "no document was checked" in err
