"""Rows of a full import in bulk form, for stores that can take them so.

The importer may parse a file in a separate process. It then hands the store
a `RowBatches` object instead of a plain iterable, and the store requests
the form it loads fastest: lists of row tuples (SQLite) or PostgreSQL COPY text
(PostgreSQL). Iterating the object still yields (line, row) pairs, so any
store works with it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from typing import cast

from backend.store.base import Row

# One row of a batch: the source line number followed by the Row fields.
LineRow = tuple[object, ...]


class RowBatches(abc.ABC):
    """Rows of a full import, delivered in batches; iterable one by one too.

    Each of the two batch methods may be called once, and only one of them.
    Both raise ImportFailed (from backend.errors) while the rows are read
    when the file fails a rejection limit, so inside the store's transaction.
    """

    @abc.abstractmethod
    def row_batches(self) -> Iterator[Sequence[LineRow]]:
        """Yield lists of (line, *row) tuples in file order."""

    @abc.abstractmethod
    def copy_chunks(self) -> Iterator[tuple[bytes, int]]:
        """Yield (COPY text, row count) chunks, UTF-8, whole rows only.

        Each text line contains the source line number and the ten Row fields
        in PostgreSQL's COPY text format, as `encode_copy_rows` writes it.
        """

    def __iter__(self) -> Iterator[tuple[int, Row]]:
        for batch in self.row_batches():
            for item in batch:
                yield cast(int, item[0]), cast(Row, item[1:])


def _copy_escape(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def encode_copy_row(line: int, row: Row) -> str:
    """Return one COPY text line (without its newline) for the id and Row.

    Codes, numbers, status and dates cannot hold a backslash, tab or line
    break once validated, so only the reporting country and the reference
    are escaped. NULL dates become \\N.
    """
    return "\t".join(
        (
            str(line),
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            _copy_escape(row[6]),
            _copy_escape(row[7]),
            row[8] or "\\N",
            row[9] or "\\N",
        )
    )


def encode_copy_rows(rows: Iterable[tuple[int, Row]]) -> str:
    """Return the COPY text of (line, row) pairs, one newline-ended line each."""
    return "".join(encode_copy_row(line, row) + "\n" for line, row in rows)
