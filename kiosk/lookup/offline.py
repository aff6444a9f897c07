"""Offline copy: a local SQLite replica of the list, synced from the change feed.

The copy remembers the service's data version and when it last synced. Its
HIT and POSSIBLE answers always stand (an officer verifies them), but once
the last sync is older than `max_age` a NO_HIT becomes UNKNOWN: the copy can
no longer vouch that a document was not reported since.

A copy file belongs to one lookup service, named by its URL. The file is
bound to that URL when it is first opened or synced, and the binding never
changes afterwards, so no sync can write another service's data into it.
A copy opened for another URL returns UNKNOWN and refuses to sync, because
another service's NO_HIT says nothing about this one's list. `copy_path`
gives each service URL its own file, so kiosk processes pointed at
different services never share one.

Sync applies each change page in its own transaction and records the new
service version afterwards. A kill between the two only makes the next sync
apply that page again, which is harmless: adds replace, and deletes of
records already gone are skipped. Processes that sync the same file take
turns through an exclusive lock on `<file>.lock`, so no sync applies its
changes on top of another one's half-done snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from backend.errors import BackendError, ImportFailed
from backend.records import DocumentKey, LookupAnswer, Result, fold_number, unknown
from backend.store.base import Change, ChangePage, Row, record_to_row
from backend.store.sqlite import SQLiteStore
from kiosk.errors import LookupFailed
from kiosk.lookup.base import (
    BackendState,
    BackendStatus,
    create_private,
    lookup_document_in_turn,
)

logger = logging.getLogger(__name__)

SOURCE = "offline"

# Seconds a sync waits for another process's sync of the same file.
SYNC_WAIT_S = 60.0


class ChangeFeed(Protocol):
    """The change feed of one lookup service, named by `base_url`."""

    @property
    def base_url(self) -> str: ...

    def changes(
        self, since: str | None, cursor: int = 0, limit: int = 10_000
    ) -> ChangePage: ...


def normalize_url(url: str) -> str:
    """Return the form of a service URL that bindings compare."""
    return url.rstrip("/")


def copy_path(folder: Path, service_url: str) -> Path:
    """Return the offline copy file of the service at `service_url` in `folder`.

    The name contains a hash of the URL, so each service gets its own file.
    """
    digest = hashlib.sha256(normalize_url(service_url).encode()).hexdigest()
    return folder / f"offline-{digest[:16]}.sqlite3"


class OfflineCopy:
    """Local replica; implements LookupClient and can sync from a ChangeFeed."""

    def __init__(
        self,
        path: Path,
        *,
        max_age: dt.timedelta = dt.timedelta(hours=24),
        service_url: str | None = None,
        sync_wait_s: float = SYNC_WAIT_S,
    ) -> None:
        """Open the copy at `path`, or create it with mode 0600.

        `service_url` is the lookup service this copy is synced from, and a
        file not yet bound is bound to it. None, for tests and tools, takes
        the file's binding as it is, and the first sync binds an unbound
        file to its feed's URL. `sync_wait_s` is how long a sync waits for
        another process's sync of the same file before it fails.
        """
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.max_age = max_age
        self.service_url = normalize_url(service_url) if service_url else None
        self.sync_wait_s = sync_wait_s
        # The copy's records contain document numbers.
        create_private(path)
        self._store = SQLiteStore(path)
        self._lock = threading.Lock()
        with self._transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS replica"
                " (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
        if self.service_url is not None:
            bound = self._claim(self.service_url)
            if bound != self.service_url:
                logger.warning(
                    "offline copy %s contains the data of %s, not of %s; it "
                    "is not used",
                    self.path,
                    bound,
                    self.service_url,
                )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside BEGIN IMMEDIATE, committed on success."""
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _claim(self, url: str) -> str:
        """Bind the file to `url` unless it is bound already; return its binding.

        Reading and writing the binding in one write transaction makes the
        first binding win when two processes open a new file at once.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT value FROM replica WHERE key = 'service_url'"
            ).fetchone()
            if row is not None:
                return str(row[0])
            # Records synced before the file had a binding may come from
            # any service, so without a version or sync time no lookup
            # uses them until a sync replaces them.
            conn.execute(
                "DELETE FROM replica WHERE key IN ('service_version', 'synced_at')"
            )
            conn.execute(
                "INSERT INTO replica (key, value) VALUES ('service_url', ?)", (url,)
            )
            return url

    def _read_meta(self) -> dict[str, str]:
        conn = sqlite3.connect(self.path, timeout=10.0)
        try:
            return dict(conn.execute("SELECT key, value FROM replica").fetchall())
        finally:
            conn.close()

    def _write_meta(self, **values: str) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO replica (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def _foreign(self, meta: dict[str, str]) -> str | None:
        """Return the reason the copy must not be used for `service_url`, or None."""
        if self.service_url is None:
            return None
        bound = meta.get("service_url")
        if bound == self.service_url:
            return None
        return (
            f"offline copy {self.path} contains the data of "
            f"{bound or 'an unknown service'}, not of {self.service_url}"
        )

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
        service than the one the copy is bound to. It also raises when
        another process syncs the same file for longer than `sync_wait_s`.
        The copy keeps its data in all these cases.
        """
        feed_url = normalize_url(feed.base_url)
        expected = self.service_url or feed_url
        if feed_url != expected:
            raise LookupFailed(
                f"offline copy {self.path} is bound to {self.service_url}, not to "
                f"{feed_url}; open it with the URL it is synced from"
            )
        with self._lock, self._sync_lock():
            # The binding never changes once set, so checking it once
            # before the writes covers every write of this sync.
            bound = self._claim(feed_url)
            if bound != feed_url:
                raise LookupFailed(
                    f"offline copy {self.path} contains the data of {bound}, not "
                    f"of {feed_url}; it cannot be synced from {feed_url}"
                )
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

    @contextlib.contextmanager
    def _sync_lock(self) -> Iterator[None]:
        """Hold the exclusive lock on `lock_path`, which other processes'
        syncs of this file take too."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + self.sync_wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LookupFailed(
                            f"another process is syncing the offline copy "
                            f"{self.path}; this sync is skipped"
                        ) from None
                    time.sleep(0.1)
            yield
        finally:
            # Closing the descriptor releases the lock.
            os.close(fd)

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

    def lookup_document(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> tuple[LookupAnswer, list[LookupAnswer]]:
        return lookup_document_in_turn(self, key, variants)

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        meta = self._read_meta()
        version = meta.get("service_version")
        synced = meta.get("synced_at")
        foreign = self._foreign(meta)
        if foreign is not None:
            return [unknown(foreign, source=SOURCE) for _ in keys]
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
        foreign = self._foreign(meta)
        if foreign is not None:
            return BackendStatus(BackendState.UNREACHABLE, None, foreign)
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
    seconds = delta.total_seconds()
    if seconds < 60:
        # A limit under a minute read "0 min old, over the limit of 0 min".
        return f"{seconds:.0f} s"
    hours = seconds / 3600
    if hours < 1:
        return f"{seconds / 60:.0f} min"
    return f"{hours:.1f} h"
