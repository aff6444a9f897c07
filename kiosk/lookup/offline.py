"""Offline copy: a local SQLite replica of the list, synced from the change feed.

The copy remembers the service's data version and when it last synced. Its
HIT and POSSIBLE answers always stand (an officer verifies them), but once
the last sync is older than `max_age` a NO_HIT becomes UNKNOWN: the copy can
no longer vouch that a document was not reported since.

A copy belongs to the service URL it was synced from. Opened for another
URL (the kiosk was pointed at another service), it is treated as never
synced until a sync from the new service replaces its records, because
another service's NO_HIT says nothing about this one's list.

Sync applies each change page in its own transaction and records the new
service version afterwards. A kill between the two only makes the next sync
apply that page again, which is harmless: adds replace, and deletes of
records already gone are skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from backend.errors import BackendError, ImportFailed
from backend.records import DocumentKey, LookupAnswer, Result, fold_number, unknown
from backend.store.base import Change, ChangePage, Row, record_to_row
from backend.store.sqlite import SQLiteStore
from kiosk.errors import LookupFailed
from kiosk.lookup.base import BackendState, BackendStatus

logger = logging.getLogger(__name__)

SOURCE = "offline"


class ChangeFeed(Protocol):
    def changes(
        self, since: str | None, cursor: int = 0, limit: int = 10_000
    ) -> ChangePage: ...


class OfflineCopy:
    """Local replica; implements LookupClient and can sync from a ChangeFeed."""

    def __init__(
        self,
        path: Path,
        *,
        max_age: dt.timedelta = dt.timedelta(hours=24),
        service_url: str | None = None,
    ) -> None:
        """`service_url` is the lookup service this copy is synced from;
        None keeps whatever the copy was bound to (tests and tools)."""
        self.path = path
        self.max_age = max_age
        self.service_url = service_url.rstrip("/") if service_url else None
        self._store = SQLiteStore(path)
        self._lock = threading.Lock()
        conn = self._meta()
        try:
            with conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS replica"
                    " (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
        finally:
            conn.close()
        self._bind()

    def _bind(self) -> None:
        if self.service_url is None:
            return
        bound = self._read_meta().get("service_url")
        if bound == self.service_url:
            return
        if self._read_meta().get("service_version") is not None:
            # Records stay until the next sync's snapshot replaces them, but
            # with no version or sync time no lookup uses them.
            logger.warning(
                "offline copy %s was synced from another service; it is "
                "discarded until a sync from %s",
                self.path,
                self.service_url,
            )
        conn = self._meta()
        try:
            with conn:
                conn.execute(
                    "DELETE FROM replica WHERE key IN ('service_version', 'synced_at')"
                )
                conn.execute(
                    "INSERT INTO replica (key, value) VALUES ('service_url', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (self.service_url,),
                )
        finally:
            conn.close()

    def _meta(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _read_meta(self) -> dict[str, str]:
        conn = self._meta()
        try:
            return dict(conn.execute("SELECT key, value FROM replica").fetchall())
        finally:
            conn.close()

    def _write_meta(self, **values: str) -> None:
        conn = self._meta()
        try:
            with conn:
                conn.executemany(
                    "INSERT INTO replica (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    list(values.items()),
                )
        finally:
            conn.close()

    # -- state -----------------------------------------------------------

    @property
    def service_version(self) -> str | None:
        return self._read_meta().get("service_version")

    def synced_at(self) -> dt.datetime | None:
        value = self._read_meta().get("synced_at")
        return dt.datetime.fromisoformat(value) if value else None

    def age(self, now: dt.datetime | None = None) -> dt.timedelta | None:
        """Return the time since the last successful sync, or None if never synced."""
        synced = self.synced_at()
        if synced is None:
            return None
        return (now or dt.datetime.now(dt.UTC)) - synced

    # -- sync ------------------------------------------------------------

    def sync(self, feed: ChangeFeed) -> str:
        """Bring the copy up to the service's version; return that version.

        Raises LookupFailed when the feed fails or comes from another
        service than the one the copy is bound to; the copy keeps its data.
        """
        feed_url = getattr(feed, "base_url", None)
        if (
            self.service_url is not None
            and isinstance(feed_url, str)
            and feed_url.rstrip("/") != self.service_url
        ):
            raise LookupFailed(
                f"offline copy {self.path} is bound to {self.service_url}, not to "
                f"{feed_url}; open it with the URL it is synced from"
            )
        with self._lock:
            since = self.service_version
            first = feed.changes(since)
            if first.reset:
                version = self._load_snapshot(feed, first)
            else:
                version = self._apply_deltas(feed, since, first)
            now = dt.datetime.now(dt.UTC).isoformat()
            self._write_meta(service_version=version, synced_at=now)
        logger.info("offline copy synced to version %s", version)
        return version

    def _load_snapshot(self, feed: ChangeFeed, first: ChangePage) -> str:
        first_since = self.service_version

        def rows() -> Iterator[tuple[int, Row]]:
            page = first
            line = 0
            while True:
                for record in page.added:
                    line += 1
                    yield line, record_to_row(record)
                if page.next_cursor is None:
                    return
                page = feed.changes(first_since, cursor=page.next_cursor)
                if page.version != first.version or not page.reset:
                    # The service imported again mid-way; the transaction
                    # rolls back and the next sync starts over.
                    raise LookupFailed("service data changed during the snapshot")

        try:
            if not first.added:
                raise LookupFailed(
                    "the service's list is empty; the offline copy is kept"
                )
            self._store.import_full(rows())
        except (BackendError, ImportFailed) as exc:
            raise LookupFailed(f"offline copy snapshot failed: {exc}") from exc
        return first.version

    def _apply_deltas(
        self, feed: ChangeFeed, since: str | None, first: ChangePage
    ) -> str:
        page = first
        while True:
            changes: list[tuple[int, Change]] = []
            for record in page.added:
                changes.append((len(changes) + 1, Change("add", record_to_row(record))))
            for key in page.deleted:
                row: Row = (
                    key.issuing_state,
                    key.document_type,
                    key.document_number,
                    fold_number(key.document_number),
                    "",
                    "",
                    "",
                    "",
                    None,
                    None,
                )
                changes.append((len(changes) + 1, Change("delete", row)))
            if changes:
                try:
                    self._store.import_delta(changes)
                except BackendError as exc:
                    raise LookupFailed(f"offline copy update failed: {exc}") from exc
            if page.next_cursor is None:
                return page.version
            page = feed.changes(since, cursor=page.next_cursor)

    # -- LookupClient ----------------------------------------------------

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        return self.lookup_many([key])[0]

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        meta = self._read_meta()
        version = meta.get("service_version")
        synced = meta.get("synced_at")
        if self.service_url is not None and meta.get("service_url") != (
            self.service_url
        ):
            # Another process rebound the file to another service.
            return [
                unknown("offline copy belongs to another lookup service", source=SOURCE)
                for _ in keys
            ]
        if version is None or synced is None:
            return [
                unknown(
                    "offline copy was never synced from this lookup service",
                    source=SOURCE,
                )
                for _ in keys
            ]
        age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(synced)
        try:
            answers = self._store.lookup_many(keys)
        except BackendError as exc:
            return [unknown(f"offline copy failed: {exc}", source=SOURCE) for _ in keys]
        stale = age > self.max_age
        result: list[LookupAnswer] = []
        for answer in answers:
            if stale and answer.result is Result.NO_HIT:
                result.append(
                    unknown(
                        f"offline copy is {_hours(age)} old, over the limit of "
                        f"{_hours(self.max_age)}; no NO_HIT can be given",
                        source=SOURCE,
                    )
                )
            else:
                result.append(
                    dataclasses.replace(answer, data_version=version, source=SOURCE)
                )
        return result

    def status(self) -> BackendStatus:
        meta = self._read_meta()
        synced = meta.get("synced_at")
        if synced is None:
            return BackendStatus(
                BackendState.UNREACHABLE, None, "offline copy never synced"
            )
        age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(synced)
        stale = " (stale: NO_HIT shown as UNKNOWN)" if age > self.max_age else ""
        return BackendStatus(
            BackendState.OFFLINE,
            meta.get("service_version"),
            f"offline copy, synced {_hours(age)} ago{stale}",
            data_age=age,
        )

    def close(self) -> None:
        self._store.close()


def _hours(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{delta.total_seconds() / 60:.0f} min"
    return f"{hours:.1f} h"
