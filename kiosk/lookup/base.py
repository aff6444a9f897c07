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

from backend.records import DocumentKey, LookupAnswer, Record, Result


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

    def lookup_document(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> tuple[LookupAnswer, list[LookupAnswer]]:
        """Look up a document's key, then its look-alike readings `variants`
        unless the key is a HIT or POSSIBLE.

        Returns the key's answer and the variants' answers, which are empty
        when the variants were not looked up. A client that queues
        unanswered checks queues the key and its unanswered variants as one
        entry.
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


def needs_lookalikes(answer: LookupAnswer) -> bool:
    """Return whether a document's look-alike readings must be looked up
    after its key got `answer`: after a NO_HIT or an UNKNOWN."""
    return answer.result in (Result.NO_HIT, Result.UNKNOWN)


def lookup_document_in_turn(
    client: LookupClient, key: DocumentKey, variants: Sequence[DocumentKey]
) -> tuple[LookupAnswer, list[LookupAnswer]]:
    """Do what `LookupClient.lookup_document` does with two plain lookups,
    for clients that queue nothing."""
    answer = client.lookup(key)
    if not variants or not needs_lookalikes(answer):
        return answer, []
    return answer, client.lookup_many(variants)


# Reason of a POSSIBLE found through a look-alike reading of the number.
LOOKALIKE_MATCH = (
    "a look-alike reading of the document matches a reported document; "
    "compare the record with the document"
)


def merge_lookalikes(
    answer: LookupAnswer, variant_answers: Sequence[LookupAnswer]
) -> LookupAnswer:
    """Fold the answers for a document's look-alike readings into its own
    NO_HIT or UNKNOWN answer.

    A HIT or POSSIBLE among them makes it a POSSIBLE with their records, for
    the officer to compare. Else an UNKNOWN among them makes it UNKNOWN.
    Else a NO_HIT stands, labelled with the offline copy when the variants
    were answered from it while the key was answered online.
    """
    records: list[Record] = []
    for variant in variant_answers:
        if variant.result in (Result.HIT, Result.POSSIBLE):
            # Two readings can fold to the same listed number.
            records.extend(r for r in variant.records if r not in records)
    if records:
        reason = LOOKALIKE_MATCH
        if answer.result is Result.UNKNOWN:
            reason += f". The document's own number was not checked: {answer.reason}"
        return dataclasses.replace(
            answer, result=Result.POSSIBLE, records=tuple(records), reason=reason
        )
    if answer.result is not Result.NO_HIT:
        return answer
    failed = [v for v in variant_answers if v.result is Result.UNKNOWN]
    if failed:
        return dataclasses.replace(
            answer,
            result=Result.UNKNOWN,
            reason=f"look-alike readings could not be checked: {failed[0].reason}",
        )
    other_source = [v for v in variant_answers if v.source != answer.source]
    if other_source:
        first = other_source[0]
        return dataclasses.replace(
            answer,
            source=first.source,
            data_version=first.data_version,
            checked_at=first.checked_at,
            reason=f"look-alike readings of the document number were checked "
            f"against the {first.source} data only",
        )
    return answer
