"""Stores of reported documents, opened from a URL.

`sqlite:///relative/path.sqlite3` and `sqlite:////absolute/path.sqlite3`
follow the SQLAlchemy convention (three slashes then the path); a plain file
path is taken as SQLite too. `postgresql://user@host:port/db[?schema=name]`
opens the PostgreSQL store.
"""

from __future__ import annotations

from pathlib import Path

from backend.errors import StoreError
from backend.store.base import (
    Change,
    ChangePage,
    ImportResult,
    Row,
    Store,
    record_to_row,
    row_to_record,
)

__all__ = [
    "Change",
    "ChangePage",
    "ImportResult",
    "Row",
    "Store",
    "open_store",
    "record_to_row",
    "row_to_record",
    "sqlite_path",
]


def sqlite_path(url: str) -> Path | None:
    """Return the file path of a SQLite store URL, or None for other URLs."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if "://" not in url:
        return Path(url)
    return None


def open_store(url: str, *, create: bool = True) -> Store:
    """Open the store named by `url`; see the module docstring for the forms.

    Raises StoreUnavailable when the database cannot be reached and
    StoreError for a URL of an unknown kind.
    """
    path = sqlite_path(url)
    if path is not None:
        if str(path) in ("", "."):
            raise StoreError(
                "the SQLite store URL has no file path: use sqlite:///path/to/file"
            )
        from backend.store.sqlite import SQLiteStore

        return SQLiteStore(path, create=create)
    if url.startswith(("postgresql://", "postgres://")):
        from backend.store.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split("://", 1)[0]
    if scheme == "sqlite":
        # sqlite://var/x.sqlite3 would name host "var"; SQLite has none.
        raise StoreError(
            "invalid SQLite store URL: it needs three slashes, as in "
            "sqlite:///var/x.sqlite3 (relative) or sqlite:////srv/x.sqlite3 "
            "(absolute)"
        )
    raise StoreError(
        f"unsupported store URL scheme {scheme!r}: use sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DB"
    )
