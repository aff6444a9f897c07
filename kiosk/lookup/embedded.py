"""Embedded lookup: the SQLite store inside the kiosk process, no server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from backend.errors import BackendError
from backend.importer import import_csv
from backend.records import DocumentKey, LookupAnswer, unknown
from backend.store import Store, open_store, sqlite_path
from backend.store.base import version_time
from kiosk.lookup.base import (
    BackendState,
    BackendStatus,
    create_private,
    lookup_document_in_turn,
)

logger = logging.getLogger(__name__)

SOURCE = "embedded"


class EmbeddedLookup:
    """Checks keys against a local SQLite store file.

    The store is opened on first use. When it contains no data yet and
    `seed_csv` is given, that CSV is imported first. Any failure, opening
    included, turns into an UNKNOWN answer with the reason.
    """

    def __init__(
        self, store_url_or_path: str | Path, *, seed_csv: Path | None = None
    ) -> None:
        target = str(store_url_or_path)
        self._url = target if "://" in target else f"sqlite:///{target}"
        self._seed_csv = seed_csv
        self._store: Store | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def _open(self) -> Store:
        with self._lock:
            if self._store is not None:
                return self._store
            path = sqlite_path(self._url)
            if path is not None and str(path) not in ("", "."):
                # A file the kiosk creates gets mode 0600, because its
                # records contain document numbers.
                create_private(path)
            store = open_store(self._url)
            try:
                # NOTE: the seed is imported only into an empty store; a newer
                # seed file does not replace data already imported.
                if store.data_version() is None and self._seed_csv is not None:
                    logger.info("seeding the embedded store from %s", self._seed_csv)
                    import_csv(store, self._seed_csv)
            except BaseException:
                store.close()
                raise
            self._store = store
            return store

    def lookup(self, key: DocumentKey) -> LookupAnswer:
        return self.lookup_many([key])[0]

    def lookup_document(
        self, key: DocumentKey, variants: Sequence[DocumentKey]
    ) -> tuple[LookupAnswer, list[LookupAnswer]]:
        return lookup_document_in_turn(self, key, variants)

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]:
        try:
            store = self._open()
            answers = store.lookup_many(keys)
        except BackendError as exc:
            return self._failed(keys, str(exc))
        except Exception as exc:
            # The contract is an UNKNOWN answer, never an exception, so even
            # unexpected errors end here; the type is logged for the fix.
            logger.exception("embedded lookup failed with %s", type(exc).__name__)
            return self._failed(keys, f"embedded lookup failed: {type(exc).__name__}")
        self._error = None
        return [_with_source(answer) for answer in answers]

    def _failed(self, keys: Sequence[DocumentKey], reason: str) -> list[LookupAnswer]:
        if reason != self._error:
            logger.warning(
                "embedded lookup unavailable for %d keys: %s", len(keys), reason
            )
        self._error = reason
        return [unknown(reason, source=SOURCE) for _ in keys]

    def status(self) -> BackendStatus:
        try:
            store = self._open()
            version = store.data_version()
            count = store.count()
        except Exception as exc:
            return BackendStatus(
                BackendState.UNREACHABLE, None, f"embedded list unavailable: {exc}"
            )
        if version is None:
            return BackendStatus(
                BackendState.UNREACHABLE, None, "embedded list is empty; import a CSV"
            )
        created = version_time(version)
        age = dt.datetime.now(dt.UTC) - created if created else None
        return BackendStatus(
            BackendState.EMBEDDED,
            version,
            f"embedded list, {count} records",
            data_age=age,
        )

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _with_source(answer: LookupAnswer) -> LookupAnswer:
    return dataclasses.replace(answer, source=SOURCE)
