"""Append-only, hash-chained audit log of every lookup.

One JSON line per request: sequence number, UTC time, terminal, request id,
data version and, per document, a keyed BLAKE2b digest of the document key
with the result. The document number itself is never written. Each line
carries `prev` (the previous line's `mac`) and `mac`, an HMAC-SHA256 under
the audit key over the line without `mac`. Editing, reordering or removing a
line breaks the chain. A `.head` file beside the log names the last
acknowledged line, so removing lines at the end is detected too.

Lines are written with one os.write on an O_APPEND descriptor, so a written
line survives a kill of the process. With `fsync=True` it also survives a
power loss, at the cost of one disk flush per request.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import BackendError
from backend.records import DocumentKey, Result

logger = logging.getLogger(__name__)

_GENESIS = "0" * 64
# Size of the head record; the JSON of a sequence number and a MAC fits well.
_HEAD_BYTES = 160


class AuditError(BackendError):
    """The audit log cannot be written or read."""


def load_or_create_key(path: Path) -> bytes:
    """Return the audit key stored at `path`, creating a random one (mode 0600)."""
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the audit key {path}: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process created it first; use theirs.
        return load_or_create_key(path)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    logger.info("created a new audit key at %s", path)
    return key


def _mac(key: bytes, entry: dict[str, object]) -> str:
    payload = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


class AuditLog:
    """Writer of the audit log; safe to share between threads of one process.

    NOTE: one writer process per log file. Two services writing the same file
    would fork the chain, which `verify` then reports as an edit.
    """

    def __init__(self, path: Path, key: bytes, *, fsync: bool = False) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self._key = key
        # Copying a keyed hash state skips hashing the key block again for
        # every document: about 40% less time per digest.
        self._digest_base = hashlib.blake2b(key=key[:32], digest_size=16)
        self._fsync = fsync
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {path}: {exc}") from exc
        try:
            # Each chain has one writer. A second process appending to the
            # same file would interleave two chains, which verify reports as
            # tampering. The lock ends with the descriptor, also on a kill.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            raise AuditError(
                f"audit log {path} is in use by another process, such as another "
                "'kiosk-backend serve'; give each service its own --audit-log"
            ) from exc
        try:
            self._head_fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            os.close(self._fd)
            raise AuditError(f"cannot open the audit log {path}: {exc}") from exc
        try:
            self._seq, self._prev = self._recover()
        except BaseException:
            os.close(self._fd)
            os.close(self._head_fd)
            raise
        logger.info("audit log %s opened at entry %d", path, self._seq)

    @classmethod
    def open(
        cls, path: Path, key_path: Path | None = None, *, fsync: bool = False
    ) -> AuditLog:
        key = load_or_create_key(key_path or path.with_name(path.name + ".key"))
        return cls(path, key, fsync=fsync)

    def _recover(self) -> tuple[int, str]:
        """Return the last sequence number and MAC, cutting a torn last line.

        A line without its newline was being written when the process died,
        so it was never acknowledged to a client.
        """
        try:
            with self.path.open("rb+") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size == 0:
                    return 0, _GENESIS
                tail_start = max(0, size - 65536)
                handle.seek(tail_start)
                tail = handle.read()
                if not tail.endswith(b"\n"):
                    cut = tail.rfind(b"\n") + 1
                    handle.truncate(tail_start + cut)
                    logger.warning("audit log %s: removed a torn last line", self.path)
                    tail = tail[:cut]
                lines = tail.splitlines()
                if not lines:
                    return 0, _GENESIS
                last = json.loads(lines[-1])
                return int(last["seq"]), str(last["mac"])
        except FileNotFoundError:
            return 0, _GENESIS
        except (OSError, ValueError, KeyError) as exc:
            raise AuditError(f"cannot resume the audit log {self.path}: {exc}") from exc

    def digest(self, key: DocumentKey) -> str:
        """Return the keyed digest of a document key, stable for one audit key."""
        text = f"{key.issuing_state}|{key.document_type}|{key.document_number}"
        state = self._digest_base.copy()
        state.update(text.encode())
        return state.hexdigest()

    def record(
        self,
        *,
        terminal: str,
        request_id: str,
        data_version: str | None,
        queries: Sequence[tuple[DocumentKey, Result]],
    ) -> int:
        """Append one entry and return its sequence number.

        Returns only after the line is in the file, so a caller may then
        answer the client. Raises AuditError if the write fails.
        """
        digest = self.digest
        items = [[digest(key), result.value] for key, result in queries]
        with self._lock:
            entry: dict[str, object] = {
                "seq": self._seq + 1,
                "time": dt.datetime.now(dt.UTC).isoformat(),
                "terminal": terminal,
                "request_id": request_id,
                "data_version": data_version,
                "queries": items,
                "prev": self._prev,
            }
            # The line is the MAC's own payload with "mac" added at the end,
            # so the entry, which can list thousands of queries, is encoded
            # once. `verify` parses the line, so the key order does not matter.
            payload = json.dumps(entry, sort_keys=True, separators=(",", ":"))
            mac = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()
            line = f'{payload[:-1]},"mac":"{mac}"}}\n'.encode()
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(f"short write: {written} of {len(line)} bytes")
                if self._fsync:
                    os.fsync(self._fd)
                self._write_head(self._seq + 1, mac)
            except OSError as exc:
                raise AuditError(
                    f"writing the audit log {self.path} failed: {exc}"
                ) from exc
            self._seq += 1
            self._prev = mac
            return self._seq

    def _write_head(self, seq: int, mac: str) -> None:
        # One fixed-size pwrite at offset 0 instead of write-and-rename: a
        # rename costs about a millisecond on some file systems, per request.
        # The text of json.dumps({"seq": seq, "mac": mac}), without its cost.
        record = f'{{"seq": {seq}, "mac": "{mac}"}}'.encode()
        os.pwrite(self._head_fd, record.ljust(_HEAD_BYTES - 1) + b"\n", 0)

    def close(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            os.close(self._fd)
            os.close(self._head_fd)
            self._fd = self._head_fd = -1


def worker_log_paths(path: Path) -> list[Path]:
    """Return the per-worker logs written beside `path` by `serve --workers`."""
    return sorted(path.parent.glob(f"{path.stem}.worker-*{path.suffix}"))


@dataclass
class VerifyReport:
    """Result of checking an audit log: entry count and the problems found."""

    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: Path, key: bytes) -> VerifyReport:
    """Check every line's MAC, the chain and the head file of an audit log.

    NOTE: someone holding the audit key can cut lines from the end and
    rewrite the head to match, and that is not detected. Keep the key off
    the log's host, or copy the head elsewhere, to catch it.
    """
    report = VerifyReport()
    prev = _GENESIS
    expected_seq = 1
    recent: dict[int, str] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        report.problems.append(f"cannot read {path}: {exc.strerror}")
        return report
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                report.problems.append(f"line {number}: incomplete line")
                break
            try:
                entry = json.loads(raw)
                mac = entry.pop("mac")
            except (ValueError, KeyError, AttributeError):
                report.problems.append(f"line {number}: not a valid audit entry")
                prev = ""
                continue
            if entry.get("seq") != expected_seq:
                report.problems.append(
                    f"line {number}: sequence {entry.get('seq')}, expected "
                    f"{expected_seq}: entries removed or reordered"
                )
            if entry.get("prev") != prev:
                report.problems.append(
                    f"line {number}: chain broken, the previous entry was "
                    "edited or removed"
                )
            if not hmac.compare_digest(str(mac), _mac(key, entry)):
                report.problems.append(f"line {number}: MAC mismatch, entry edited")
            prev = str(mac)
            expected_seq = int(entry.get("seq", expected_seq)) + 1
            recent[expected_seq - 1] = prev
            recent.pop(expected_seq - 3, None)
            report.entries += 1
    _check_head(path, report, expected_seq - 1, recent)
    return report


def _check_head(
    path: Path, report: VerifyReport, last_seq: int, recent: dict[int, str]
) -> None:
    head_path = path.with_name(path.name + ".head")
    try:
        text = head_path.read_text(encoding="ascii")
        if not text.strip():
            raise FileNotFoundError(head_path)
        head = json.loads(text)
        head_seq = int(head["seq"])
        head_mac = str(head["mac"])
    except FileNotFoundError:
        if report.entries:
            report.problems.append(f"{head_path} is missing or empty")
        return
    except (OSError, ValueError, KeyError) as exc:
        report.problems.append(f"{head_path} is unreadable: {exc}")
        return
    # The log may be one entry ahead of the head: the process can die between
    # appending a line and updating the head.
    if head_seq > last_seq:
        report.problems.append(
            f"the head names entry {head_seq} but the log ends at {last_seq}: "
            "entries were removed from the end"
        )
    elif head_seq < last_seq - 1:
        report.problems.append(
            f"the log has entries after {head_seq} that the head does not name"
        )
    elif head_seq > 0 and recent.get(head_seq) != head_mac:
        report.problems.append(
            f"entry {head_seq} does not match the head: it was edited or replaced"
        )
