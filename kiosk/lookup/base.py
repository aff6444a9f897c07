"""The interface every lookup client implements: embedded, online, offline."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backend.records import DocumentKey, LookupAnswer


class BackendState(enum.StrEnum):
    EMBEDDED = "embedded"
    ONLINE = "online"
    OFFLINE = "offline"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """What the waiting screen shows about the lookup backend."""

    state: BackendState
    data_version: str | None
    description: str
    # Age of the offline copy or embedded data, when known.
    data_age: dt.timedelta | None = None
    queued_rechecks: int = 0


class LookupClient(Protocol):
    """Checks document keys. Never raises for a failed check: it returns an
    UNKNOWN answer with the reason, so no caller can mistake it for NO_HIT."""

    def lookup(self, key: DocumentKey) -> LookupAnswer: ...

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]: ...

    def status(self) -> BackendStatus: ...

    def close(self) -> None: ...


def create_private(path: Path) -> None:
    """Create `path` with mode 0600 unless it exists.

    SQLite's unix VFS creates the -wal and -shm files of a database with the
    mode of the database file, so they get 0600 too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
