"""Audit log: chain verification, tampering, torn writes and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.audit import AuditError, AuditLog, load_or_create_key, verify
from backend.cli import main
from backend.records import DocumentKey, Result

KEY = DocumentKey.create("UTO", "P", "L898902C3")


def write_entries(path: Path, count: int) -> bytes:
    log = AuditLog.open(path)
    for i in range(count):
        log.record(
            terminal="T-1",
            request_id=f"r{i}",
            data_version="1-20240101T000000Z",
            queries=[(KEY, Result.NO_HIT)],
        )
    log.close()
    return load_or_create_key(path.with_name(path.name + ".key"))


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_intact_log_verifies(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = write_entries(log, 5)
    report = verify(log, key)
    assert report.ok, report.problems
    assert report.entries == 5
    assert "L898902C3" not in log.read_text()


def test_reopen_continues_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_entries(log, 2)
    key = write_entries(log, 2)
    report = verify(log, key)
    assert report.ok, report.problems
    assert [json.loads(line)["seq"] for line in lines_of(log)] == [1, 2, 3, 4]


def test_edited_entry_detected(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = write_entries(log, 4)
    lines = lines_of(log)
    lines[1] = lines[1].replace("NO_HIT", "HIT")
    log.write_text("".join(lines))
    report = verify(log, key)
    assert not report.ok
    assert any("line 2: MAC mismatch" in p for p in report.problems)


def test_removed_middle_entry_detected(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = write_entries(log, 4)
    lines = lines_of(log)
    del lines[2]
    log.write_text("".join(lines))
    report = verify(log, key)
    assert not report.ok
    assert any("chain broken" in p for p in report.problems)
    assert any("entries removed" in p for p in report.problems)


def test_removed_last_entries_detected(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = write_entries(log, 4)
    log.write_text("".join(lines_of(log)[:2]))
    report = verify(log, key)
    assert not report.ok
    assert any("removed from the end" in p for p in report.problems)


def test_forged_entry_without_key_detected(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = write_entries(log, 2)
    other = tmp_path / "other.jsonl"
    write_entries(other, 3)
    # Replace the whole log with a well-formed chain made under another key.
    log.write_text(other.read_text())
    report = verify(log, key)
    assert not report.ok


def test_torn_last_line_is_cut_on_open(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = write_entries(log, 3)
    with log.open("a") as handle:
        handle.write('{"seq": 4, "time": "2024')
    write_entries(log, 1)
    report = verify(log, key)
    assert report.ok, report.problems
    assert report.entries == 4


def test_cli_verify_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    write_entries(log, 3)
    assert main(["audit", "verify", "--log", str(log)]) == 0
    assert "3 entries, chain intact" in capsys.readouterr().out
    lines = lines_of(log)
    log.write_text(lines[0] + lines[2])
    assert main(["audit", "verify", "--log", str(log)]) == 1
    assert "chain broken" in capsys.readouterr().out
    missing_key = main(
        ["audit", "verify", "--log", str(log), "--key", str(tmp_path / "x")]
    )
    assert missing_key == 2


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from backend.audit import AuditLog
    from backend.records import DocumentKey, Result
    log = AuditLog.open(Path(sys.argv[1]))
    key = DocumentKey.create("UTO", "P", "123456")
    i = 0
    while True:
        i += 1
        seq = log.record(terminal="T", request_id=f"r{i}", data_version="v",
                         queries=[(key, Result.NO_HIT)] * 50)
        print(seq, flush=True)
    """
)


def test_kill_during_writes_keeps_acknowledged(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = 0
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    # Reopening cuts a torn line, if the kill left one.
    AuditLog.open(log).close()
    key = load_or_create_key(tmp_path / "audit.jsonl.key")
    report = verify(log, key)
    assert report.ok, report.problems
    assert report.entries >= acknowledged


def test_entry_lists_keyed_digests(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path / "audit.jsonl")
    other = DocumentKey.create("D", "P", "C01X00T47")
    log.record(
        terminal="T-1",
        request_id="r1",
        data_version="1-20240101T000000Z",
        queries=[(KEY, Result.HIT), (other, Result.NO_HIT)],
    )
    log.close()
    entry = json.loads((tmp_path / "audit.jsonl").read_text())
    assert entry["queries"] == [
        [log.digest(KEY), "HIT"],
        [log.digest(other), "NO_HIT"],
    ]
    assert log.digest(KEY) != log.digest(other)
    assert "L898902C3" not in (tmp_path / "audit.jsonl").read_text()


def test_entry_in_earlier_key_order_verifies(tmp_path: Path) -> None:
    # Lines written before the MAC payload became the line itself had their
    # keys in insertion order with "mac" last; such logs must still verify.
    log = tmp_path / "audit.jsonl"
    key = write_entries(log, 2)
    reordered = []
    for line in lines_of(log):
        entry = json.loads(line)
        mac = entry.pop("mac")
        reordered.append(json.dumps({**dict(reversed(entry.items())), "mac": mac}))
    log.write_text("\n".join(reordered) + "\n")
    report = verify(log, key)
    assert report.ok, report.problems
    assert report.entries == 2


def test_second_writer_is_rejected(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    first = AuditLog.open(log)

    with pytest.raises(AuditError, match="in use by another process"):
        AuditLog.open(log)

    first.close()
    write_entries(log, 2)
    assert verify(log, load_or_create_key(log.with_name("audit.jsonl.key"))).ok


def test_lock_ends_with_killed_writer(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from backend.audit import AuditLog
                AuditLog.open(Path({str(log)!r}))
                print("ready", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(AuditError, match="give each service its own"):
            AuditLog.open(log)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    key = write_entries(log, 3)
    report = verify(log, key)
    assert report.ok, report.problems
    assert report.entries == 3
