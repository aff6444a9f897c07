"""Store-and-forward queue of checks that were not answered online.

A check answered from the offline copy, or left UNKNOWN, is written to a
SQLite file before the kiosk moves on, and checked again online when the
link returns. A HIT or POSSIBLE found late goes to the `on_late_hit`
callback, which must alert the officer.

The file holds document keys, which are personal data: it is created with
mode 0600 and a row is deleted once its recheck has an online answer.

Kiosk processes pointed at different lookup services share one file, so
each row stores the service URL it was queued for, and a queue opened
for a service lists and rechecks only that service's rows. A check queued
for service B and rechecked against service A could otherwise be removed
on A's NO_HIT while B lists the document.

The look-alike readings of a document that the service did not answer
are kept on the document's row, written with it in one transaction, not
queued one by one. A scan during an outage adds one row, not up to 257,
and a late match on a look-alike comes back under the document's own key,
as a POSSIBLE.

NOTE: a kiosk process of a version before the variants column rechecks a
row by its key alone and removes it, dropping its look-alikes. Kiosk
processes sharing a queue file should run the same version.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.records import DocumentKey, LookupAnswer, Result
from kiosk.errors import LookupFailed
from kiosk.lookup.base import LookupClient, merge_lookalikes

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueuedCheck:
    """A check waiting for an online answer."""

    id: int
    key: DocumentKey
    queued_at: dt.datetime
    reason: str
    first_result: Result
    attempts: int
    # Look-alike readings of the document, rechecked with it.
    variants: tuple[DocumentKey, ...] = ()


LateHitCallback = Callable[[QueuedCheck, LookupAnswer], None]


class RecheckQueue:
    """Durable queue; safe to use from several threads of one process."""

    def __init__(
        self,
        path: Path,
        *,
        on_late_hit: LateHitCallback | None = None,
        service_url: str | None = None,
    ) -> None:
        """Open or create the queue at `path` for the service at `service_url`.

        None, for tests and tools, lists and rechecks the rows of every
        service.
        """
        self.path = path
        self.on_late_hit = on_late_hit
        self.service_url = service_url.rstrip("/") if service_url else None
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a queued check survives a power loss, not only a kill.
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._conn:
                # AUTOINCREMENT: an id is never given again, so "late
                # re-check 12" names one check even after the queue emptied.
                # Queue files created before it keep reusing ids.
                self._conn.execute(
                    """CREATE TABLE IF NOT EXISTS rechecks (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        issuing_state TEXT NOT NULL,
                        document_type TEXT NOT NULL,
                        document_number TEXT NOT NULL,
                        queued_at TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        first_result TEXT NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        last_error TEXT,
                        service_url TEXT,
                        variants TEXT
                    )"""
                )
                columns = {
                    row[1] for row in self._conn.execute("PRAGMA table_info(rechecks)")
                }
                for column in ("service_url", "variants"):
                    if column not in columns:
                        self._conn.execute(
                            f"ALTER TABLE rechecks ADD COLUMN {column} TEXT"
                        )
        except sqlite3.Error as exc:
            raise LookupFailed(f"cannot open the recheck queue {path}: {exc}") from exc

    def enqueue(
        self,
        key: DocumentKey,
        answer: LookupAnswer,
        variants: Sequence[DocumentKey] = (),
    ) -> int:
        """Queue a key, and the look-alike readings `variants` with it, for an
        online recheck; return its queue id once on disk."""
        reason = answer.reason or f"answered {answer.result.value} by {answer.source}"
        with self._lock:
            try:
                with self._conn:
                    cursor = self._conn.execute(
                        "INSERT INTO rechecks (issuing_state, document_type,"
                        " document_number, queued_at, reason, first_result,"
                        " service_url, variants) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            key.issuing_state,
                            key.document_type,
                            key.document_number,
                            dt.datetime.now(dt.UTC).isoformat(),
                            reason,
                            answer.result.value,
                            self.service_url,
                            _dump_variants(variants) if variants else None,
                        ),
                    )
            except sqlite3.Error as exc:
                raise LookupFailed(
                    f"cannot queue a recheck in {self.path}: {exc}"
                ) from exc
        queue_id = int(cursor.lastrowid or 0)
        logger.info(
            "queued recheck %d (%s) with %d look-alikes",
            queue_id,
            answer.result.value,
            len(variants),
        )
        return queue_id

    def _mine(self) -> tuple[str, tuple[str, ...]]:
        """Return the WHERE clause and parameters that select this queue's rows."""
        if self.service_url is None:
            return "1 = 1", ()
        # NOTE: rows queued before rows named their service have a NULL
        # service_url. Every service rechecks them, as before, so a NO_HIT
        # from another service than the one they were queued for can
        # remove them.
        return "(service_url = ? OR service_url IS NULL)", (self.service_url,)

    def pending(self) -> list[QueuedCheck]:
        where, params = self._mine()
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, issuing_state, document_type, document_number, queued_at,"
                f" reason, first_result, attempts, variants FROM rechecks WHERE {where}"
                " ORDER BY id",
                params,
            ).fetchall()
        return [
            QueuedCheck(
                id=int(row[0]),
                key=DocumentKey(row[1], row[2], row[3]),
                queued_at=dt.datetime.fromisoformat(row[4]),
                reason=str(row[5]),
                first_result=Result(row[6]),
                attempts=int(row[7]),
                variants=_load_variants(row[8]),
            )
            for row in rows
        ]

    def __len__(self) -> int:
        where, params = self._mine()
        with self._lock:
            row = self._conn.execute(
                f"SELECT count(*) FROM rechecks WHERE {where}", params
            ).fetchone()
        return int(row[0])

    def drain(self, online: LookupClient, *, batch: int = 500) -> int:
        """Recheck queued checks online; return how many got an answer.

        Up to `batch` keys go out, look-alikes included, and at least one
        check. A check whose key or any look-alike is still UNKNOWN stays
        queued with one more attempt. A look-alike's match comes back as a
        POSSIBLE for the check's key. A check is removed only after the
        late-hit callback returned, so a crash in between reports the hit
        again rather than never.
        """
        checks: list[QueuedCheck] = []
        size = 0
        for check in self.pending():
            if checks and size + 1 + len(check.variants) > batch:
                break
            checks.append(check)
            size += 1 + len(check.variants)
        if not checks:
            return 0
        answers = online.lookup_many(
            [key for check in checks for key in (check.key, *check.variants)]
        )
        answered = 0
        start = 0
        for check in checks:
            own, *variant_answers = answers[start : start + 1 + len(check.variants)]
            start += 1 + len(check.variants)
            answer = (
                own
                if own.result is not Result.NO_HIT
                else merge_lookalikes(own, variant_answers)
            )
            if answer.result is Result.UNKNOWN:
                self._note_failure(check, answer.reason or "UNKNOWN")
                continue
            if answer.result in (Result.HIT, Result.POSSIBLE):
                logger.warning(
                    "late %s on recheck %d queued at %s",
                    answer.result.value,
                    check.id,
                    check.queued_at.isoformat(),
                )
                if self.on_late_hit is not None:
                    self.on_late_hit(check, answer)
            self._remove(check.id)
            answered += 1
        logger.info("rechecked %d of %d queued checks", answered, len(checks))
        return answered

    def _note_failure(self, check: QueuedCheck, reason: str) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE rechecks SET attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (reason[:200], check.id),
            )

    def _remove(self, queue_id: int) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM rechecks WHERE id = ?", (queue_id,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _dump_variants(variants: Sequence[DocumentKey]) -> str:
    return json.dumps(
        [[v.issuing_state, v.document_type, v.document_number] for v in variants]
    )


def _load_variants(text: str | None) -> tuple[DocumentKey, ...]:
    if not text:
        return ()
    return tuple(DocumentKey(*parts) for parts in json.loads(text))
