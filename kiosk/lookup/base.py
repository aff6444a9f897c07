"""The interface every lookup client implements: embedded, online, offline."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backend.records import DocumentKey, LookupAnswer, Result


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

    def lookup_lookalikes(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> list[LookupAnswer]:
        """Look up the look-alike readings `variants` of the document `key`.

        Answers as lookup_many(variants). A client that queues unanswered
        checks queues these with the document, not one by one.
        """
        ...

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


def merge_lookalikes(
    answer: LookupAnswer, variant_answers: Sequence[LookupAnswer]
) -> LookupAnswer:
    """Fold the answers for a document's look-alike readings into its own.

    A HIT or POSSIBLE among them makes the document's answer a POSSIBLE
    with their records, for the officer to compare; else an UNKNOWN among
    them makes it UNKNOWN; else the answer stands.
    """
    records = tuple(
        record
        for variant in variant_answers
        if variant.result in (Result.HIT, Result.POSSIBLE)
        for record in variant.records
    )
    if records:
        return dataclasses.replace(
            answer,
            result=Result.POSSIBLE,
            records=records,
            reason="a look-alike reading of the document matches a reported "
            "document; compare the record with the document",
        )
    failed = [v for v in variant_answers if v.result is Result.UNKNOWN]
    if failed:
        return dataclasses.replace(
            answer,
            result=Result.UNKNOWN,
            reason=f"look-alike readings could not be checked: {failed[0].reason}",
        )
    return answer
